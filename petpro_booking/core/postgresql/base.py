"""Django's PostgreSQL backend, reading `timestamptz` values with psycopg's compiled loader.

Django registers a Python subclass of psycopg's `TimestamptzLoader` (`BaseTzLoader`: it parses
each value in Python, then sets its tzinfo to the connection's time zone), which keeps psycopg
from using its C implementation: about 6 µs a value against 1 µs (issue 11, docs/benchmarks.md;
an uncached search page reads 60 of them). With `USE_TZ` and no `TIME_ZONE` on the database,
Django sets every session's time zone to UTC (`_configure_timezone`, on each pooled connection),
and psycopg's own loader then returns the same aware UTC datetimes. Any other configuration
keeps Django's loader.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base
from psycopg import adapt, postgres, pq
from psycopg.abc import Loader
from psycopg.types.datetime import TimestamptzLoader

TIMESTAMPTZ_OID = postgres.types["timestamptz"].oid


def _compiled_loader() -> type[Loader]:
    """psycopg's C `TimestamptzLoader` where psycopg[binary] or [c] is installed (psycopg swaps
    it in on registration), else its Python one."""
    probe = adapt.AdaptersMap(psycopg.adapters)
    probe.register_loader(TIMESTAMPTZ_OID, TimestamptzLoader)
    return probe.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT) or TimestamptzLoader


class UtcTimestamptzLoader(adapt.Loader):
    """psycopg's own `timestamptz` loader, with the `timezone` attribute Django's cursors compare
    with the connection's (`create_cursor`: equal, so no cursor registers a loader of its own).
    The compiled class cannot be subclassed, so each instance wraps one and hands psycopg that
    one's bound `load` (psycopg calls an instance's `load` directly: no Python frame a value)."""

    timezone = dt.UTC
    compiled = _compiled_loader()

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._compiled = self.compiled(oid, context)
        self.load = self._compiled.load  # type: ignore[method-assign]

    def load(self, data: Any) -> dt.datetime:
        # Only reached through the class (the instance attribute above shadows it).
        return self._compiled.load(data)


@lru_cache
def utc_adapters(template: adapt.AdaptersMap) -> adapt.AdaptersMap:
    """Django's adapters `template`, with `UtcTimestamptzLoader`."""
    adapters = adapt.AdaptersMap(template)
    adapters.register_loader("timestamptz", UtcTimestamptzLoader)
    return adapters


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if settings.USE_TZ and self.timezone_name == "UTC":
            params["context"] = utc_adapters(params["context"])
        return params
