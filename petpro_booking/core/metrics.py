"""Business metrics of the service, exported at /metrics by django-prometheus."""

from prometheus_client import Counter, Gauge, Histogram

SERIALIZABLE_RETRIES = Counter(
    "petpro_serializable_retries_total",
    "SERIALIZABLE transactions retried after 40001/40P01.",
    ["operation"],
)
SERIALIZABLE_GAVE_UP = Counter(
    "petpro_serializable_gave_up_total",
    "SERIALIZABLE transactions that still failed after every retry.",
    ["operation"],
)
LOCK_WAIT_SECONDS = Histogram(
    "petpro_lock_wait_seconds",
    "Time spent waiting for a slot lock.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOCK_TIMEOUTS = Counter("petpro_lock_timeouts_total", "Slot locks not obtained in time.")
REDIS_UNAVAILABLE_FALLBACKS = Counter(
    "petpro_redis_unavailable_fallbacks_total",
    "Operations that went on without Redis (database guard alone, or no cache).",
    ["operation"],
)
SLOT_SEARCH_CACHE = Counter(
    "petpro_slot_search_cache_total", "Slot search cache lookups.", ["result"]
)
HOLDS = Counter("petpro_holds_total", "Hold attempts by outcome.", ["outcome"])
BOOKINGS = Counter("petpro_bookings_total", "Booking state changes.", ["change"])
EXPIRED_HOLDS = Counter("petpro_expired_holds_total", "Holds expired (job or lazily).", ["how"])
PAYMENTS = Counter("petpro_payments_total", "Payment outcomes.", ["outcome"])
PAYMENT_PROVIDER_CALLS = Counter(
    "petpro_payment_provider_calls_total",
    "Attempts of calls to the Payment Service by operation and outcome (ok, retried, failed).",
    ["operation", "outcome"],
)
# Gauges only ever `set()`; the multiprocess modes say how gunicorn workers' values combine.
OUTBOX_BACKLOG = Gauge(
    "petpro_outbox_backlog",
    "Unpublished events in the outbox.",
    multiprocess_mode="livemostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "petpro_outbox_oldest_age_seconds",
    "Age of the oldest unpublished event.",
    multiprocess_mode="livemostrecent",
)
BREAKER_STATE_CHANGES = Counter(
    "petpro_breaker_state_changes_total",
    "Circuit breaker state changes, counted by the worker that made them.",
    ["dependency", "from_state", "to_state"],
)
BREAKER_STATE = Gauge(
    "petpro_breaker_state",
    "Circuit breaker state as last seen by this worker: 0 closed, 1 half-open, 2 open.",
    ["dependency"],
    multiprocess_mode="livemax",
)
DATABASE_UNAVAILABLE = Counter(
    "petpro_database_unavailable_total",
    "API requests answered 503 because PostgreSQL could not serve them: pool_timeout, "
    "connection (failed or lost), server (starting, stopping, out of resources), timeout "
    "(statement_timeout).",
    ["reason"],
)
SERVICE_CALLS = Counter(
    "petpro_service_calls_total",
    "Calls to the User and Clinic Services: ok, not_found, cached, stale (served while "
    "the service failed), unavailable.",
    ["dependency", "outcome"],
)
OUTBOX_FAILED = Gauge(
    "petpro_outbox_failed",
    "Events set aside by the relay (a message broke its schema).",
    multiprocess_mode="livemostrecent",
)
RELAY_EVENTS_PUBLISHED = Counter(
    "petpro_relay_events_published_total",
    "Events whose messages the broker confirmed.",
    ["event_type"],
)
RELAY_MESSAGES_PUBLISHED = Counter(
    "petpro_relay_messages_published_total", "Messages confirmed by the broker."
)
RELAY_INVALID_MESSAGES = Counter(
    "petpro_relay_invalid_messages_total",
    "Messages not published: failed their JSON Schema (analytics, notification) or could not "
    "be built (unbuildable).",
    ["kind"],
)
RELAY_BROKER_FAILURES = Counter(
    "petpro_relay_broker_failures_total", "Relay batches cut short by the broker."
)
RELAY_LISTENER_PASSES = Counter(
    "petpro_relay_listener_passes_total",
    "Relay passes of `manage.py outbox listen`, by what woke it (notify, sweep, start, backlog).",
    ["woken_by"],
)
TASK_FAILURES = Counter(
    "petpro_task_failures_total",
    "Celery tasks that failed for good (after their retries) and were dead-lettered.",
    ["task"],
)
# Set by the consistency job in a worker child: "mostrecent", so a result outlives the child.
CONSISTENCY_VIOLATIONS = Gauge(
    "petpro_consistency_violations",
    "Rows breaking each invariant at the last consistency check (0 = holds).",
    ["check"],
    multiprocess_mode="mostrecent",
)
CONSISTENCY_LAST_RUN = Gauge(
    "petpro_consistency_last_run_timestamp_seconds",
    "When the consistency check last completed (Unix time).",
    multiprocess_mode="mostrecent",
)
LOCAL_CACHE = Counter(
    "petpro_local_cache_total",
    "Read-model lookups in the in-process cache level (hit, or miss: then Redis).",
    ["result"],
)
REPLICA_FALLBACKS = Counter(
    "petpro_replica_fallbacks_total",
    "Lag-tolerant reads sent to the primary because no read replica answered.",
)
