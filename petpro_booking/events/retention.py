"""Retention of the event store: published events older than RETENTION_EVENTS_DAYS are
archived (one gzip JSON Lines file per day) or dropped. On PostgreSQL `events` is partitioned
by month and a whole month is detached and dropped at once; elsewhere (SQLite, the embedded
mode) rows go in batches claimed with SKIP LOCKED where the database has it.

Every writer of the day files holds `archive_lock`: this job while it writes, and the
erasure's pass that rewrites the files naming an erased person (bookings/personal_data.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gzip
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import partitions
from .models import Event

logger = logging.getLogger(__name__)

ARCHIVE_FIELDS = (
    "id",
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "event_type",
    "payload",
    "metadata",
    "created_at",
    "published_at",
)


@dataclass
class PurgeReport:
    archived: int = 0
    deleted: int = 0
    partitions_dropped: int = 0
    partitions_kept: int = 0  # old months that still hold unpublished (failed) events

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value) if not isinstance(value, int | str | dict | list | None) else value


def archive_rows(rows: Iterable[dict[str, Any]], directory: str, *, suffix: str = "") -> int:
    """Append rows to `<directory>/events-YYYY-MM-DD.jsonl.gz<suffix>`, one file per day of
    `created_at` (gzip members appended: a file written by several runs still reads as one)."""
    by_day: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        day = row["created_at"].astimezone(dt.UTC).date().isoformat()
        by_day[day].append(
            json.dumps({k: _jsonable(row[k]) for k in ARCHIVE_FIELDS}, ensure_ascii=False)
        )
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for day, lines in by_day.items():
        path = target / f"events-{day}.jsonl.gz{suffix}"
        with gzip.open(path, "at", encoding="utf-8") as archive:
            archive.write("\n".join(lines) + "\n")
    return sum(len(lines) for lines in by_day.values())


PARTIAL = ".partial"
REWRITE = ".rewrite"
LOCK_FILE = ".archive.lock"
DAY_FILES = "events-*.jsonl.gz"


@contextmanager
def archive_lock(directory: str) -> Iterator[Path]:
    """Exclusive use of the archive directory (an advisory `flock` on a file in it, so every
    process on the volume's host sees it): an append or a month written while a file is being
    rewritten would be lost with the old file. Yields the directory, created if missing."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    with open(target / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield target
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def archive_day_files(directory: Path) -> list[Path]:
    """The finished day files, oldest first (not a month's `.partial` files being written)."""
    return sorted(directory.glob(DAY_FILES))


def archive_read(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a day file; ValueError at a line that is not one (OSError, EOFError or
    zlib.error where the gzip stream is cut or damaged)."""
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        for line in archive:
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"{path.name}: a line that is not an event")
                yield row


def archive_write_beside(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write `rows` as the new content of a day file, beside it (`<file>.rewrite`, flushed to
    disk); `archive_commit` puts it in place. Under `archive_lock`."""
    temporary = path.with_name(path.name + REWRITE)
    with open(temporary, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb") as archive:
            for row in rows:
                archive.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        raw.flush()
        os.fsync(raw.fileno())
    return temporary


def archive_commit(written: list[Path], directory: Path) -> None:
    """Rename files made by `archive_write_beside` over their day files, then flush the
    directory, so the renames survive a power cut before anyone is told they are done."""
    for temporary in written:
        temporary.replace(temporary.with_name(temporary.name.removesuffix(REWRITE)))
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _archive_partition(partition: partitions.Partition, directory: str) -> int:
    """One month's rows into its day files, whole: written as `.partial` files and renamed at
    the end. A run that stops half-way (the time limit, a full disk, a crash before the drop)
    leaves no half month in the archive, and the next run writes the month again from the
    start instead of appending a second copy of what the first wrote. Under `archive_lock`."""
    target = Path(directory)
    pattern = f"events-{partition.start:%Y-%m}-*.jsonl.gz"
    for leftover in target.glob(pattern + PARTIAL):
        leftover.unlink()
    count = 0
    for batch in partitions.rows_of(partition, ARCHIVE_FIELDS):
        count += archive_rows(batch, directory, suffix=PARTIAL)
    for partial in target.glob(pattern + PARTIAL):
        partial.replace(partial.with_suffix(""))  # a day file of an earlier run: the same rows
    return count


def _purge_partitions(cutoff: dt.datetime, archive_dir: str, report: PurgeReport) -> None:
    for partition in partitions.partitions_ending_before(cutoff):
        if partitions.has_unpublished(partition):
            report.partitions_kept += 1
            logger.warning("retention: %s still has unpublished events; kept", partition.name)
            continue
        if archive_dir:
            with archive_lock(archive_dir):
                report.archived += _archive_partition(partition, archive_dir)
        report.deleted += partitions.drop(partition)
        report.partitions_dropped += 1


def _purge_in_batches(
    cutoff: dt.datetime, archive_dir: str, batch_size: int, report: PurgeReport
) -> None:
    skip_locked = connection.features.has_select_for_update_skip_locked
    # The archive's lock before any row lock: waiting for it inside the transaction would keep
    # claimed events locked for as long as an erasure's rewrite of the files takes.
    with archive_lock(archive_dir) if archive_dir else contextlib.nullcontext():
        while True:
            with transaction.atomic():
                old = Event.objects.filter(published_at__isnull=False, created_at__lt=cutoff)
                if skip_locked:
                    old = old.select_for_update(skip_locked=True)
                rows = list(old.order_by("id").values(*ARCHIVE_FIELDS)[:batch_size])
                if not rows:
                    return
                if archive_dir:
                    report.archived += archive_rows(rows, archive_dir)
                Event.objects.filter(id__in=[row["id"] for row in rows]).delete()
                report.deleted += len(rows)


def events_purge_published(*, now: dt.datetime | None = None) -> PurgeReport:
    """Archive (when RETENTION_EVENTS_ARCHIVE_DIR is set) and remove published events older
    than RETENTION_EVENTS_DAYS. Partitioned: whole months ending before the cutoff, so an event
    lives up to a month longer than the limit. Unpublished events are never removed."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.RETENTION_EVENTS_DAYS)
    archive_dir = settings.RETENTION_EVENTS_ARCHIVE_DIR
    report = PurgeReport()
    if partitions.is_partitioned():
        _purge_partitions(cutoff, archive_dir, report)
    else:
        _purge_in_batches(cutoff, archive_dir, settings.RETENTION_BATCH_SIZE, report)
    if report.deleted:
        logger.info("retention: events %s", report.as_dict())
    return report
