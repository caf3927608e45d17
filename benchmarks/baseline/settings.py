"""Settings of the bare baseline: one PostgreSQL database, no cache, no auth, no middleware
beyond what a JSON API needs; persistent connections (the cheapest Django offers).

The guarded hold (`views.GuardedHoldCreate`) also reads: the same database as a second alias
whose transactions run SERIALIZABLE, a Redis server, and the key, issuer and audience of the
service's tokens."""

import os

from psycopg import IsolationLevel

SECRET_KEY = "baseline-not-secret"  # noqa: S105 - a benchmark yardstick, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "rest_framework", "benchmarks.baseline"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "benchmarks.baseline.urls"
WSGI_APPLICATION = "benchmarks.baseline.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BASELINE_DB_NAME", "pp_bench_baseline"),
        "USER": os.environ.get("BASELINE_DB_USER", "postgres"),
        "HOST": os.environ.get("BASELINE_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BASELINE_DB_PORT", "5432"),
        "CONN_MAX_AGE": 600,
    }
}
DATABASES["serializable"] = {
    **DATABASES["default"],
    "OPTIONS": {"isolation_level": IsolationLevel.SERIALIZABLE},
}
GUARDED_REDIS_URL = os.environ.get("GUARDED_REDIS_URL", "redis://127.0.0.1:6379/1")
GUARDED_JWT_KEY = os.environ.get("GUARDED_JWT_KEY", "")
GUARDED_JWT_ISSUER = os.environ.get("GUARDED_JWT_ISSUER", "")
GUARDED_JWT_AUDIENCE = os.environ.get("GUARDED_JWT_AUDIENCE", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
