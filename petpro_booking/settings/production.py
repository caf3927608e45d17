"""Production settings: every secret comes from the environment, none has a default."""

import environ

from .base import *
from .base import database_config, env

SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASES = {"default": database_config(env("DATABASE_URL"))}
for _index, _replica_url in enumerate(env.list("DATABASE_REPLICA_URLS", default=[])):
    DATABASES[f"replica_{_index}"] = database_config(_replica_url)
JWT_SIGNING_KEY = env("JWT_SIGNING_KEY", default="")
JWT_PUBLIC_KEY = env("JWT_PUBLIC_KEY", default="")
if not (JWT_SIGNING_KEY or JWT_PUBLIC_KEY):
    raise environ.ImproperlyConfigured("Set JWT_SIGNING_KEY or JWT_PUBLIC_KEY")
SERVICE_JWT_SIGNING_KEY = env("SERVICE_JWT_SIGNING_KEY")
PAYMENT_WEBHOOK_SECRET = env("PAYMENT_WEBHOOK_SECRET")
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING["root"]["level"] = LOG_LEVEL
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
