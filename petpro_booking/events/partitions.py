"""Monthly partitions of `events` on PostgreSQL (migration 0004 of events): create them ahead,
find the old ones, archive and drop a month at once. Every partition gets the table's own
autovacuum settings (a partitioned parent cannot hold them) and the parent's indexes under
names that start with the parent index's name (`events_outbox_pending_idx_p202612`).

Uniqueness across partitions: PostgreSQL's unique indexes on a partitioned table must include
the partition key, so (aggregate_id, aggregate_version) is guarded by a trigger and a small
unpartitioned table of one row per aggregate (`event_aggregate_heads`, its last version): an
event whose version is not above the last one fails with a unique violation named
`events_aggregate_version_uniq`, as the constraint did. The primary key is (id, created_at)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

TABLE = "events"
DEFAULT_PARTITION = "events_default"
NAME_RE = re.compile(r"^events_p(\d{4})(\d{2})$")
# The events table's autovacuum settings (events migration 0003, the table's churn: every row
# inserted then updated once); set on every partition, the parent cannot hold them.
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "2000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "5000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}
MONTHS_AHEAD = 3


@dataclass(frozen=True)
class Partition:
    name: str
    start: dt.datetime
    end: dt.datetime


def month_start(moment: dt.datetime) -> dt.datetime:
    utc = moment.astimezone(dt.UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def partition_name(start: dt.datetime) -> str:
    return f"events_p{start.year:04d}{start.month:02d}"


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [TABLE])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def partitions() -> list[Partition]:
    """The monthly partitions, oldest first (the default partition is not one of them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = NAME_RE.match(name)
        if match:
            start = dt.datetime(int(match[1]), int(match[2]), 1, tzinfo=dt.UTC)
            found.append(Partition(name=name, start=start, end=next_month(start)))
    return sorted(found, key=lambda p: p.start)


def _reloptions() -> str:
    return ", ".join(f"{name} = {value}" for name, value in AUTOVACUUM.items())


def _parent_indexes(cursor) -> list[tuple[str, str]]:
    """(name, definition) of the parent's non-unique indexes."""
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisunique",
        [TABLE],
    )
    return list(cursor.fetchall())


def _create_attached(cursor, name: str, bound: str, params: Sequence[Any]) -> None:
    """A partition made as a table of its own (so its settings and index names are ours),
    then attached: PostgreSQL adopts the equivalent indexes and adds the unique ones."""
    quote = connection.ops.quote_name
    cursor.execute(
        f"CREATE TABLE {quote(name)} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        f"WITH ({_reloptions()})"
    )
    suffix = name.removeprefix("events_")
    for index_name, definition in _parent_indexes(cursor):
        own = f"{index_name}_{suffix}"[:63]
        statement = re.sub(
            rf"^CREATE INDEX {re.escape(index_name)} ON ONLY (\S+\.)?{TABLE} ",
            f"CREATE INDEX {quote(own)} ON {quote(name)} ",
            definition,
        )
        cursor.execute(statement)
    cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {quote(name)} {bound}", params)


def ensure_partitions(*, through: dt.datetime, since: dt.datetime | None = None) -> list[str]:
    """Create the default partition and every monthly partition from `since` (default: this
    month) through the month of `through`; returns the names created. Idempotent."""
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [DEFAULT_PARTITION])
        if cursor.fetchone()[0] is None:
            _create_attached(cursor, DEFAULT_PARTITION, "DEFAULT", [])
            created.append(DEFAULT_PARTITION)
        existing = {p.name for p in partitions()}
        start = month_start(since or dt.datetime.now(dt.UTC))
        while start <= through:
            name = partition_name(start)
            if name not in existing:
                _create_attached(
                    cursor, name, "FOR VALUES FROM (%s) TO (%s)", [start, next_month(start)]
                )
                created.append(name)
            start = next_month(start)
    return created


def ensure_partitions_ahead(now: dt.datetime | None = None) -> list[str]:
    """This month and the next MONTHS_AHEAD (beat, daily); a no-op without partitioning."""
    if not is_partitioned():
        return []
    now = now or dt.datetime.now(dt.UTC)
    through = month_start(now)
    for _ in range(MONTHS_AHEAD):
        through = next_month(through)
    return ensure_partitions(through=through, since=now)


def partitions_ending_before(cutoff: dt.datetime) -> list[Partition]:
    return [p for p in partitions() if p.end <= cutoff]


def has_unpublished(partition: Partition) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {connection.ops.quote_name(partition.name)} "  # noqa: S608
            "WHERE published_at IS NULL)"
        )
        return bool(cursor.fetchone()[0])


def rows_of(
    partition: Partition, fields: Sequence[str], *, batch_size: int = 5000
) -> Iterator[list[dict[str, Any]]]:
    """The partition's rows in id order, a batch at a time (keyset, no long cursor)."""
    from .models import Event

    last = -1
    while True:
        batch = list(
            Event.objects.filter(
                created_at__gte=partition.start, created_at__lt=partition.end, id__gt=last
            )
            .order_by("id")
            .values(*fields)[:batch_size]
        )
        if not batch:
            return
        yield batch
        last = batch[-1]["id"]


def drop(partition: Partition) -> int:
    """Drop a month (a catalogue change, not a row-by-row delete); returns its row count."""
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {quote(partition.name)}")  # noqa: S608
        rows = cursor.fetchone()[0]
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {quote(partition.name)}")
        cursor.execute(f"DROP TABLE {quote(partition.name)}")
    return rows
