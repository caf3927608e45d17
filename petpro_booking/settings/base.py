"""Settings shared by every environment, read from env vars (docs/operations.md)."""

from __future__ import annotations

import math
from pathlib import Path

import environ

from petpro_booking.core.tls import amqp_ssl_options

BASE_DIR = Path(__file__).resolve().parent.parent.parent


class _Env(environ.Env):
    """django-environ, with a value it cannot read stopping the process under the variable's
    name: `RESERVATION_TTL_SECONDS=10m` raised a bare "invalid literal for int()" that named no
    variable. (Values it reads but that are out of range: `numbers_out_of_range` below.)"""

    KINDS = {int: "a whole number", float: "a number"}

    @classmethod
    def parse_value(cls, value, cast):
        if cast is float:  # django-environ drops every non-digit first: "1e3" read as 13.0
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"not a finite number: {value!r}")
            return number
        return super().parse_value(value, cast)

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as exc:
            if cast not in self.KINDS:  # say nothing of a value that may be a secret
                raise environ.ImproperlyConfigured(f"{var} cannot be read.") from exc
            raw = self.ENVIRON.get(f"{self.prefix}{var}", "")
            raise environ.ImproperlyConfigured(
                f"{var} must be {self.KINDS[cast]}, not {raw[:40]!r}."
            ) from exc


env = _Env()

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-insecure-secret-key-change-me")
# Earlier keys still accepted for admin sessions, CSRF and signed values while a new
# DJANGO_SECRET_KEY rolls out (docs/security.md, "Secrets and their rotation"); comma-separated.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_prometheus",
    "petpro_booking.core",
    "petpro_booking.events",
    "integrations",
    "slots",
    "reservations",
    "bookings",
    "waitlist",
]

# The browser's middleware (sessions, CSRF, the Django user, messages, frame options, CSP, the
# admin login lockout) as core/middleware.py's subclasses, which the JSON API under /api/v1/
# skips: bearer tokens and JSON need none of it.
MIDDLEWARE = [
    # First: counts and times every answer, the middleware chain included (core/middleware.py).
    "petpro_booking.core.middleware.HttpMetricsMiddleware",
    "petpro_booking.core.logging.RequestLogContextMiddleware",
    "petpro_booking.core.middleware.BrowserRefuseNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "petpro_booking.core.middleware.BrowserSessionMiddleware",
    # Accept-Language (en, id) picks the language of API error messages; codes never change.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "petpro_booking.core.middleware.BrowserCsrfViewMiddleware",
    "petpro_booking.core.middleware.BrowserAuthenticationMiddleware",
    "petpro_booking.core.middleware.BrowserMessageMiddleware",
    "petpro_booking.core.middleware.BrowserXFrameOptionsMiddleware",
    "petpro_booking.core.middleware.BrowserCSPMiddleware",
    # Admin lists Django cannot query (a year past 9998, a NUL): ?e=1, not a 500.
    "petpro_booking.core.middleware.AdminChangelistGuardMiddleware",
    # Last: counts failed admin logins and refuses locked-out users and IPs.
    "petpro_booking.core.middleware.BrowserAxesMiddleware",
]

# --- Admin login and browser-facing headers (docs/security.md) --------------------------------
# axes checks for its middleware by name; core/middleware.py's BrowserAxesMiddleware is that
# middleware for every request but the JSON API's (a test holds the admin lockout working).
SILENCED_SYSTEM_CHECKS = ["axes.W002"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: a locked-out user or IP is refused early
    "django.contrib.auth.backends.ModelBackend",
]
# Failed admin logins: after AXES_FAILURE_LIMIT failures a username, and separately an IP, is
# locked out for AXES_COOLOFF_MINUTES. The client IP is the one the throttles use.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "petpro_booking.core.throttles.login_client_ip"
AXES_VERBOSE = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Content Security Policy (django-csp): our own origin only. Swagger UI and the admin load their
# scripts from our static files (drf-spectacular-sidecar), never from a CDN; Swagger UI sets
# inline styles and shows data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

ROOT_URLCONF = "petpro_booking.urls"
WSGI_APPLICATION = "petpro_booking.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DB_SCHEMA = "booking_service"
DB_POOL_MIN_SIZE = env.int("DB_POOL_MIN_SIZE", default=2)
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=10)
# The hot paths' statements (core/db.py prepared_cursor) are prepared on the server once per
# pooled connection. Off behind PgBouncer in transaction mode older than 1.21 (from 1.21 on,
# set its max_prepared_statements instead).
DB_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", default=True)
POSTGRESQL_ENGINE = "petpro_booking.core.postgresql"


