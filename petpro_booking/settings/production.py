"""Production settings: every secret comes from the environment, none has a default, and a
variable that is present but empty is refused like a missing one."""

import environ

from .base import *
from .base import DATABASES, MIDDLEWARE, database_config, env

PRODUCTION = True


def required(name: str) -> str:
    """The value of `name`; missing or empty (or only spaces) stops the start-up."""
    value = env.str(name, default="").strip()
    if not value:
        raise environ.ImproperlyConfigured(f"Set the {name} environment variable (it is empty)")
    return value


SECRET_KEY = required("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = [host for host in required("DJANGO_ALLOWED_HOSTS").split(",") if host.strip()]
DATABASES["default"] = database_config(required("DATABASE_URL"))  # replicas: see base.py
# The embedded fallbacks (local-memory cache and lock, eager tasks, log sink, sandbox payments)
# must never be taken silently in production: these must be set.
for _required in ("REDIS_URL", "CELERY_BROKER_URL", "EVENT_BROKER_URL"):
    required(_required)
PAYMENT_SANDBOX = env.bool("PAYMENT_SANDBOX", default=False)  # demo stacks only (docker-compose)
if "PAYMENT_SERVICE_URL" in env.ENVIRON or not PAYMENT_SANDBOX:
    # An empty URL is a mistake, never a wish for the sandbox.
    PAYMENT_SERVICE_URL = required("PAYMENT_SERVICE_URL")
    PAYMENT_API_KEY = required("PAYMENT_API_KEY")
JWT_SIGNING_KEY = env.str("JWT_SIGNING_KEY", default="").strip()
JWT_PUBLIC_KEY = env.str("JWT_PUBLIC_KEY", default="").strip()
if not (JWT_SIGNING_KEY or JWT_PUBLIC_KEY):
    raise environ.ImproperlyConfigured("Set JWT_SIGNING_KEY or JWT_PUBLIC_KEY")
# Callers' tokens are checked for who issued them and for whom (issue 12).
JWT_ISSUER = required("JWT_ISSUER")
JWT_AUDIENCE = required("JWT_AUDIENCE")
SERVICE_JWT_SIGNING_KEY = required("SERVICE_JWT_SIGNING_KEY")
if SERVICE_JWT_SIGNING_KEY == JWT_SIGNING_KEY:
    # Anyone holding our service key could otherwise mint user tokens for us, and vice versa.
    raise environ.ImproperlyConfigured("SERVICE_JWT_SIGNING_KEY must differ from JWT_SIGNING_KEY")
PAYMENT_WEBHOOK_SECRET = required("PAYMENT_WEBHOOK_SECRET")
# Personal data keys (docs/security.md): never derived from SECRET_KEY in production.
FIELD_ENCRYPTION_KEYS = [
    k.strip() for k in required("FIELD_ENCRYPTION_KEYS").split(",") if k.strip()
]
PERSONAL_DATA_LOOKUP_KEY = required("PERSONAL_DATA_LOOKUP_KEY")
ANALYTICS_PSEUDONYM_KEYS = [
    k.strip() for k in required("ANALYTICS_PSEUDONYM_KEYS").split(",") if k.strip()
]
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
# HTTPS: HSTS and a redirect; both can be left to the ingress (SECURE_SSL_REDIRECT=false,
# SECURE_HSTS_SECONDS=0). Probes are exempt from the redirect: kubelet speaks plain HTTP.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
if SECURE_HSTS_SECONDS < 0:
    raise environ.ImproperlyConfigured(
        f"SECURE_HSTS_SECONDS must be 0 (off) or more, not {SECURE_HSTS_SECONDS}."
    )
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
