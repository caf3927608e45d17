"""The embedded mode's celery beat: one daemon thread that runs every job of
CELERY_BEAT_SCHEDULE on its interval, in-process (tasks are eager without a broker).

The schedule is read from settings, so `make run` and the real `celery beat` run the same jobs
at the same intervals. A job that fails is logged and tried again at its next turn; a job that
did something logs what (e.g. `{"cancelled": 1}`), so a newcomer sees the clock work.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    task: str
    interval: float
    args: tuple = ()
    kwargs: dict | None = None
    due: float = 0.0


def _seconds(schedule: Any) -> float:
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, dt.timedelta):
        return schedule.total_seconds()
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    if isinstance(run_every, dt.timedelta):
        return run_every.total_seconds()
    raise ValueError(f"the embedded clock runs interval schedules only, not {schedule!r}")


def jobs_from_settings(schedule: dict[str, dict] | None = None) -> list[Job]:
    """One job per beat entry, first run one interval after start (as celery beat does)."""
    entries = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
    now = time.monotonic()
    jobs = []
    for name, entry in entries.items():
        interval = _seconds(entry["schedule"])
        jobs.append(
            Job(
                name=name,
                task=entry["task"],
                interval=interval,
                args=tuple(entry.get("args", ())),
                kwargs=dict(entry.get("kwargs", {})),
                due=now + interval,
            )
        )
    return jobs


def _did_something(result: Any) -> bool:
    if isinstance(result, dict):
        return any(result.values())
    if isinstance(result, list | tuple | set):
        return bool(result)
    return bool(result)


def job_run(job: Job) -> Any:
    """Run one job now, in this thread; returns what the task returned (None on error)."""
    from petpro_booking.celery import app

    close_old_connections()
    try:
        outcome = app.tasks[job.task].apply(args=job.args, kwargs=job.kwargs or {})
        if outcome.failed():
            raise outcome.result
        result = outcome.result
    except Exception:
        logger.exception("embedded clock: %s failed; retried at its next turn", job.name)
        return None
    finally:
        connections.close_all()
    if _did_something(result):
        logger.info("embedded clock: %s -> %s", job.name, result)
    return result


class EmbeddedClock:
    """Runs `jobs` on their intervals in one daemon thread until `stop()`."""

    def __init__(self, jobs: list[Job] | None = None) -> None:
        self.jobs = jobs if jobs is not None else jobs_from_settings()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-clock", daemon=True)

    def start(self) -> EmbeddedClock:
        from petpro_booking.celery import app

        app.loader.import_default_modules()  # autodiscovery is lazy until a worker starts
        logger.info(
            "embedded clock: %s",
            ", ".join(f"{job.name} every {job.interval:g}s" for job in self.jobs),
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if job.due <= now and not self._stopped.is_set():
                    job_run(job)
                    job.due = time.monotonic() + job.interval
            next_due = min((job.due for job in self.jobs), default=now + 1.0)
            self._stopped.wait(max(0.05, next_due - time.monotonic()))
