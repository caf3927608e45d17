"""Coalesced relay nudges: however many commits append events, a process asks for at most one
relay pass per interval, from a background thread, never from the request that committed."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class RelayNudger:
    """Asks for a relay pass after commits, at most once per `interval` seconds per process.

    `nudge()` only sets a flag (no I/O, no lock held across I/O), so a commit's after-commit
    hook costs nothing on the request path. A daemon thread waits for the flag, clears it,
    sends one pass (`send`), then sleeps `interval`; commits during that sleep set the flag
    again and are covered by the next send. So a commit is always followed by a pass that
    starts after it (no event waits for the beat sweep unless a send fails), while a burst of
    thousands of commits costs one send per interval. The pass drains the whole outbox.

    The thread is started lazily in the process that nudges, and again after a fork (a
    gunicorn or Celery child starts with none)."""

    def __init__(self, send: Callable[[], None], *, interval: float) -> None:
        self._send = send
        self.interval = interval
        self._wanted = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.sent = 0

    def nudge(self) -> None:
        self._wanted.set()
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            self._start()

    def _start(self) -> None:
        with self._guard:
            pid = os.getpid()
            if self._pid == pid and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != pid:  # a forked child: the parent's flag and thread are not ours
                self._wanted = threading.Event()
                self._wanted.set()
            self._pid = pid
            self._thread = threading.Thread(target=self._run, name="relay-nudger", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        wanted = self._wanted
        while True:
            wanted.wait()
            wanted.clear()
            try:
                self._send()
                self.sent += 1
            except Exception:
                logger.warning(
                    "outbox relay nudge failed; the beat sweep will publish", exc_info=True
                )
            if self.interval > 0:
                threading.Event().wait(self.interval)
