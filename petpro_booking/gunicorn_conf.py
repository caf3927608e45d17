"""gunicorn settings of the web container: JSON logs and multiprocess-safe Prometheus metrics.

`gunicorn petpro_booking.wsgi -c petpro_booking/gunicorn_conf.py`. Every worker writes its metric
samples to PROMETHEUS_MULTIPROC_DIR, /metrics sums them, and `child_exit` marks a dead worker so
its gauges stop counting (without this each scrape shows one worker's numbers).
"""

import os
import runpy
from pathlib import Path

from gunicorn.glogging import Logger

# Before any worker imports prometheus_client: the multiprocess mode is chosen at import time.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/petpro-prometheus")  # noqa: S108
os.environ.setdefault("SERVICE_COMPONENT", "web")

# A number that is not one, or out of range, stops gunicorn with the variable's name. The
# reader is loaded by its path: importing the package would pull Django and Celery into the
# master (and keep their old code across a HUP reload).
env_number = runpy.run_path(str(Path(__file__).with_name("core") / "env_numbers.py"))["env_number"]

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# 1 CPU per pod by default: 2 x CPU + 1 sync workers; threads > 1 switches to gthread.
workers = env_number("GUNICORN_WORKERS", 3, minimum=1)
threads = env_number("GUNICORN_THREADS", 1, minimum=1)
worker_class = "gthread" if threads > 1 else "sync"
timeout = env_number("GUNICORN_TIMEOUT", 30)  # 0: no timeout, as gunicorn reads it
graceful_timeout = env_number("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = env_number("GUNICORN_KEEPALIVE", 5)
# A worker is recycled after this many requests (a guard against slow leaks, docs/benchmarks.md
# "Peak-hour soak" measures the growth): at the seed's peak of 500 requests/s a few workers
# serve ~100 each a second, so 2,000 recycled every worker every ~20 s, each new one paying
# Django's start, new database connections and its first calls' imports.
max_requests = int(env_number("GUNICORN_MAX_REQUESTS", 50000))  # 0: never recycled
max_requests_jitter = max_requests // 10
# The heartbeat files on tmpfs: a slow overlay disk must not make workers look dead.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108
)
# The app's middleware writes one JSON access line per request (with ids and trace id).
accesslog = None


class QuietAccessLogger(Logger):
    """gunicorn's logger without its access line: with `logconfig_dict` set, gunicorn builds
    every request's access-log fields (~3 % of a worker's CPU) and hands them to a logger with
    no handler."""

    def access(self, resp, req, environ, request_time) -> None:
        return None


logger_class = QuietAccessLogger
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "petpro_booking.core.logging.json_formatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"level": os.environ.get("LOG_LEVEL", "INFO"), "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def on_starting(server):
    """In the master, before any worker: start from an empty metrics directory (files of a
    previous run would be counted again). Only the files: the directory may be a mount."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):
        leftover.unlink(missing_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """Flush the spans a worker still holds (no-op when tracing is off)."""
    from petpro_booking.core import tracing

    tracing.shutdown()
