"""A long-running outbox relay woken by PostgreSQL LISTEN/NOTIFY (`manage.py outbox listen`).

With `EVENT_RELAY_NUDGE=notify`, a process that committed events wakes this loop with one
`NOTIFY` on `CHANNEL` (sent by its nudger thread, at most once per
`EVENT_RELAY_NUDGE_INTERVAL_SECONDS`, never by the request) instead of sending a Celery relay
task. The loop runs the same `outbox_relay()` as the task, so the guarantees do not change
(claim, publish with confirms and mark in one transaction; at-least-once; several loops at once
are safe). What changes is the cost of a pass: no Celery message, no task dispatch in the
worker's pool, no connection handed out per task (docs/benchmarks.md measures both).

The loop sweeps on its own every `EVENT_RELAY_LISTEN_SWEEP_SECONDS` when no notification
comes (a notification lost while the loop reconnected costs at most that delay; beat's sweep
keeps running too), runs passes at most every `EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS`, backs
off while the broker fails, and reconnects when its database connection drops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import close_old_connections, connection, connections

from petpro_booking.core import metrics

from .relay import RelayReport, outbox_relay

logger = logging.getLogger(__name__)

CHANNEL = "petpro_outbox"
# Longest wait between two looks at the stop flag (SIGTERM ends the loop within this).
STOP_CHECK_SECONDS = 1.0
RECONNECT_BACKOFF_MAX_SECONDS = 10.0


def notify_relay() -> None:
    """Wake the listening relays: one NOTIFY on this thread's database connection, which goes
    back to the pool right after (the nudger's thread holds no connection between sends)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    finally:
        connection.close()


def listen_conninfo() -> dict[str, Any]:
    """How the loop's own connection reaches PostgreSQL: `EVENT_RELAY_LISTEN_DATABASE_URL` when
    set (LISTEN needs a session: not through PgBouncer in transaction mode), else the default
    database's parameters."""
    if settings.EVENT_RELAY_LISTEN_DATABASE_URL:
        return {"conninfo": settings.EVENT_RELAY_LISTEN_DATABASE_URL}
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    return params


class RelayListener:
    """The loop: LISTEN, a pass, then a pass after every wake-up (a notification, or the sweep
    timeout), never two passes closer than `min_interval`.

    Notifications that arrive during a pass are read before the next pass starts, and that one
    pass covers them all (a pass drains the whole outbox), so a burst of commits costs one pass
    per `min_interval`, and the last commit of a burst is always followed by a pass that starts
    after its notification."""

    def __init__(
        self,
        *,
        sweep_seconds: float,
        min_interval: float,
        relay: Callable[[], RelayReport] = outbox_relay,
        conninfo: Callable[[], dict[str, Any]] = listen_conninfo,
    ) -> None:
        self.sweep_seconds = sweep_seconds
        self.min_interval = min_interval
        self.relay = relay
        self.conninfo = conninfo
        self.passes = 0
        self.failures = 0  # passes in a row that failed (the pause before the next grows)
        self.connections = 0  # LISTEN connections made (1 + reconnections)
        self._more = False  # the last pass ended on its time budget, the outbox not drained
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait on it)

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set. A dropped connection (database restart, failover, a terminated
        backend) is reconnected with a growing pause; nothing else ends the loop."""
        backoff = 0.5
        while not stop.is_set():
            try:
                with self._connect() as listen:
                    backoff = 0.5
                    self._serve(listen, stop)
            except psycopg.Error as exc:
                self.listening.clear()
                logger.warning("outbox listener: connection lost (%s); reconnecting", exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_SECONDS)
        self.listening.clear()

    def _connect(self) -> psycopg.Connection:
        params = self.conninfo()
        listen = psycopg.connect(autocommit=True, **params)
        try:
            listen.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            listen.close()
            raise
        self.connections += 1
        return listen

    def _serve(self, listen: psycopg.Connection, stop: threading.Event) -> None:
        self.listening.set()
        logger.info("outbox listener: listening on %s", CHANNEL)
        woken_by = "start"  # what committed before the LISTEN
        while not stop.is_set():
            last_pass = time.monotonic()
            pause = self._pass(woken_by)
            if stop.wait(max(pause, last_pass + self.min_interval - time.monotonic())):
                return
            woken_by = self._wait(listen, stop, more=self._more)

    def _wait(self, listen: psycopg.Connection, stop: threading.Event, *, more: bool) -> str:
        """Until a notification (or one already read during the pass), the sweep timeout, or
        `stop`; then reads every notification already queued, which the next pass covers."""
        if more:  # the last pass ended on its time budget with the outbox not drained
            self._drain(listen)
            return "backlog"
        deadline = time.monotonic() + self.sweep_seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "sweep"
            notifies = listen.notifies(timeout=min(remaining, STOP_CHECK_SECONDS), stop_after=1)
            try:
                notified = next(notifies, None) is not None
            finally:
                notifies.close()  # until closed, it holds the connection's lock
            if notified:
                self._drain(listen)
                return "notify"
        return "stop"

    @staticmethod
    def _drain(listen: psycopg.Connection) -> None:
        for _ in listen.notifies(timeout=0):
            pass

    def _pass(self, woken_by: str) -> float:
        """One relay run (it drains the outbox); returns how long to pause before the next
        (0, or a growing backoff while the broker or the database fails)."""
        self._more = False
        self.passes += 1
        metrics.RELAY_LISTENER_PASSES.labels(woken_by=woken_by).inc()
        try:
            report = self.relay()
        except Exception:
            logger.exception("outbox listener: relay pass failed; trying again")
            report = None
        close_old_connections()  # a connection the failure broke is not reused
        if report is None or report.broker_error:
            self.failures += 1
            return min(0.5 * 2**self.failures, self.sweep_seconds)
        self.failures = 0
        batch = settings.EVENT_RELAY_BATCH_SIZE
        self._more = report.claimed > 0 and report.claimed % batch == 0 and report.published > 0
        return 0.0
