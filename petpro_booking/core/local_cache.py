"""The in-process cache level: a small LRU with short TTLs in front of Redis, for values read
on every request that change rarely (cache generations, the clinics read-model) and for search
pages asked for more than once.

It is never invalidated by a message: what it holds is either a generation number, kept
LOCAL_CACHE_GENERATION_SECONDS (0.5 s) so a bump made by another process is seen within a
second, or a value whose key carries the generation it was read under, so a bump makes it
unreachable at once. Each process (every gunicorn worker, every Celery child) has its own;
LOCAL_CACHE_ENABLED=false turns it off (then every read goes to Redis, as before).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any

from django.conf import settings

MISSING: Any = object()


class LocalLRU:
    """A thread-safe LRU of at most `max_entries` keys, each with its own expiry."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value, or MISSING when absent or expired."""
        now = time.monotonic()
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return MISSING
            expires, value = entry
            if expires <= now:
                del self._entries[key]
                return MISSING
            self._entries.move_to_end(key)
            return value

    def set(self, key: Any, value: Any, *, ttl: float) -> None:
        expires = time.monotonic() + ttl
        with self._guard:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: Any) -> None:
        with self._guard:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_local: LocalLRU | None = None
_local_pid = 0
_local_guard = threading.Lock()


def local_cache() -> LocalLRU | None:
    """This process's LRU, or None when LOCAL_CACHE_ENABLED is off. A forked child starts
    with an empty one (what the parent read is the parent's)."""
    global _local, _local_pid
    if not settings.LOCAL_CACHE_ENABLED:
        return None
    pid = os.getpid()
    if _local is None or _local_pid != pid:
        with _local_guard:
            if _local is None or _local_pid != pid:
                _local = LocalLRU(settings.LOCAL_CACHE_MAX_ENTRIES)
                _local_pid = pid
    return _local


def clear_local_cache() -> None:
    """Forget everything this process holds (tests; `cache.clear()` callers)."""
    if _local is not None:
        _local.clear()
