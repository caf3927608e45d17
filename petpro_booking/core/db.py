"""Database plumbing: replica routing, the SERIALIZABLE decision with its retries (the second
layer against double booking, docs/architecture.md) and the precompiled reads of the hot paths."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

import psycopg
import psycopg_pool
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import (
    DatabaseError,
    NotSupportedError,
    OperationalError,
    connections,
    models,
    transaction,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import DatabaseDefault
from psycopg import IsolationLevel
from tenacity import RetryCallState, retry_if_exception

from . import metrics
from .errors import Contention
from .retrying import retry_policy

logger = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=models.Model)

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
# What says the database cannot serve a request now, rather than that the request or the code
# is wrong: the classes of connection exceptions (08) and insufficient resources (53: too many
# connections, out of memory, disk full), the server shutting down, crashed or starting
# (57P01-57P03), a statement stopped by statement_timeout (57014).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014"})


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


# Replicas that failed, by alias: skipped until this monotonic time (per process).
_replica_down_until: dict[str, float] = {}


def read_replica() -> str:
    """A replica alias for lag-tolerant reads (search), or the primary when none is configured
    or none answers. The chosen replica's connection is opened (pooled connections are checked
    first, CONN_HEALTH_CHECKS) before its alias is returned, so a lost replica costs at most
    DB_REPLICA_POOL_TIMEOUT_SECONDS once; then it is skipped for DB_REPLICA_RETRY_SECONDS and
    `petpro_replica_fallbacks_total` counts the reads sent to the primary instead.

    Never use it for a read a write decides on (holds, confirms): a replica may lag."""
    aliases = settings.DATABASE_REPLICA_ALIASES
    if not aliases:
        return "default"
    now = time.monotonic()
    candidates = [alias for alias in aliases if _replica_down_until.get(alias, 0.0) <= now]
    random.shuffle(candidates)
    for alias in candidates:
        connection = connections[alias]
        try:
            if connection.connection is not None and not connection.is_usable():
                connection.close()
            connection.ensure_connection()
            return alias
        except DatabaseError as exc:
            _replica_down_until[alias] = time.monotonic() + settings.DB_REPLICA_RETRY_SECONDS
            logger.warning(
                "replica %s unreachable (%s); reading from the primary for %.0f s",
                alias,
                type(exc).__name__,
                settings.DB_REPLICA_RETRY_SECONDS,
            )
            with contextlib.suppress(Exception):
                connection.close()
    metrics.REPLICA_FALLBACKS.inc()
    return "default"


def database_unavailable(exc: BaseException) -> str | None:
    """Why PostgreSQL could not serve a request, when `exc` (a Django database error, the
    driver's in its __cause__) says it could not: "pool_timeout" (no pooled connection within
    the pool's timeout: the database is unreachable or every connection is busy), "connection"
    (a connection failed or was lost: psycopg gives those no SQLSTATE, or class 08), "server"
    (shutting down, starting, out of resources), "timeout" (statement_timeout). None for every
    other error: a bug, a constraint, a serialization failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, psycopg_pool.PoolTimeout):
            return "pool_timeout"
        if isinstance(seen, psycopg.Error):
            sqlstate = seen.sqlstate
            if sqlstate is None:
                lost = isinstance(seen, psycopg.OperationalError) and _connection_lost(seen)
                return "connection" if lost else None
            if sqlstate == "57014":
                return "timeout"
            if sqlstate.startswith("08"):
                return "connection"
            if sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES) or (
                sqlstate in _UNAVAILABLE_SQLSTATES
            ):
                return "server"
            return None
        seen = seen.__cause__
    return None


def _connection_lost(error: psycopg.Error) -> bool:
    """A connection attempt that failed (its pgconn is BAD), or a connection of this thread
    that is closed or broken now; not a statement psycopg refused to send on a healthy
    connection ("number of parameters must be between 0 and 65535", no SQLSTATE either)."""
    pgconn = error.pgconn
    if pgconn is not None and pgconn.status == psycopg.pq.ConnStatus.BAD:
        return True
    return any(
        (driver := wrapper.connection) is not None and (driver.closed or driver.broken)
        for wrapper in connections.all(initialized_only=True)
    )


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


