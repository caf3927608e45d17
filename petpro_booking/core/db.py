"""Database plumbing: replica routing and the SERIALIZABLE retry loop (DESIGN.md §4 layer 2)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError, connections, transaction
from psycopg import IsolationLevel

from . import metrics

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


class PrimaryReplicaRouter:
    """Writes and ordinary reads go to the primary; `read_replica()` names a replica for reads
    that tolerate lag (slot search). Only the primary is migrated."""

    def db_for_read(self, model, **hints):
        return None

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == "default"


def read_replica() -> str:
    """A replica alias for lag-tolerant reads, or the primary when none is configured."""
    aliases = settings.DATABASE_REPLICA_ALIASES
    return random.choice(aliases) if aliases else "default"


def is_retryable(exc: BaseException) -> bool:
    """True for SQLSTATE 40001/40P01 (psycopg 3 puts the driver error in __cause__)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) in RETRYABLE_SQLSTATES:
            return True
        seen = seen.__cause__
    return False


@contextlib.contextmanager
def _serializable(using: str) -> Iterator[None]:
    """A durable transaction at SERIALIZABLE. On PostgreSQL the level is set on the driver's
    connection, so psycopg opens it with `BEGIN ISOLATION LEVEL SERIALIZABLE` (one round trip,
    not BEGIN and then SET TRANSACTION), and put back afterwards for the next user of the
    pooled connection."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using, durable=True):
            yield
        return
    if connection.in_atomic_block:  # inside a test's transaction: the statement form
        with transaction.atomic(using=using, durable=True):
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            yield
        return
    connection.ensure_connection()
    driver = connection.connection
    driver.isolation_level = IsolationLevel.SERIALIZABLE
    try:
        with transaction.atomic(using=using, durable=True):
            yield
    finally:
        with contextlib.suppress(Exception):  # a broken connection is discarded anyway
            driver.isolation_level = None


def run_serializable(decision: Callable[[], T], *, name: str, using: str = "default") -> T:
    """Run `decision` in one durable SERIALIZABLE transaction, retrying the whole of it on
    serialization failures and deadlocks (they may surface at COMMIT, hence the outer loop).

    `decision` must be free of side effects outside the database; schedule those with
    `transaction.on_commit` so a retried attempt does not repeat them.
    """
    attempts = settings.DB_SERIALIZABLE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with _serializable(using):
                return decision()
        except OperationalError as exc:
            if not is_retryable(exc) or attempt == attempts:
                if is_retryable(exc):
                    metrics.SERIALIZABLE_GAVE_UP.labels(operation=name).inc()
                raise
            metrics.SERIALIZABLE_RETRIES.labels(operation=name).inc()
            # Full jitter, capped: contenders spread out instead of colliding again.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover
