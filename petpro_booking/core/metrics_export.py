"""The /metrics endpoint (multiprocess-safe under gunicorn) and the metrics no request counts:
scrape-time gauges read from the database and the readiness checks, database pool sampling,
Celery task metrics and the worker's own metrics port.

Under gunicorn (and a prefork Celery worker) every process writes its samples to files in
`PROMETHEUS_MULTIPROC_DIR` and one scrape sums them; that variable must be set before the first
`prometheus_client` import (gunicorn_conf.py does it for web, the chart for the worker).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from . import health
from .env_numbers import BadNumber, env_number
from .logging import get_logger

logger = get_logger(__name__)

DB_POOL_CONNECTIONS = Gauge(
    "petpro_db_pool_connections",
    "Database pool connections by state (in_use, idle, max), summed over live processes.",
    ["alias", "state"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "petpro_db_pool_requests_waiting",
    "Requests waiting for a pooled database connection, summed over live processes.",
    ["alias"],
    multiprocess_mode="livesum",
)
HEALTH_CHECK_UP = Gauge(
    "petpro_health_check_up",
    "1 when a readiness check is ok or not configured, 0 when degraded or unavailable.",
    ["check"],
    multiprocess_mode="livemostrecent",
)
CELERY_TASKS = Counter(
    "petpro_celery_tasks_total", "Celery tasks run, by task and final state.", ["task", "state"]
)
CELERY_TASK_SECONDS = Histogram(
    "petpro_celery_task_duration_seconds",
    "Run time of Celery tasks.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# Above 0: the sampler thread sleeps this long between samples.
DB_POOL_SAMPLE_SECONDS = env_number(
    "DB_POOL_METRICS_INTERVAL_SECONDS", 5.0, kind=float, above_minimum=True
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def scrape_registry() -> CollectorRegistry:
    """Every process's samples when running multiprocess, else this process's registry."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def reset_multiprocess_dir(path: str | None = None) -> None:
    """Empty the directory at start-up: files of a previous run would be counted again. This
    process's own files stay (metrics created at import time already write to them; deleted,
    their samples would vanish from every scrape)."""
    path = path or multiprocess_dir()
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for leftover in directory.glob("*.db"):  # only the files: the directory may be a mount
        if not leftover.name.endswith(own):
            leftover.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# --- database pool utilisation ---------------------------------------------------------------


def _open_pools() -> dict[str, Any]:
    """The pools this process has already created, by alias. Read, never created here: a pool
    made too early (before the test runner renames the database) would point elsewhere."""
    if not any(
        connections.settings[alias]["ENGINE"].endswith("postgresql") for alias in connections
    ):
        return {}
    from django.db.backends.postgresql.base import DatabaseWrapper

    return dict(getattr(DatabaseWrapper, "_connection_pools", {}))


def sample_db_pools() -> None:
    """Record this process's pool stats (psycopg_pool `get_stats()`) for every pooled alias."""
    for alias, pool in _open_pools().items():
        stats = pool.get_stats()
        size = stats.get("pool_size", 0)
        available = stats.get("pool_available", 0)
        DB_POOL_CONNECTIONS.labels(alias=alias, state="in_use").set(max(size - available, 0))
        DB_POOL_CONNECTIONS.labels(alias=alias, state="idle").set(available)
        DB_POOL_CONNECTIONS.labels(alias=alias, state="max").set(pool.max_size)
        DB_POOL_WAITING.labels(alias=alias).set(stats.get("requests_waiting", 0))


_sampler_pid: int | None = None
_sampler_lock = threading.Lock()


def _sample_forever() -> None:
    while True:
        try:
            sample_db_pools()
        except Exception:  # a metrics thread must never die on a transient error
            logger.warning("db pool sampling failed", exc_info=True)
        time.sleep(DB_POOL_SAMPLE_SECONDS)


def ensure_db_pool_sampler() -> None:
    """Start this process's pool sampler thread once (after any fork: checked by pid)."""
    global _sampler_pid
    pid = os.getpid()
    if _sampler_pid == pid:
        return
    with _sampler_lock:
        if _sampler_pid == pid:
            return
        threading.Thread(target=_sample_forever, name="db-pool-metrics", daemon=True).start()
        _sampler_pid = pid


# --- gauges read at scrape time ----------------------------------------------------------------


_scrape_refreshers: dict[str, Callable[[], None]] = {}


def on_scrape(name: str, refresh: Callable[[], None]) -> None:
    """Register `refresh()` to set an app's gauges at every scrape (from its AppConfig.ready):
    the apps own their gauges and queries, so core knows no app (the direction in
    docs/architecture.md). Registering a name again replaces it."""
    _scrape_refreshers[name] = refresh


def refresh_scrape_gauges() -> None:
    """The apps' gauges (outbox backlog and age, expiry lag, ...) and the readiness checks, as
    of this scrape.

    `set()` at scrape time because a `set_function` gauge is invisible in multiprocess mode
    (the scrape reads the workers' files, it calls no function)."""
    for name, refresh in list(_scrape_refreshers.items()):
        try:
            refresh()
        except DatabaseError:
            logger.warning("metrics: gauges not refreshed (database unavailable)", gauges=name)
    for name, report in health.run_checks().items():
        HEALTH_CHECK_UP.labels(check=name).set(
            1 if report.get("status") in ("ok", "not_configured") else 0
        )


def metrics_view(request: HttpRequest) -> HttpResponse:
    refresh_scrape_gauges()
    sample_db_pools()
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


# --- Celery ------------------------------------------------------------------------------------

_task_started: dict[str, float] = {}


def _on_task_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


def _on_task_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    started = _task_started.pop(task_id or "", None)
    name = getattr(task, "name", "unknown")
    CELERY_TASKS.labels(task=name, state=(state or "unknown").lower()).inc()
    if started is not None:
        CELERY_TASK_SECONDS.labels(task=name).observe(time.perf_counter() - started)


def serve_metrics(port_variable: str) -> None:
    """Serve /metrics on the port the environment variable names (0 or unset: off), for a
    process with no HTTP server of its own (the Celery worker, the outbox relay)."""
    port = int(env_number(port_variable, 0, maximum=65535))
    if not port:
        return
    from prometheus_client import start_http_server

    reset_multiprocess_dir()
    start_http_server(port, registry=scrape_registry())
    logger.info("metrics listening", port=port, multiprocess=bool(multiprocess_dir()))


def _on_worker_init(**_: Any) -> None:
    """In the worker's main process: serve /metrics on CELERY_METRICS_PORT (0: off). A port
    that is no port stops the worker: Celery logs and ignores an Exception from a signal
    receiver, so the worker would run without its metrics and say so only once."""
    try:
        serve_metrics("CELERY_METRICS_PORT")
    except BadNumber as exc:
        raise SystemExit(str(exc)) from exc


def _on_worker_process_init(**_: Any) -> None:
    ensure_db_pool_sampler()


def _on_worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    mark_process_dead(pid or os.getpid())


def install_celery_hooks() -> None:
    from celery import signals

    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.worker_process_init.connect(_on_worker_process_init, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)