class RetryTransaction(Exception):
    """Raised inside a `run_serializable` decision to run the whole transaction again, e.g.
    when a value drawn at random clashed with a unique one (a booking's reference): a savepoint
    around the INSERT would cost two round trips on every write for a clash that almost never
    happens. Counted with the serialization retries; after the last attempt it propagates."""


class SerializationGaveUp(Contention):
    """Every attempt of a SERIALIZABLE decision failed on 40001/40P01: a 409 the caller may
    retry (the contenders have moved on by then), never a 500. Counted in
    `petpro_serializable_gave_up_total{operation}`."""

    code = "write_contention"


def run_serializable(decision: Callable[[], T], *, name: str, using: str = "default") -> T:
    """Run `decision` in one durable SERIALIZABLE transaction, retrying the whole of it on
    serialization failures and deadlocks (they may surface at COMMIT, hence the whole block)
    with the `serializable` retry policy (core/retrying.py).

    `decision` must be free of side effects outside the database; schedule those with
    `transaction.on_commit` so a retried attempt does not repeat them. When the attempts
    (DB_SERIALIZABLE_ATTEMPTS) run out it raises SerializationGaveUp (409), not the driver
    error.
    """

    def attempt() -> T:
        with _serializable(using):
            return decision()

    # The first attempt runs without the retry machinery (building the policy and tenacity's
    # state on every hold cost 1-2 % of its CPU); only a failure it retries starts the policy,
    # whose first attempt replays that failure, so the pauses and the counts are the policy's.
    try:
        return attempt()
    except Exception as exc:
        if not _is_retried(exc):
            raise
        failures = [exc]

    def again() -> T:
        if failures:
            raise failures.pop()
        return attempt()

    def retried(state: RetryCallState) -> None:
        metrics.SERIALIZABLE_RETRIES.labels(operation=name).inc()

    policy = retry_policy("serializable")
    retrying = policy.retrying(retry=retry_if_exception(_is_retried), before_sleep=retried)
    try:
        return retrying(again)
    except OperationalError as exc:
        if not is_retryable(exc):
            raise
        metrics.SERIALIZABLE_GAVE_UP.labels(operation=name).inc()
        logger.warning("%s: %d serializable attempts failed", name, policy.attempts)
        raise SerializationGaveUp(details={"operation": name}) from exc


def _is_retried(exc: BaseException) -> bool:
    return isinstance(exc, RetryTransaction) or (
        isinstance(exc, OperationalError) and is_retryable(exc)
    )


def prepared_cursor(using: str = "default") -> Any:
    """A cursor for the statements every request of a hot path runs (the hold's reads and
    writes): on PostgreSQL with DB_PREPARED_STATEMENTS, each statement is prepared on the server
    at its first use on a pooled connection (psycopg's server-side binding, `prepare=True`) and
    later executions skip parsing and planning (measured: the hold's slot read took 0.55 ms of
    PostgreSQL CPU as plain text, most of it planning). Elsewhere, and with the setting off
    (PgBouncer in transaction mode before 1.21), the ordinary cursor. Django's ordinary cursors
    never prepare (`prepare_threshold` only matters to these).

    Use it with `%s` placeholders and plain values; errors are wrapped as Django's."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
        return connection.cursor()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        connection.validate_thread_sharing()
        raw = cast(Any, _PreparingCursor(connection.connection))
        if connection.queries_logged:
            return connection.make_debug_cursor(raw)
        return connection.make_cursor(raw)


class _PreparingCursor(psycopg.Cursor):
    """psycopg's server-side binding cursor, every statement prepared (`prepare=True`)."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = True, **kw: Any):
        return super().execute(query, params, prepare=prepare, **kw)

    def _convert_query(self, query: Any, params: Any = None) -> Any:
        # psycopg 3.3 (pinned) keeps `_query` only for statements it does not prepare; Django's
        # query log reads it (`last_executed_query`): the text with $n placeholders.
        converted = super()._convert_query(query, params)
        self._query = converted
        return converted