def database_config(url: str) -> dict:
    """One DATABASES entry from a URL; PostgreSQL gets the schema search_path and a pool."""
    config = env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend with psycopg's compiled timestamptz loader (core/postgresql/base.py).
        config["ENGINE"] = POSTGRESQL_ENGINE
        config["CONN_MAX_AGE"] = 0  # the psycopg pool needs it (Django refuses both)
        config["OPTIONS"] = {
            # sslmode, sslrootcert, sslcert, sslkey ... from the URL's query string (TLS).
            **config.get("OPTIONS", {}),
            "options": f"-c search_path={DB_SCHEMA},public",
            "pool": {"min_size": DB_POOL_MIN_SIZE, "max_size": DB_POOL_MAX_SIZE, "timeout": 10},
            # Django turns prepared statements off (None); its own cursors never prepare
            # anyway (client-side binding), so this only lets prepared_cursor() ask for it.
            **({"prepare_threshold": 1_000_000} if DB_PREPARED_STATEMENTS else {}),
        }
    return config


DATABASE_URL = env("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'petpro_booking.sqlite3'}")
DATABASES = {"default": database_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Embedded mode: wait for the writer instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
# A replica that cannot hand out a connection within this long is skipped (reads go to the
# primary) for DB_REPLICA_RETRY_SECONDS; pooled replica connections are checked before use.
DB_REPLICA_POOL_TIMEOUT_SECONDS = env.float("DB_REPLICA_POOL_TIMEOUT_SECONDS", default=1.0)
DB_REPLICA_RETRY_SECONDS = env.float("DB_REPLICA_RETRY_SECONDS", default=5.0)


def replica_config(url: str) -> dict:
    """A DATABASES entry for a read replica (core/db.py read_replica())."""
    config = database_config(url)
    if config["ENGINE"] == POSTGRESQL_ENGINE:
        config["OPTIONS"]["pool"]["timeout"] = DB_REPLICA_POOL_TIMEOUT_SECONDS
        config["OPTIONS"]["connect_timeout"] = max(1, int(DB_REPLICA_POOL_TIMEOUT_SECONDS))
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASE_REPLICA_ALIASES: list[str] = []
for index, replica_url in enumerate(env.list("DATABASE_REPLICA_URLS", default=[])):
    alias = f"replica_{index}"
    DATABASES[alias] = replica_config(replica_url)
    DATABASE_REPLICA_ALIASES.append(alias)
DATABASE_ROUTERS = ["petpro_booking.core.db.PrimaryReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# How many times a SERIALIZABLE decision runs on 40001/40P01 before the caller gets 409
# slot_busy. The jittered pauses between attempts are capped at 10, 20, 40, 80, 160, 200,
# 200 ms: 8 attempts wait up to ~0.7 s (mean ~0.35 s), longer than the overlap measured under
# the peak mix (confirm p95 ~215 ms once the worker stopped starving the CPU, issue 11), and
# well under LOCK_WAIT_SECONDS, which the next contender waits behind our slot lock.
DB_SERIALIZABLE_ATTEMPTS = env.int("DB_SERIALIZABLE_ATTEMPTS", default=8)

# --- Redis: cache, locks, throttles, breaker state ------------------------------------------
# `redis://host:6379/0` is one node; `redis+cluster://host:6379[,host:port...]` a Redis Cluster
# (petpro_booking/core/redis_client.py). Every key written has a TTL, so `volatile-lru` may evict.
REDIS_URL = env("REDIS_URL", default="")
DJANGO_REDIS_CONNECTION_FACTORY = "petpro_booking.core.redis_client.ConnectionFactory"


def redis_cache(url: str, *, key_prefix: str = "petpro") -> dict:
    """The default cache on Redis (one node or a cluster, by URL)."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        # A list: django-redis would read a comma in a cluster URL as a list of servers.
        "LOCATION": [url],
        "KEY_PREFIX": key_prefix,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
            # A cache outage must not break reads: the database answers instead.
            "IGNORE_EXCEPTIONS": True,
        },
    }


if REDIS_URL:
    CACHES = {"default": redis_cache(REDIS_URL)}
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SLOT_SEARCH_CACHE_SECONDS = env.int("SLOT_SEARCH_CACHE_SECONDS", default=300)
# How long a cached search page may lag a change to its clinic's slots, in every process (the
# changing one too): each process reads the search generations at most this often, so a burst
# of holds costs one recomputation per page and per interval. 0: a process sees its own changes
# at once, others within LOCAL_CACHE_GENERATION_SECONDS. Needs LOCAL_CACHE_ENABLED.
SLOT_SEARCH_MAX_LAG_SECONDS = env.float("SLOT_SEARCH_MAX_LAG_SECONDS", default=0.5)
# An owner's uncached page adds the whole days of its range from per-day totals each process
# keeps per service (slots/day_totals.py), keyed and lagging like the pages; off: every page
# counts its whole range. Needs LOCAL_CACHE_ENABLED and the search cache.
SLOT_SEARCH_DAY_TOTALS = env.bool("SLOT_SEARCH_DAY_TOTALS", default=True)
# The in-process level in front of Redis (petpro_booking/core/local_cache.py): cache
# generations for LOCAL_CACHE_GENERATION_SECONDS (a bump elsewhere is seen within a second),
# read-model values (keyed by generation) for LOCAL_CACHE_SECONDS; off: every read goes to Redis.
LOCAL_CACHE_ENABLED = env.bool("LOCAL_CACHE_ENABLED", default=True)
LOCAL_CACHE_MAX_ENTRIES = env.int("LOCAL_CACHE_MAX_ENTRIES", default=2048)
LOCAL_CACHE_SECONDS = env.float("LOCAL_CACHE_SECONDS", default=10.0)
LOCAL_CACHE_GENERATION_SECONDS = env.float("LOCAL_CACHE_GENERATION_SECONDS", default=0.5)

# --- Business timings ------------------------------------------------------------------------
RESERVATION_TTL_SECONDS = env.int("RESERVATION_TTL_SECONDS", default=600)
# How long a waiting-list offer (a hold made for the first in line) lasts (docs/bookings.md).
WAITLIST_OFFER_SECONDS = env.int("WAITLIST_OFFER_SECONDS", default=900)
PAYMENT_DEADLINE_SECONDS = env.int("PAYMENT_DEADLINE_SECONDS", default=1800)
# Holds that follow the payment (bookings/services/payment_deadline.py): starting to pay gives
# PAYMENT_DEADLINE_SECONDS from then, never past creation + PAYMENT_DEADLINE_CAP_SECONDS; a
# payment the provider still processes at the deadline extends it by
# PAYMENT_PENDING_EXTENSION_SECONDS, never past creation + PAYMENT_DEADLINE_MAX_SECONDS.
PAYMENT_DEADLINE_CAP_SECONDS = env.int("PAYMENT_DEADLINE_CAP_SECONDS", default=3600)
PAYMENT_PENDING_EXTENSION_SECONDS = env.int("PAYMENT_PENDING_EXTENSION_SECONDS", default=600)
PAYMENT_DEADLINE_MAX_SECONDS = env.int("PAYMENT_DEADLINE_MAX_SECONDS", default=4 * 3600)
LOCK_TTL_SECONDS = env.int("LOCK_TTL_SECONDS", default=30)
LOCK_WAIT_SECONDS = env.float("LOCK_WAIT_SECONDS", default=5.0)
SLOT_GENERATE_MAX_DAYS = env.int("SLOT_GENERATE_MAX_DAYS", default=92)
# At most this many slots per generate call (92 days of one-minute windows would be 132,000).
SLOT_GENERATE_MAX_SLOTS = env.int("SLOT_GENERATE_MAX_SLOTS", default=3000)
# Fair use (issue 12): per owner, raised for one owner by support in the admin (Owner limits).
FAIR_USE_MAX_LIVE_HOLDS = env.int("FAIR_USE_MAX_LIVE_HOLDS", default=5)
FAIR_USE_MAX_UNPAID_BOOKINGS = env.int("FAIR_USE_MAX_UNPAID_BOOKINGS", default=3)
FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY = env.int("FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY", default=2)
# Booking rules of a service whose own value is unset (slots/rules.py, docs/bookings.md).
BOOKING_MIN_NOTICE_MINUTES = env.int("BOOKING_MIN_NOTICE_MINUTES", default=0)
BOOKING_HORIZON_DAYS = env.int("BOOKING_HORIZON_DAYS", default=365)
BOOKING_BUFFER_BEFORE_MINUTES = env.int("BOOKING_BUFFER_BEFORE_MINUTES", default=0)
BOOKING_BUFFER_AFTER_MINUTES = env.int("BOOKING_BUFFER_AFTER_MINUTES", default=0)
# Idempotency-Key: responses replayed this long; a claim with no answer after IN_FLIGHT seconds
# (its process died) may be taken over.
IDEMPOTENCY_KEY_TTL_SECONDS = env.int("IDEMPOTENCY_KEY_TTL_SECONDS", default=86400)
IDEMPOTENCY_IN_FLIGHT_SECONDS = env.int("IDEMPOTENCY_IN_FLIGHT_SECONDS", default=60)

# Consistency check (bookings/consistency.py): the outbox's oldest unpublished event may be this
# old, a live hold this far past its expiry (the check's own interval), before they count.
CONSISTENCY_OUTBOX_MAX_AGE_SECONDS = env.int("CONSISTENCY_OUTBOX_MAX_AGE_SECONDS", default=300)
CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS = env.int(
    "CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS", default=300
)

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Eager tasks still pass through a producer of this in-memory broker (named host: no warning).
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://localhost/"
# amqps:// brokers: the CA bundle that signed their certificates (default: the system's).
BROKER_CA_FILE = env("BROKER_CA_FILE", default="")
CELERY_BROKER_USE_SSL = amqp_ssl_options(CELERY_BROKER_URL, ca_file=BROKER_CA_FILE)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# Reliability (petpro_booking/celery.py): ack after the task ran, requeue when a worker dies,
# one message in flight per worker process, time limits; a task that fails for good is rejected
# and dead-lettered to "<queue>.dead" instead of being acknowledged.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_QUEUE", default="petpro.tasks")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=150)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Workers and beat log through LOGGING above (JSON), not through Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every connection before and after each task, and with a psycopg
# pool also closes the pool: a new pool (and new PostgreSQL backends) per task. With this set,
# a worker process keeps its pool across tasks (connections go back to it after each task,
# petpro_booking/celery.py) and recycles it every 2 x this many tasks.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=500)
# A worker process whose resident memory passed this many KiB after a task is replaced by a
# new one (the task itself finishes first): a guard against slow growth, as gunicorn's
# max_requests is for web. The chart gives a worker pod 1 GiB for its main process (~120 MiB)
# and two children (~110-135 MiB each in a 20-minute soak, docs/benchmarks.md). 0: never.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = (
    env.int("CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB", default=350 * 1024) or None
)
# Every periodic job of the product, in one place (celery beat).
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    # Outbox sweep: publishes what the after-commit nudge missed (broker down, crash).
    "relay-outbox": {
        "task": "events.relay_outbox",
        "schedule": env.float("EVENT_RELAY_INTERVAL_SECONDS", default=5.0),
        "options": {"expires": 30},
    },
    # Appointment reminders, 24 h before the start, once per booking and slot.
    "send-appointment-reminders": {
        "task": "bookings.appointment_reminders_send",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    # Holds past their expiry give their unit back (lazily too, on the next hold of the slot).
    "expire-holds": {"task": "reservations.reservations_expire_due", "schedule": 30.0},
    # Waiting list: entries of started slots end, units nobody was offered are offered.
    "waitlist-sweep": {"task": "waitlist.waitlist_sweep", "schedule": 60.0},
    # Retention (docs/security.md): published events by month, processed webhooks, history of
    # long-closed bookings; partitions for the months ahead.
    "retention-events": {"task": "events.retention_events", "schedule": 86400.0},
    "retention-webhooks": {"task": "bookings.retention_webhooks", "schedule": 3600.0},
    "retention-history": {"task": "bookings.retention_history", "schedule": 86400.0},
    # Erasures reach the event archive's day files (when RETENTION_EVENTS_ARCHIVE_DIR is set).
    "erasure-archive": {"task": "bookings.erasure_archive", "schedule": 3600.0},
    # Erasures that stopped half-way (a crash, a busy slot) are finished.
    "erasure-resume": {"task": "bookings.erasure_resume", "schedule": 300.0},
    # Idempotency keys older than 24 h.
    "purge-idempotency-keys": {
        "task": "core.idempotency_keys_purge",
        "schedule": 3600.0,
    },
    # Re-read known clinics and their services from the Clinic Service (no-op without it).
    "refresh-clinics": {
        "task": "slots.clinics_refresh",
        "schedule": env.float("CLINIC_REFRESH_INTERVAL_SECONDS", default=900.0),
    },
    # Payments pending too long are asked about (GET /payments/{id}): a lost webhook still
    # confirms the booking.
    "reconcile-payments": {
        "task": "bookings.payments_reconcile",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    # Bookings unpaid past PAYMENT_DEADLINE_SECONDS are cancelled and their slot freed (every
    # minute, or a quarter of a deadline shorter than 4 minutes).
    "cancel-unpaid-bookings": {
        "task": "bookings.payments_cancel_unpaid",
        "schedule": env.float(
            "PAYMENT_DEADLINE_SWEEP_SECONDS",
            default=min(60.0, max(1.0, PAYMENT_DEADLINE_SECONDS / 4)),
        ),
        "options": {"expires": 50},
    },
    # The week view of clinics whose slots changed is computed before anyone asks.
    "warm-search-cache": {
        "task": "slots.search_cache_warm",
        "schedule": env.float("SEARCH_WARM_INTERVAL_SECONDS", default=60.0),
        "options": {"expires": 50},
    },
    # The invariants (manage.py check_consistency), reported as petpro_consistency_violations.
    "check-consistency": {
        "task": "bookings.consistency_check",
        "schedule": env.float("CONSISTENCY_CHECK_INTERVAL_SECONDS", default=300.0),
        "options": {"expires": 240},
    },
    # Refunds owed (late payments, cancelled paid bookings) that a provider outage postponed.
    "refund-owed-payments": {
        "task": "bookings.payments_refund_owed",
        "schedule": 120.0,
        "options": {"expires": 100},
    },
}

# --- Events out ------------------------------------------------------------------------------
EVENT_BROKER_URL = env("EVENT_BROKER_URL", default="")
EVENT_EXCHANGE = env("EVENT_EXCHANGE", default="petpro.booking")
EVENT_LOG_SINK_PATH = env("EVENT_LOG_SINK_PATH", default=str(BASE_DIR / "var" / "events.log"))
# Relay right after each commit that appended events (the beat sweep catches the rest).
EVENT_RELAY_ON_COMMIT = env.bool("EVENT_RELAY_ON_COMMIT", default=True)
# With a broker, a process sends at most one relay pass per this interval, however many
# commits nudge it (the pass drains the whole outbox).
EVENT_RELAY_NUDGE_INTERVAL_SECONDS = env.float("EVENT_RELAY_NUDGE_INTERVAL_SECONDS", default=0.2)
# How a nudge reaches the relay: "celery" sends the relay task to the worker; "notify" sends a
# PostgreSQL NOTIFY to `manage.py outbox listen` processes, which must then run
# (docs/events.md).
EVENT_RELAY_NUDGE = env.str("EVENT_RELAY_NUDGE", default="celery")
if EVENT_RELAY_NUDGE not in ("celery", "notify"):
    raise environ.ImproperlyConfigured(
        f"EVENT_RELAY_NUDGE must be 'celery' or 'notify', not {EVENT_RELAY_NUDGE!r}."
    )
# `manage.py outbox listen`: its own relay pass when no notification came for this long, and
# at most one pass per the minimum interval however many notifications arrive.
EVENT_RELAY_LISTEN_SWEEP_SECONDS = env.float("EVENT_RELAY_LISTEN_SWEEP_SECONDS", default=5.0)
EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS = env.float(
    "EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS", default=0.1
)
if not (EVENT_RELAY_LISTEN_SWEEP_SECONDS > 0 and EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS >= 0):
    raise environ.ImproperlyConfigured(  # else a loop that never waits
        "EVENT_RELAY_LISTEN_SWEEP_SECONDS must be above 0 and "
        "EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS 0 or more."
    )
# Its LISTEN connection, when the default database sits behind PgBouncer in transaction mode
# (LISTEN needs a session of its own); empty: the default database.
EVENT_RELAY_LISTEN_DATABASE_URL = env.str("EVENT_RELAY_LISTEN_DATABASE_URL", default="")
EVENT_RELAY_BATCH_SIZE = env.int("EVENT_RELAY_BATCH_SIZE", default=500)
EVENT_RELAY_MAX_SECONDS = env.float("EVENT_RELAY_MAX_SECONDS", default=20.0)
EVENT_CONNECT_TIMEOUT_SECONDS = env.float("EVENT_CONNECT_TIMEOUT_SECONDS", default=2.0)
EVENT_CONFIRM_TIMEOUT_SECONDS = env.float("EVENT_CONFIRM_TIMEOUT_SECONDS", default=10.0)

# --- Other services --------------------------------------------------------------------------
PAYMENT_SERVICE_URL = env("PAYMENT_SERVICE_URL", default="")
PAYMENT_API_KEY = env("PAYMENT_API_KEY", default="")
PAYMENT_WEBHOOK_SECRET = env("PAYMENT_WEBHOOK_SECRET", default="dev-webhook-secret")
# Secret rotation: during a rollover the webhook is accepted signed with either secret.
PAYMENT_WEBHOOK_SECRET_PREVIOUS = env("PAYMENT_WEBHOOK_SECRET_PREVIOUS", default="")
# Payment Service calls (docs/payments.md): per-attempt timeout, retries on timeouts/5xx/429, and a
# total deadline over every attempt so POST /bookings/{id}/payment answers within 10 s.
PAYMENT_TIMEOUT_SECONDS = env.float("PAYMENT_TIMEOUT_SECONDS", default=3.0)
PAYMENT_MAX_RETRIES = env.int("PAYMENT_MAX_RETRIES", default=3)
PAYMENT_RETRY_BACKOFF_SECONDS = env.float("PAYMENT_RETRY_BACKOFF_SECONDS", default=0.2)
PAYMENT_TOTAL_DEADLINE_SECONDS = env.float("PAYMENT_TOTAL_DEADLINE_SECONDS", default=8.0)
# Payments still pending after this long are asked about (GET /payments/{id}) by reconciliation.
PAYMENT_RECONCILE_AFTER_SECONDS = env.int("PAYMENT_RECONCILE_AFTER_SECONDS", default=120)
# Sandbox provider (PAYMENT_SERVICE_URL unset): how long until it settles a payment, with what
# outcome, and where its signed webhook goes (empty: straight to our handler, in-process).
PAYMENT_SANDBOX_DELAY_SECONDS = env.float("PAYMENT_SANDBOX_DELAY_SECONDS", default=2.0)
PAYMENT_SANDBOX_OUTCOME = env("PAYMENT_SANDBOX_OUTCOME", default="succeeded")
PAYMENT_SANDBOX_WEBHOOK_URL = env("PAYMENT_SANDBOX_WEBHOOK_URL", default="")
USER_SERVICE_URL = env("USER_SERVICE_URL", default="")
CLINIC_SERVICE_URL = env("CLINIC_SERVICE_URL", default="")
SERVICE_JWT_SIGNING_KEY = env("SERVICE_JWT_SIGNING_KEY", default="dev-service-signing-key")
SERVICE_JWT_LIFETIME_SECONDS = env.int("SERVICE_JWT_LIFETIME_SECONDS", default=300)  # <= 300
# Outgoing HTTPS to the Payment, User and Clinic Services (integrations/http.py) checks
# certificates against this CA bundle when set (a private CA), else the default trust store.
SERVICE_CA_FILE = env("SERVICE_CA_FILE", default="")
# User and Clinic Service calls (docs/operations.md): per-attempt timeout, retries on timeouts/5xx,
# and a total deadline over attempts and pauses (3 x 1.0 s + at most 0.3 s of pauses < 3.5 s).
SERVICE_CALL_TIMEOUT_SECONDS = env.float("SERVICE_CALL_TIMEOUT_SECONDS", default=1.0)
SERVICE_CALL_RETRIES = env.int("SERVICE_CALL_RETRIES", default=2)
SERVICE_CALL_DEADLINE_SECONDS = env.float("SERVICE_CALL_DEADLINE_SECONDS", default=3.5)
# Circuit breaker per dependency: opens after FAIL_MAX failures within WINDOW seconds, probes
# again after RESET seconds; state shared through Redis.
SERVICE_BREAKER_FAIL_MAX = env.int("SERVICE_BREAKER_FAIL_MAX", default=5)
SERVICE_BREAKER_WINDOW_SECONDS = env.float("SERVICE_BREAKER_WINDOW_SECONDS", default=10.0)
SERVICE_BREAKER_RESET_SECONDS = env.float("SERVICE_BREAKER_RESET_SECONDS", default=30.0)
# Retry policies (petpro_booking/core/retrying.py), one shape for every retry: `attempts` (the
# first included) or `retries`, exponential pauses from `base` up to `cap` seconds, `jitter`
# (full | equal | none), and a `deadline` (seconds) no pause may run past. A string value names
# the setting above that holds it. Contention spreads out (full jitter); other services get at
# least half of each pause to recover (equal jitter).
RETRY_POLICIES: dict[str, dict[str, object]] = {
    # SERIALIZABLE decisions on 40001/40P01: pauses capped at 10, 20, 40 ... 200 ms.
    "serializable": {"attempts": "DB_SERIALIZABLE_ATTEMPTS", "base": 0.01, "cap": 0.2},
    # Polling a taken slot lock until LOCK_WAIT_SECONDS: pauses capped at 2, 4 ... 20 ms.
    "slot_lock": {"base": 0.002, "cap": 0.02, "deadline": "LOCK_WAIT_SECONDS"},
    "payment_service": {
        "retries": "PAYMENT_MAX_RETRIES",
        "base": "PAYMENT_RETRY_BACKOFF_SECONDS",
        "cap": 2.0,
        "jitter": "equal",
        "deadline": "PAYMENT_TOTAL_DEADLINE_SECONDS",
    },
    "user_service": {
        "retries": "SERVICE_CALL_RETRIES",
        "base": 0.1,
        "cap": 1.0,
        "jitter": "equal",
        "deadline": "SERVICE_CALL_DEADLINE_SECONDS",
    },
    "clinic_service": {
        "retries": "SERVICE_CALL_RETRIES",
        "base": 0.1,
        "cap": 1.0,
        "jitter": "equal",
        "deadline": "SERVICE_CALL_DEADLINE_SECONDS",
    },
    # A kept broker connection that died while idle: one more try at once on a fresh one.
    "broker_reconnect": {"attempts": 2},
    # The sandbox provider's webhook to us: after 1 s, then 2 s.
    "sandbox_webhook": {"attempts": 3, "base": 1.0, "cap": 2.0, "jitter": "none"},
}
# Answers of the Clinic / User Service are fresh this long; a stale answer is still served
# (up to SERVICE_CACHE_STALE_SECONDS old) while the service is down.
CLINIC_CACHE_SECONDS = env.int("CLINIC_CACHE_SECONDS", default=1800)
USER_CACHE_SECONDS = env.int("USER_CACHE_SECONDS", default=3600)
SERVICE_CACHE_STALE_SECONDS = env.int("SERVICE_CACHE_STALE_SECONDS", default=86400)

# --- Personal data (docs/security.md) ---------------------------------------------------------
# Fernet keys (32 url-safe base64 bytes), newest first: new values are encrypted with the first,
# reads accept any; `manage.py reencrypt_fields` moves every row to the first. Unset: a key
# derived from DJANGO_SECRET_KEY (development only; production requires them).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# HMAC key of the lookup columns (search by pet name / email over encrypted columns).
PERSONAL_DATA_LOOKUP_KEY = env("PERSONAL_DATA_LOOKUP_KEY", default="")
# HMAC keys of the pseudonymous owner key in analytics messages, newest first.
ANALYTICS_PSEUDONYM_KEYS = env.list("ANALYTICS_PSEUDONYM_KEYS", default=[])
# An erasure still unfinished this long after it was asked for is finished by the beat job
# `bookings.erasure_resume` (long enough not to start on one still running).
ERASURE_RESUME_AFTER_SECONDS = env.int("ERASURE_RESUME_AFTER_SECONDS", default=600)

# Retention, per kind (docs/security.md, "Retention"). Empty archive dir: drop, no archive.
RETENTION_EVENTS_DAYS = env.int("RETENTION_EVENTS_DAYS", default=400)
RETENTION_EVENTS_ARCHIVE_DIR = env("RETENTION_EVENTS_ARCHIVE_DIR", default="")
RETENTION_WEBHOOKS_DAYS = env.int("RETENTION_WEBHOOKS_DAYS", default=30)
RETENTION_HISTORY_YEARS = env.int("RETENTION_HISTORY_YEARS", default=3)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)

# --- Callers' tokens -------------------------------------------------------------------------
JWT_SIGNING_KEY = env("JWT_SIGNING_KEY", default="dev-jwt-signing-key-not-for-production")
JWT_PUBLIC_KEY = env("JWT_PUBLIC_KEY", default="")
JWT_ISSUER = env("JWT_ISSUER", default="")
JWT_AUDIENCE = env("JWT_AUDIENCE", default="")
# Clock skew tolerated on exp/iat/nbf of callers' tokens.
JWT_LEEWAY_SECONDS = env.int("JWT_LEEWAY_SECONDS", default=30)

# --- DRF -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["petpro_booking.core.auth.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["petpro_booking.core.permissions.IsAuthenticatedPrincipal"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSONParser plus refusals of what we cannot carry (core/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["petpro_booking.core.parsers.UntrustedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "petpro_booking.core.pagination.PagePagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "petpro_booking.core.exception_handler.handle_exception",
    "DEFAULT_SCHEMA_CLASS": "petpro_booking.core.openapi.ErrorDocumentingAutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["petpro_booking.core.throttles.RateLimitThrottle"],
    # Rates live in THROTTLE_USER_RATE / THROTTLE_IP_RATE below (read at each request).
    "DEFAULT_THROTTLE_RATES": {},
}
# Rate limits (docs/security.md): "<n>/<s|min|hour|day>". The client IP is REMOTE_ADDR unless
# THROTTLE_TRUSTED_PROXY_HEADER (e.g. X-Forwarded-For) is set: then it is the right-most hop
# that is not one of THROTTLE_TRUSTED_PROXIES (CIDRs; empty = only the direct peer is a proxy).
# Service tokens and THROTTLE_IP_ALLOWLIST (CIDRs) are exempt.
THROTTLE_USER_RATE = env("THROTTLE_USER_RATE", default="60/min")
THROTTLE_IP_RATE = env("THROTTLE_IP_RATE", default="120/min")
THROTTLE_TRUSTED_PROXY_HEADER = env("THROTTLE_TRUSTED_PROXY_HEADER", default="")
THROTTLE_TRUSTED_PROXIES = env.list("THROTTLE_TRUSTED_PROXIES", default=[])
THROTTLE_IP_ALLOWLIST = env.list("THROTTLE_IP_ALLOWLIST", default=[])
SPECTACULAR_SETTINGS = {
    "TITLE": "PetPro Booking Service API",
    "DESCRIPTION": (
        "Slots, temporary holds, bookings and payments of PetPro. Authenticate with "
        "`Authorization: Bearer <JWT>`; `manage.py issue_token` prints one for local use. "
        'Errors are `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
    },
    "SECURITY": [{"bearerAuth": []}],
    # Swagger UI from our own static files: works offline, loads no third-party script.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Named enums: generated clients (`make client`) get BookingStatus, not StatusDa1Enum.
    "ENUM_NAME_OVERRIDES": {
        "BookingStatusEnum": "bookings.models.BookingStatus",
        "PaymentStatusEnum": "bookings.models.PaymentStatus",
        "ReservationStatusEnum": "reservations.models.ReservationStatus",
        "SlotStatusEnum": "slots.models.SlotStatus",
    },
}

# --- Static, i18n, misc ----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("id", "Bahasa Indonesia")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# One JSON object per line (timestamp, service, traceId, spanId, level, message + ids), PII
# masked: petpro_booking/core/logging.py. LOG_FORMAT=console prints the same for humans.
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "petpro_booking.core.logging.json_formatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Numbers from the environment, checked once at start-up -----------------------------------
# A value outside its range (a negative hold time, a pool without connections, a timeout of
# zero) stops every process at start-up with the variable's name, instead of holds that expire
# as they are made or a relay that never waits. 0 turns off what says so above (a cache, a
# wait, a retry, a buffer); the rest need at least one unit.
_ZERO_OR_MORE = (
    "DB_POOL_MIN_SIZE",
    "SLOT_SEARCH_CACHE_SECONDS",
    "SLOT_SEARCH_MAX_LAG_SECONDS",
    "LOCAL_CACHE_SECONDS",
    "LOCAL_CACHE_GENERATION_SECONDS",
    "LOCK_WAIT_SECONDS",
    "BOOKING_MIN_NOTICE_MINUTES",
    "BOOKING_BUFFER_BEFORE_MINUTES",
    "BOOKING_BUFFER_AFTER_MINUTES",
    "CONSISTENCY_OUTBOX_MAX_AGE_SECONDS",
    "CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS",
    "CELERY_DB_REUSE_MAX",
    "EVENT_RELAY_NUDGE_INTERVAL_SECONDS",
    "PAYMENT_PENDING_EXTENSION_SECONDS",  # 0: a payment still processing is not waited for
    "PAYMENT_MAX_RETRIES",
    "PAYMENT_RETRY_BACKOFF_SECONDS",
    "PAYMENT_SANDBOX_DELAY_SECONDS",
    "SERVICE_CALL_RETRIES",
    "CLINIC_CACHE_SECONDS",
    "USER_CACHE_SECONDS",
    "SERVICE_CACHE_STALE_SECONDS",
    "JWT_LEEWAY_SECONDS",
)
_ABOVE_ZERO = (
    "AXES_FAILURE_LIMIT",
    "DB_POOL_MAX_SIZE",
    "DB_REPLICA_POOL_TIMEOUT_SECONDS",
    "DB_REPLICA_RETRY_SECONDS",
    "DB_SERIALIZABLE_ATTEMPTS",
    "LOCAL_CACHE_MAX_ENTRIES",
    "RESERVATION_TTL_SECONDS",
    "WAITLIST_OFFER_SECONDS",
    "PAYMENT_DEADLINE_SECONDS",
    "PAYMENT_DEADLINE_CAP_SECONDS",
    "PAYMENT_DEADLINE_MAX_SECONDS",
    "LOCK_TTL_SECONDS",
    "SLOT_GENERATE_MAX_DAYS",
    "SLOT_GENERATE_MAX_SLOTS",
    "FAIR_USE_MAX_LIVE_HOLDS",
    "FAIR_USE_MAX_UNPAID_BOOKINGS",
    "FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY",
    "BOOKING_HORIZON_DAYS",
    "IDEMPOTENCY_KEY_TTL_SECONDS",
    "IDEMPOTENCY_IN_FLIGHT_SECONDS",
    "CELERY_TASK_SOFT_TIME_LIMIT",
    "CELERY_TASK_TIME_LIMIT",
    "EVENT_RELAY_BATCH_SIZE",
    "EVENT_RELAY_MAX_SECONDS",
    "EVENT_CONNECT_TIMEOUT_SECONDS",
    "EVENT_CONFIRM_TIMEOUT_SECONDS",
    "PAYMENT_TIMEOUT_SECONDS",
    "PAYMENT_TOTAL_DEADLINE_SECONDS",
    "PAYMENT_RECONCILE_AFTER_SECONDS",
    "SERVICE_JWT_LIFETIME_SECONDS",
    "SERVICE_CALL_TIMEOUT_SECONDS",
    "SERVICE_CALL_DEADLINE_SECONDS",
    "SERVICE_BREAKER_FAIL_MAX",
    "SERVICE_BREAKER_WINDOW_SECONDS",
    "SERVICE_BREAKER_RESET_SECONDS",
    "ERASURE_RESUME_AFTER_SECONDS",
    "RETENTION_EVENTS_DAYS",
    "RETENTION_WEBHOOKS_DAYS",
    "RETENTION_HISTORY_YEARS",
    "RETENTION_BATCH_SIZE",
)

# The periodic jobs whose interval comes from the environment (the others are fixed above).
_BEAT_INTERVALS = {
    "EVENT_RELAY_INTERVAL_SECONDS": "relay-outbox",
    "CLINIC_REFRESH_INTERVAL_SECONDS": "refresh-clinics",
    "PAYMENT_DEADLINE_SWEEP_SECONDS": "cancel-unpaid-bookings",
    "SEARCH_WARM_INTERVAL_SECONDS": "warm-search-cache",
    "CONSISTENCY_CHECK_INTERVAL_SECONDS": "check-consistency",
}


def numbers_out_of_range(values: dict) -> list[str]:
    """What is wrong with the numeric settings in `values` (a settings module's names), as
    sentences naming each environment variable; empty when all are in range."""
    problems = [
        f"{name} must be 0 or more, not {values[name]}."
        for name in _ZERO_OR_MORE
        if values[name] < 0
    ]
    problems += [
        f"{name} must be above 0, not {values[name]}." for name in _ABOVE_ZERO if values[name] <= 0
    ]
    if values["AXES_COOLOFF_TIME"] <= 0:
        problems.append(
            f"AXES_COOLOFF_MINUTES must be above 0, not {values['AXES_COOLOFF_TIME'] * 60:g}."
        )
    if (
        values["CELERY_WORKER_MAX_MEMORY_PER_CHILD"] is not None
        and values["CELERY_WORKER_MAX_MEMORY_PER_CHILD"] < 0
    ):
        problems.append("CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB must be 0 (never) or more.")
    if values["DB_POOL_MAX_SIZE"] < values["DB_POOL_MIN_SIZE"]:
        problems.append("DB_POOL_MAX_SIZE must be at least DB_POOL_MIN_SIZE.")
    if values["CELERY_TASK_TIME_LIMIT"] <= values["CELERY_TASK_SOFT_TIME_LIMIT"]:
        problems.append(  # the soft limit's exception must come before the kill
            "CELERY_TASK_TIME_LIMIT must be above CELERY_TASK_SOFT_TIME_LIMIT."
        )
    for name, job in _BEAT_INTERVALS.items():
        if (interval := values["CELERY_BEAT_SCHEDULE"][job]["schedule"]) <= 0:
            problems.append(f"{name} must be above 0, not {interval}.")
    return problems


if _problems := numbers_out_of_range(globals()):
    raise environ.ImproperlyConfigured(" ".join(_problems))
