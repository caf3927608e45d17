"""`manage.py outbox status|relay|republish|listen`: the outbox backlog for support and
operators, and the long-running relay woken by NOTIFY (`EVENT_RELAY_NUDGE=notify`)."""

from __future__ import annotations

import json
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from petpro_booking.core.metrics_export import serve_metrics
from petpro_booking.core.principal import SYSTEM
from petpro_booking.core.progress import progress
from petpro_booking.events.listener import RelayListener
from petpro_booking.events.relay import outbox_relay
from petpro_booking.events.selectors import (
    outbox_backlog,
    outbox_failed_events,
    outbox_id_bounds,
)
from petpro_booking.events.services import outbox_republish

# Ids re-queued per transaction: a huge range neither holds one long lock nor shows no progress.
REPUBLISH_CHUNK = 5000


class Command(BaseCommand):
    help = "Show the outbox backlog, relay it now, or re-publish a range of events."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        status = actions.add_parser("status", help="unpublished count, oldest age, set-aside")
        status.add_argument(
            "--json", action="store_true", dest="as_json", help="machine-readable output"
        )
        actions.add_parser("relay", help="publish the backlog now (what the beat sweep does)")
        actions.add_parser(
            "listen",
            help="run the relay until SIGTERM, woken by NOTIFY (EVENT_RELAY_NUDGE=notify)",
        )
        republish = actions.add_parser(
            "republish", help="publish events again (same message_id; consumers deduplicate)"
        )
        republish.add_argument("--from-id", type=int, help="first event id (inclusive)")
        republish.add_argument("--to-id", type=int, help="last event id (inclusive)")
        republish.add_argument(
            "--failed-only", action="store_true", help="only events the relay set aside"
        )
        republish.add_argument(
            "--relay", action="store_true", help="relay right away instead of at the next sweep"
        )

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _status(self, *, as_json: bool = False, **options) -> None:
        backlog = outbox_backlog()
        failed = outbox_failed_events(limit=10)
        if as_json:
            self.stdout.write(
                _dumps(
                    {
                        "unpublished": backlog.unpublished,
                        "oldest_age_seconds": round(backlog.oldest_age_seconds, 1),
                        "failed": backlog.failed,
                    }
                )
            )
            return
        self.stdout.write(f"unpublished events: {backlog.unpublished}")
        self.stdout.write(f"oldest unpublished: {backlog.oldest_age_seconds:.1f} s ago")
        self.stdout.write(f"set aside (failed): {backlog.failed}")
        for event in failed:
            self.stdout.write(
                f"  #{event.id} {event.event_type} {event.aggregate_type}:{event.aggregate_id}"
                f" at {event.failed_at:%Y-%m-%d %H:%M:%S}: {event.last_error.splitlines()[0]}"
            )

    def _relay(self, **options) -> None:
        report = outbox_relay()
        self.stdout.write(_dumps(report.as_dict()))
        if report.broker_error:
            raise CommandError(f"broker failed: {report.broker_error}")

    def _listen(self, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("outbox listen needs PostgreSQL (LISTEN/NOTIFY)")
        serve_metrics("RELAY_METRICS_PORT")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        listener = RelayListener(
            sweep_seconds=settings.EVENT_RELAY_LISTEN_SWEEP_SECONDS,
            min_interval=settings.EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS,
        )
        listener.run(stop)
        self.stdout.write(f"outbox listener stopped after {listener.passes} pass(es)")

    def _republish(
        self,
        *,
        from_id: int | None,
        to_id: int | None,
        failed_only: bool,
        relay: bool,
        **options,
    ) -> None:
        if from_id is None and to_id is None:
            raise CommandError("give --from-id and/or --to-id")
        first, last = outbox_id_bounds(from_id=from_id, to_id=to_id)
        chunks = range(first, last + 1, REPUBLISH_CHUNK) if first <= last else range(0)
        count = 0
        for start in progress(chunks, description="re-queueing events", stream=self.stdout):
            count += outbox_republish(
                actor=SYSTEM,
                from_id=start,
                to_id=min(start + REPUBLISH_CHUNK - 1, last),
                failed_only=failed_only,
            )
        self.stdout.write(f"re-queued {count} event(s)")
        if relay:
            self._relay_all(count)

    def _relay_all(self, expected: int) -> None:
        """Relay batch after batch until the backlog is gone (or the broker fails)."""
        published = 0
        batches = _until_empty(outbox_relay)
        for report in progress(
            batches,
            description="publishing",
            total=-(-expected // settings.EVENT_RELAY_BATCH_SIZE) or None,
            stream=self.stdout,
        ):
            published += report.published
            if report.broker_error:
                raise CommandError(f"broker failed: {report.broker_error}")
        self.stdout.write(f"published {published} event(s)")


def _until_empty(relay_once):
    """Relay reports until one claims nothing or publishes nothing (set aside, deferred)."""
    while True:
        report = relay_once()
        if not report.claimed:
            return
        yield report
        if not report.published:
            return


def _dumps(value: dict) -> str:
    return json.dumps(value, sort_keys=True)
