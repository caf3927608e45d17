"""The events table is tuned for its churn: its own autovacuum settings, and a claim index
that holds only what is still to publish and that the relay's claim query uses."""

from __future__ import annotations

import pytest
from django.db import connection

from petpro_booking.events.models import Event
from petpro_booking.events.relay import CLAIM_FIELDS

from .conftest import slot_events

pytestmark = pytest.mark.django_db


def test_the_events_table_has_its_own_autovacuum_settings():
    # Partitioned by month (events migration 0004): the settings live on every partition,
    # the parent holds no storage and cannot carry them.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reloptions FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
        )
        partitions = cursor.fetchall()
    assert len(partitions) >= 3  # the default partition, this month, the months ahead
    for _name, options in partitions:
        settings = dict(option.split("=", 1) for option in options)
        assert settings["autovacuum_vacuum_scale_factor"] == "0"
        assert int(settings["autovacuum_vacuum_threshold"]) <= 5000
        assert settings["autovacuum_analyze_scale_factor"] == "0"


def _claim_plan() -> str:
    claim = (
        Event.objects.select_for_update(skip_locked=True)
        .filter(published_at__isnull=True, failed_at__isnull=True)
        .order_by("id")
        .only(*CLAIM_FIELDS)[:500]
    )
    sql, params = claim.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_claim_index_holds_only_what_is_still_to_publish_and_the_claim_uses_it():
    slot_events("slot-outbox", 30)
    Event.objects.filter(id__in=Event.objects.order_by("id").values("id")[:20]).update(
        published_at="2030-01-01T00:00:00Z"
    )
    Event.objects.filter(
        id__in=Event.objects.filter(published_at__isnull=True).values("id")[:3]
    ).update(failed_at="2030-01-01T00:00:00Z")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'events_outbox_pending_idx'"
        )
        (definition,) = cursor.fetchone()
        assert "published_at IS NULL" in definition
        assert "failed_at IS NULL" in definition
        cursor.execute("ANALYZE events")
        # Entries an index scan can return: the 7 still to publish (not 30, not 10).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(
            "SELECT count(*) FROM events WHERE published_at IS NULL AND failed_at IS NULL"
        )
        assert cursor.fetchone()[0] == 7
    assert "events_outbox_pending_idx" in _claim_plan()