class RowReader(Generic[M]):
    """`Model.objects.select_related(*related).get(pk=...)` with its SQL built once per
    process: one statement with the JOINs, instances made as the ORM makes them (`from_db`, the
    fields' own database converters, the related objects cached on the row).

    For the per-request reads of the hot paths only (the hold's slot, the pet check): there the
    ORM's query compilation costs several times the statement itself. `related` names forward,
    non-null foreign keys of `model`.
    """

    def __init__(self, model: type[M], *related: str, using: str = "default") -> None:
        self.model = model
        self.using = using
        self.related: list[models.ForeignKey] = []
        for name in related:
            field = model._meta.get_field(name)
            if not isinstance(field, models.ForeignKey) or field.null:
                raise ValueError(f"RowReader joins non-null foreign keys only, not {name!r}")
            self.related.append(field)
        # The tables of a row in column order: model, alias, the columns' attnames.
        row_models: list[type[models.Model]] = [
            model,
            *(cast(type[models.Model], field.related_model) for field in self.related),
        ]
        self._tables = [
            (row_model, f"t{index}", [field.attname for field in row_model._meta.concrete_fields])
            for index, row_model in enumerate(row_models)
        ]
        self._sql: str | None = None
        self._converters: list[tuple[int, list[tuple[Callable, Any]]]] = []

    def _prepare(self, connection: BaseDatabaseWrapper) -> str:
        def quote(name: str | None) -> str:
            return connection.ops.quote_name(cast(str, name))

        joins = [
            f"JOIN {quote(target._meta.db_table)} {alias} "
            f"ON {alias}.{quote(target._meta.pk.column)} = t0.{quote(field.column)}"
            for field, (target, alias, _) in zip(self.related, self._tables[1:], strict=True)
        ]
        columns, converters = [], []
        for row_model, alias, _ in self._tables:
            for field in row_model._meta.concrete_fields:
                columns.append(f"{alias}.{quote(field.column)}")
                column = field.get_col(alias)
                converters.append(
                    [
                        (convert, column)
                        for convert in connection.ops.get_db_converters(column)
                        + field.get_db_converters(connection)
                    ]
                )
        # Only the columns that have converters (JSON, booleans on SQLite, ...).
        self._converters = [(index, found) for index, found in enumerate(converters) if found]
        # Only names from the models' metadata, quoted; the key is a parameter.
        return (
            f"SELECT {', '.join(columns)} FROM {quote(self.model._meta.db_table)} t0 "  # noqa: S608
            f"{' '.join(joins)} WHERE t0.{quote(self.model._meta.pk.column)} = %s"
        )

    def get(self, pk: Any) -> M | None:
        """The row with this primary key and its related rows, or None (also for a key that
        is not even of the primary key's type)."""
        connection = connections[self.using]
        try:
            value = self.model._meta.pk.get_db_prep_value(
                self.model._meta.pk.to_python(pk), connection
            )
        except (ValidationError, ValueError, TypeError):
            return None
        if self._sql is None:
            self._sql = self._prepare(connection)
        with prepared_cursor(self.using) as cursor:
            cursor.execute(self._sql, [value])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for index, converters in self._converters:
            for convert, column in converters:
                values[index] = convert(values[index], column, connection)
        return self._build(values)

    def _build(self, values: list[Any]) -> M:
        instances = []
        start = 0
        for row_model, _, attnames in self._tables:
            chunk = values[start : start + len(attnames)]
            start += len(attnames)
            instances.append(row_model.from_db(self.using, attnames, chunk))
        row_instance = instances[0]
        for field, related in zip(self.related, instances[1:], strict=True):
            field.set_cached_value(row_instance, related)
        return cast(M, row_instance)


