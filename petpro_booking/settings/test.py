"""Test settings: the production stack on localhost (PostgreSQL, Redis, RabbitMQ)."""

from .base import *
from .base import DATABASES, database_config, env, redis_cache

DATABASES["default"] = database_config(
    env("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/petpro_booking")
)
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=None)}
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/1")
CACHES = {"default": redis_cache(REDIS_URL, key_prefix="petpro-test")}
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
EVENT_BROKER_URL = env("EVENT_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
# No relay after every commit of every test; the relay tests switch it on.
EVENT_RELAY_ON_COMMIT = False
# Tasks run in-process so a test sees their outcome; the worker wiring is tested on its own.
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOG_LEVEL = env("LOG_LEVEL", default="WARNING")
LOGGING["root"]["level"] = LOG_LEVEL
# Suites make many requests as one user from 127.0.0.1: generous limits here; the throttle
# tests override them with small ones.
THROTTLE_USER_RATE = "100000/min"
THROTTLE_IP_RATE = "100000/min"
# The suite runs Celery workers inside the test process (tracing tests) where keeping a worker
# thread's connection across tasks would pin it to a dead thread; worker subprocesses started
# by the tests set CELERY_DB_REUSE_MAX explicitly (tests/events/test_celery_worker.py).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=0) or None
# Suites make many holds and bookings as one owner: fair-use limits out of the way here; the
# limit tests (tests/reservations/test_fair_use_limits.py) set their own.
FAIR_USE_MAX_LIVE_HOLDS = 10_000
FAIR_USE_MAX_UNPAID_BOOKINGS = 10_000
FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY = 10_000
# Suites search right after the change they test, in the same process: search pages follow
# every change at once here; tests/slots/test_search_lag.py tests the lag production runs with.
SLOT_SEARCH_MAX_LAG_SECONDS = 0.0
