"""`manage.py bench_event_purge [--rows 1000000]`: time the two ways of purging a month of
published events on PostgreSQL: dropping its partition vs deleting in SKIP LOCKED batches.

Run it against a scratch database (`DATABASE_URL=.../bench manage.py migrate` first): it fills
a month of January 2001 (its own partition, not near any real data) twice with `--rows` rows,
measures, and leaves the table as it found it. The numbers go to docs/security.md."""

from __future__ import annotations

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from petpro_booking.events import partitions
from petpro_booking.events.retention import PurgeReport, _purge_in_batches

MONTH = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)

FILL = """
INSERT INTO events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
                    payload, metadata, created_at, published_at, publish_attempts, last_error)
SELECT gen_random_uuid(), 'booking', 'bench-' || (n / 8), n %% 8 + 1, 'BookingConfirmed',
       jsonb_build_object('booking_id', 'bench-' || (n / 8), 'amount', '45.00'),
       '{"actor": {"type": "system", "id": "bench"}}'::jsonb,
       %s::timestamptz + (n * interval '2 seconds'), %s::timestamptz + (n * interval '2 seconds'),
       1, ''
FROM generate_series(0, %s - 1) AS n
"""


class Command(BaseCommand):
    help = "Time dropping a month partition vs batch-deleting the same rows (PostgreSQL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--batch-size", type=int, default=10_000)

    def _fill(self, rows: int) -> float:
        partitions.ensure_partitions(since=MONTH, through=MONTH)
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            # Bench rows only: the version guard is for the application's appends.
            cursor.execute("ALTER TABLE events DISABLE TRIGGER events_version_guard")
            cursor.execute(FILL, [MONTH, MONTH, rows])
            cursor.execute("ALTER TABLE events ENABLE TRIGGER events_version_guard")
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {partitions.partition_name(MONTH)}")
        return time.perf_counter() - started

    def handle(self, *args, **options) -> None:
        if not partitions.is_partitioned():
            raise CommandError("needs PostgreSQL with the partitioned events table")
        rows = options["rows"]
        cutoff = partitions.next_month(MONTH)
        fill = self._fill(rows)
        (month,) = [p for p in partitions.partitions_ending_before(cutoff) if p.start == MONTH]
        started = time.perf_counter()
        dropped = partitions.drop(month)
        drop_seconds = time.perf_counter() - started

        self._fill(rows)
        report = PurgeReport()
        started = time.perf_counter()
        _purge_in_batches(cutoff, "", options["batch_size"], report)
        delete_seconds = time.perf_counter() - started
        partitions.drop(month)  # the empty partition goes too
        self.stdout.write(
            f"rows per run: {rows} (fill {fill:.1f} s)\n"
            f"drop partition: {dropped} rows in {drop_seconds * 1000:.0f} ms\n"
            f"batch delete ({options['batch_size']} per batch, SKIP LOCKED): "
            f"{report.deleted} rows in {delete_seconds:.1f} s "
            f"({report.deleted / delete_seconds:,.0f} rows/s)\n"
        )