class RowInserter(Generic[M]):
    """`instance.save(force_insert=True)` for a new row of `model`, with its INSERT built once
    per process (per set of columns left to the database): the fields' own `pre_save`
    (`auto_now_add`, ...) and `get_db_prep_save`, then `INSERT ... RETURNING` the columns the
    database fills (the auto id, `db_default`s), set on the instance as the ORM sets them.

    For the per-request writes of the hot paths only (a hold, a booking, their events); no
    signals are sent (none are used here) and values must be plain values, not expressions.
    """

    def __init__(self, model: type[M], using: str = "default") -> None:
        self.model = model
        self.using = using
        self._sql: dict[frozenset[str], tuple[str, list[models.Field], list[models.Field]]] = {}

    def _prepare(
        self, connection: BaseDatabaseWrapper, left_to_database: frozenset[str]
    ) -> tuple[str, list[models.Field], list[models.Field]]:
        def quote(name: str | None) -> str:
            return connection.ops.quote_name(cast(str, name))

        meta = self.model._meta
        fields = [
            field
            for field in meta.local_concrete_fields
            if not field.generated and field.attname not in left_to_database
        ]
        returned = [
            field for field in meta.local_concrete_fields if field.attname in left_to_database
        ]
        sql = (  # only names from the model's metadata, quoted; the values are parameters
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))})"
        )
        if returned:
            if not connection.features.can_return_columns_from_insert:
                raise NotSupportedError(
                    f"RowInserter needs INSERT ... RETURNING, which this {connection.display_name}"
                    " lacks (SQLite needs 3.35 or later)"
                )
            sql += f" RETURNING {', '.join(quote(f.column) for f in returned)}"
        return sql, fields, returned

    def _row(self, instance: M) -> tuple[str, list[models.Field], list[models.Field], list[Any]]:
        """The INSERT for this instance's set of columns left to the database (built once),
        its fields, the fields the database fills, and the instance's values."""
        connection = connections[self.using]
        meta = self.model._meta
        left_to_database = frozenset(
            field.attname
            for field in meta.local_concrete_fields
            if (field is meta.auto_field and getattr(instance, field.attname) is None)
            or isinstance(getattr(instance, field.attname), DatabaseDefault)
        )
        prepared = self._sql.get(left_to_database)
        if prepared is None:
            prepared = self._sql[left_to_database] = self._prepare(connection, left_to_database)
        sql, fields, returned = prepared
        values = [
            field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
        ]
        return sql, fields, returned, values

    def _inserted(self, instance: M, returned: list[models.Field], row: Any) -> M:
        """Set what the database filled on the instance, as the ORM does after an INSERT."""
        connection = connections[self.using]
        meta = self.model._meta
        for field, value in zip(returned, row or (), strict=False):
            column = field.get_col(meta.db_table)
            for convert in connection.ops.get_db_converters(column) + field.get_db_converters(
                connection
            ):
                value = convert(value, column, connection)
            setattr(instance, field.attname, value)
        instance._state.adding = False
        instance._state.db = self.using
        return instance

    def insert(self, instance: M) -> M:
        sql, _, returned, values = self._row(instance)
        # As save() does: a failed INSERT inside an atomic block dooms that block.
        with (
            transaction.mark_for_rollback_on_error(self.using),
            prepared_cursor(self.using) as cursor,
        ):
            cursor.execute(sql, values)
            row = cursor.fetchone() if returned else None
        return self._inserted(instance, returned, row)


def _cast_type(field: models.Field, connection: BaseDatabaseWrapper) -> str:
    """The type a value of `field` is cast to in `INSERT ... SELECT`, where PostgreSQL cannot
    infer a parameter's type from its column: the column's type, without a varchar's length (a
    cast would cut a long value silently; the assignment refuses it, as a plain INSERT does)."""
    db_type = str(field.db_type(connection))
    return "varchar" if db_type.startswith("varchar(") else db_type


# `insert_when`'s statements, by gate and the inserters' column sets: built once per process.
_GATED_SQL: dict[tuple[Any, ...], str] = {}


