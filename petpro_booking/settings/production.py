"""Production settings: every secret comes from the environment, none has a default."""

import environ

from .base import *
from .base import DATABASES, database_config, env

SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASES["default"] = database_config(env("DATABASE_URL"))  # replicas: see base.py
# The embedded fallbacks (local-memory cache and lock, eager tasks, log sink, sandbox payments)
# must never be taken silently in production: these must be set.
for _required in ("REDIS_URL", "CELERY_BROKER_URL", "EVENT_BROKER_URL"):
    env(_required)
if not env.bool("PAYMENT_SANDBOX", default=False):  # only for demo stacks (docker-compose)
    env("PAYMENT_SERVICE_URL")
    env("PAYMENT_API_KEY")
JWT_SIGNING_KEY = env("JWT_SIGNING_KEY", default="")
JWT_PUBLIC_KEY = env("JWT_PUBLIC_KEY", default="")
if not (JWT_SIGNING_KEY or JWT_PUBLIC_KEY):
    raise environ.ImproperlyConfigured("Set JWT_SIGNING_KEY or JWT_PUBLIC_KEY")
SERVICE_JWT_SIGNING_KEY = env("SERVICE_JWT_SIGNING_KEY")
PAYMENT_WEBHOOK_SECRET = env("PAYMENT_WEBHOOK_SECRET")
# Personal data keys (docs/security.md): never derived from SECRET_KEY in production.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
PERSONAL_DATA_LOOKUP_KEY = env("PERSONAL_DATA_LOOKUP_KEY")
ANALYTICS_PSEUDONYM_KEYS = env.list("ANALYTICS_PSEUDONYM_KEYS")
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING["root"]["level"] = LOG_LEVEL
# The admin's and the API docs' static files, collected into the image, served by gunicorn.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
