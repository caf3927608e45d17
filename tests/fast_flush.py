"""A transactional test's flush in milliseconds instead of a third of a second.

After each `transaction=True` test Django flushes the database: one TRUNCATE of every table,
then `post_migrate` re-creates the content types and permissions the TRUNCATE emptied. On
PostgreSQL the TRUNCATE gives every table, index and TOAST table a new file (about 0.24 s for
this schema) and the re-creation commits 25 times (about 0.08 s): 0.3 s for each of some 650
transactional tests, a third of the suite's time. Here the flush deletes the rows instead
(about 9 ms), and leaves the content types and permissions alone, which is what `post_migrate`
would have put back (it still runs, and finds nothing to create). The DELETEs run in one
transaction, a referencing table before the table it references (a key with ON DELETE
RESTRICT is checked at once, deferred or not); a schema whose keys form a cycle gets Django's
own flush.

Deleted rows stay behind as dead rows until a VACUUM, and CI's PostgreSQL runs without
autovacuum: after `TRUNCATE_AFTER_ROWS` deleted rows the next flush is Django's own TRUNCATE,
which leaves the files empty again. A flush that resets sequences is always Django's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.backends.postgresql.operations import DatabaseOperations

# Kept by the flush: the rows `post_migrate` re-creates, the same after every test.
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})
TRUNCATE_AFTER_ROWS = 50_000

_DELETE = "DELETE FROM "


class _DeletedRows:
    since_truncate = 0


def _sql_flush(
    original: Any,
    ops: DatabaseOperations,
    style: Any,
    tables: list[str],
    *,
    reset_sequences: bool = False,
    allow_cascade: bool = False,
) -> list[str]:
    ordered = None
    if not reset_sequences and _DeletedRows.since_truncate < TRUNCATE_AFTER_ROWS:
        ordered = _referencing_first(ops, [table for table in tables if table not in KEPT_TABLES])
    if ordered is None:
        return original(
            ops, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
    return [f"{_DELETE}{ops.quote_name(table)}" for table in ordered]


def _referencing_first(ops: DatabaseOperations, tables: list[str]) -> list[str] | None:
    """`tables`, each after every table with a foreign key to it; None if the keys form a
    cycle (a table's key to itself is no cycle: one DELETE empties it)."""
    with ops.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid <> confrelid"
        )
        keys = cursor.fetchall()
    wanted = set(tables)
    # A referenced table comes after every table that references it: those are its
    # predecessors in the order.
    predecessors: dict[str, set[str]] = {table: set() for table in tables}
    for referencing, referenced in keys:
        referencing, referenced = referencing.strip('"'), referenced.strip('"')
        if referencing in wanted and referenced in wanted:
            predecessors[referenced].add(referencing)
    try:
        return list(TopologicalSorter(predecessors).static_order())
    except CycleError:
        return None


def _execute_sql_flush(original: Any, ops: DatabaseOperations, sql_list: list[str]) -> None:
    if not sql_list or not all(sql.startswith(_DELETE) for sql in sql_list):
        original(ops, sql_list)
        _DeletedRows.since_truncate = 0
        return
    connection = ops.connection
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for sql in sql_list:
            cursor.execute(sql)
            _DeletedRows.since_truncate += max(cursor.rowcount, 0)


@pytest.fixture(scope="session", autouse=True)
def _fast_flush() -> Iterator[None]:
    if connections["default"].vendor != "postgresql":
        yield
        return
    sql_flush = DatabaseOperations.sql_flush
    execute_sql_flush = DatabaseOperations.execute_sql_flush

    def patched_sql_flush(self: DatabaseOperations, style: Any, tables: list[str], **kwargs: Any):
        return _sql_flush(sql_flush, self, style, tables, **kwargs)

    def patched_execute_sql_flush(self: DatabaseOperations, sql_list: list[str]) -> None:
        _execute_sql_flush(execute_sql_flush, self, sql_list)

    DatabaseOperations.sql_flush = patched_sql_flush  # type: ignore[method-assign]
    DatabaseOperations.execute_sql_flush = patched_execute_sql_flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]
        DatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