def insert_when(
    gate: str,
    params: list[Any],
    rows: list[tuple[RowInserter[Any], models.Model]],
    *,
    commit: bool = False,
    using: str = "default",
) -> tuple[Any, ...] | None:
    """Run `gate` (one conditional write with `RETURNING`, `%s` placeholders) and INSERT `rows`
    only when it returned a row, in one statement on PostgreSQL: a hold's unit taken, its row
    and its event in one round trip instead of three. Returns the gate's row (None: the gate
    matched nothing and nothing was inserted); the rows' database-filled columns are set on
    their instances, as `RowInserter.insert` sets them.

    Each INSERT is a data-modifying CTE reading the gate's output, so it inserts one row when
    the gate returned one and none otherwise; PostgreSQL runs them all in the statement's one
    snapshot, with every constraint and trigger of a plain INSERT. Elsewhere (SQLite, the
    embedded mode) the gate and the INSERTs run one after another.

    `commit=True`, for the first statement of a `run_serializable` decision: when the
    transaction has not sent anything yet, the statement goes with its BEGIN and COMMIT in one
    round trip (psycopg's pipeline mode) and is committed when this returns. Whatever the
    decision runs after it runs in a new transaction at the same level, so the caller must have
    nothing left to write in the first one (a hold: nothing, or the slow path when the gate
    matched nothing). A failure rolls that transaction back and raises as any statement does
    (40001 retried by `run_serializable`). Inside an outer transaction (tests), an ordinary
    statement."""
    connection = connections[using]
    built = [(inserter, instance, *inserter._row(instance)) for inserter, instance in rows]
    if connection.vendor != "postgresql":
        with prepared_cursor(using) as cursor:
            cursor.execute(gate, params)
            gated = cursor.fetchone()
        if gated is None:
            return None
        for inserter, instance, *_ in built:
            inserter.insert(instance)
        return tuple(gated)
    key = (gate, *((id(inserter), sql) for inserter, _, sql, *_ in built))
    sql = _GATED_SQL.get(key)
    if sql is None:
        sql = _GATED_SQL[key] = _gated_sql(connection, gate, built)
    values = list(params)
    for *_, row_values in built:
        values.extend(row_values)
    with (
        transaction.mark_for_rollback_on_error(using),
        prepared_cursor(using) as cursor,
    ):
        if commit and _first_of_durable_transaction(connection):
            row = _execute_committed(connection, cursor, sql, values)
        else:
            cursor.execute(sql, values)
            row = cursor.fetchone()
    if row is None:
        return None
    width = len(row) - sum(len(returned) for *_, returned, _ in built)
    offset = width
    for inserter, instance, _, _, returned, _ in built:
        inserter._inserted(instance, returned, row[offset : offset + len(returned)])
        offset += len(returned)
    return tuple(row[:width])


def _first_of_durable_transaction(connection: BaseDatabaseWrapper) -> bool:
    """Inside one (durable) atomic block whose transaction has not begun on the server."""
    driver = connection.connection
    return (
        len(connection.atomic_blocks) == 1
        and driver is not None
        and not driver.autocommit
        and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )


def _execute_committed(
    connection: BaseDatabaseWrapper, cursor: Any, sql: str, values: list[Any]
) -> Any:
    """BEGIN (at the level `_serializable` set), the statement and COMMIT in one round trip;
    the statement's first row. psycopg would send its implicit BEGIN and wait for it, so the
    connection is in autocommit while the three travel; Django's atomic block then commits
    nothing, and its on_commit hooks run after this COMMIT."""
    driver = connection.connection
    level = driver.isolation_level
    begin = "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"
    driver.autocommit = True
    try:
        with connection.wrap_database_errors, driver.pipeline():
            driver.execute(begin, prepare=False)
            cursor.execute(sql, values)
            driver.execute("COMMIT", prepare=False)
        return cursor.fetchone()
    finally:
        # A failed statement leaves its transaction open and aborted; a failed COMMIT ends it.
        if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                driver.execute("ROLLBACK", prepare=False)
        with contextlib.suppress(psycopg.Error):
            driver.autocommit = False


def _gated_sql(connection: BaseDatabaseWrapper, gate: str, built: list[tuple[Any, ...]]) -> str:
    def quote(name: str | None) -> str:
        return connection.ops.quote_name(cast(str, name))

    ctes = [f"gate AS ({gate.strip()})"]
    selected, joined = ["gate.*"], ["gate"]
    for index, (inserter, _, _, fields, returned, _) in enumerate(built):
        table = quote(inserter.model._meta.db_table)
        columns = ", ".join(quote(field.column) for field in fields)
        casts = ", ".join(f"%s::{_cast_type(field, connection)}" for field in fields)
        # Only names and types from the models' metadata; the values are parameters.
        cte = f"i{index} AS (INSERT INTO {table} ({columns}) SELECT {casts} FROM gate"  # noqa: S608
        if returned:
            cte += f" RETURNING {', '.join(quote(field.column) for field in returned)}"
            selected.extend(f"i{index}.{quote(field.column)}" for field in returned)
            joined.append(f"i{index}")
        ctes.append(cte + ")")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selected)} FROM {', '.join(joined)}"  # noqa: S608
