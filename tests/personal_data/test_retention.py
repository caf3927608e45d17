"""Retention: old published events leave a month at a time (archived as gzip JSON Lines per
day, or dropped), unpublished ones never; processed webhooks and the history of long-closed
bookings; uniqueness of aggregate versions across partitions."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.models import BookingHistory, ProcessedWebhook
from bookings.retention import booking_history_pseudonymise_closed, processed_webhooks_purge
from bookings.services import booking_cancel
from petpro_booking.core.crypto import owner_key
from petpro_booking.events import partitions
from petpro_booking.events.models import Event
from petpro_booking.events.retention import (
    PurgeReport,
    _purge_in_batches,
    events_purge_published,
)
from petpro_booking.events.services import event_append

from ..bookings.conftest import OWNER, SUPPORT, book_on, second_slot, staff_of  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

NOW = dt.datetime.now(dt.UTC)


def months_ago(n: int) -> dt.datetime:
    start = partitions.month_start(NOW)
    for _ in range(n):
        start = (start - dt.timedelta(days=1)).replace(day=1)
    return start


def old_events(month: dt.datetime, count: int, *, published: bool) -> list[Event]:
    partitions.ensure_partitions(since=month, through=month)
    aggregate = f"slot-{uuid.uuid4()}"
    return Event.objects.bulk_create(
        Event(
            aggregate_type="slot",
            aggregate_id=aggregate,
            aggregate_version=n + 1,
            event_type="SlotUpdated",
            payload={"slot_id": aggregate, "n": n},
            metadata={},
            created_at=month + dt.timedelta(days=n % 3, hours=n),
            published_at=month + dt.timedelta(days=n % 3, hours=n, seconds=1)
            if published
            else None,
        )
        for n in range(count)
    )


def table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        return cursor.fetchone()[0] is not None


def test_a_month_past_retention_is_archived_per_day_and_dropped(settings, tmp_path):
    settings.RETENTION_EVENTS_DAYS = 400
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    expired = old_events(months_ago(15), 6, published=True)
    stuck = old_events(months_ago(16), 2, published=False)  # never published: kept
    recent = old_events(months_ago(2), 3, published=True)
    old_name = partitions.partition_name(months_ago(15))

    report = events_purge_published()

    assert report.partitions_dropped >= 1
    assert report.partitions_kept == 1
    assert report.deleted == report.archived == 6
    assert not table_exists(old_name)  # the month went as a table, not row by row
    assert table_exists(partitions.partition_name(months_ago(16)))
    remaining = set(Event.objects.values_list("event_id", flat=True))
    assert {e.event_id for e in stuck + recent} <= remaining
    assert not {e.event_id for e in expired} & remaining
    files = sorted(tmp_path.glob("events-*.jsonl.gz"))
    assert len(files) == 3  # the six events fell on three days
    archived = []
    for path in files:
        with gzip.open(path, "rt") as archive:
            archived += [json.loads(line) for line in archive]
    assert sorted(row["event_id"] for row in archived) == sorted(str(e.event_id) for e in expired)
    assert {row["event_type"] for row in archived} == {"SlotUpdated"}


def test_a_month_archived_by_a_run_that_stopped_is_not_archived_twice(
    settings, tmp_path, monkeypatch
):
    """A run that archived a month and stopped before dropping it (the time limit, a crash)
    left the rows in the day files, and the next run appended them again: every event twice."""
    settings.RETENTION_EVENTS_DAYS = 400
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    expired = old_events(months_ago(15), 6, published=True)
    drop = partitions.drop

    def crash_before_the_drop(partition):
        monkeypatch.setattr(partitions, "drop", drop)
        raise RuntimeError("stopped after the archive, before the drop")

    monkeypatch.setattr(partitions, "drop", crash_before_the_drop)
    with pytest.raises(RuntimeError, match="before the drop"):
        events_purge_published()
    report = events_purge_published()

    assert report.archived == report.deleted == 6
    archived = []
    for path in sorted(tmp_path.glob("events-*")):
        assert path.name.endswith(".jsonl.gz"), path.name  # no .partial file left
        with gzip.open(path, "rt") as archive:
            archived += [json.loads(line)["event_id"] for line in archive]
    assert sorted(archived) == sorted(str(e.event_id) for e in expired)


def test_without_an_archive_path_old_months_are_only_dropped(settings, tmp_path):
    settings.RETENTION_EVENTS_ARCHIVE_DIR = ""
    old_events(months_ago(15), 4, published=True)
    report = events_purge_published()
    assert (report.deleted, report.archived) == (4, 0)
    assert not list(tmp_path.iterdir())


def test_the_row_by_row_path_of_sqlite_archives_and_deletes_in_batches(settings, tmp_path):
    expired = old_events(months_ago(14), 5, published=True)
    old_events(months_ago(14), 2, published=False)
    report = PurgeReport()
    _purge_in_batches(timezone.now() - dt.timedelta(days=30), str(tmp_path), 2, report)
    assert (report.deleted, report.archived) == (5, 5)
    assert not Event.objects.filter(id__in=[e.id for e in expired]).exists()
    assert Event.objects.filter(published_at__isnull=True).count() == 2


def test_an_aggregate_version_is_unique_across_months():
    old_events(months_ago(3), 1, published=True)
    aggregate = Event.objects.get().aggregate_id
    with (
        pytest.raises(IntegrityError, match="events_aggregate_version_uniq"),
        transaction.atomic(),
    ):
        event_append(
            aggregate_type="slot",
            aggregate_id=aggregate,
            event_type="SlotUpdated",
            data={"slot_id": aggregate},
            aggregate_version=1,
        )
    with transaction.atomic():
        event_append(
            aggregate_type="slot", aggregate_id=aggregate, event_type="SlotUpdated", data={}
        )
    assert sorted(Event.objects.values_list("aggregate_version", flat=True)) == [1, 2]


def test_the_version_guard_takes_firsts_moves_up_and_refuses_the_rest():
    """The aggregate-version guard (events/partitions.py): a later version moves the head up
    (gaps allowed), an aggregate first seen past version 1 gets its head then, and anything
    not above the last version is refused by the constraint's name."""

    def append(aggregate: str, version: int) -> None:
        with transaction.atomic():
            event_append(
                aggregate_type="slot",
                aggregate_id=aggregate,
                event_type="SlotUpdated",
                data={},
                aggregate_version=version,
            )

    append("agg-a", 1)
    append("agg-a", 3)  # a gap is allowed
    append("agg-b", 5)  # first seen past version 1
    append("agg-b", 6)
    for aggregate, version in (("agg-a", 1), ("agg-a", 3), ("agg-a", 2), ("agg-b", 5)):
        with pytest.raises(IntegrityError, match="events_aggregate_version_uniq"):
            append(aggregate, version)
    stored = sorted(Event.objects.values_list("aggregate_id", "aggregate_version"))
    assert stored == [("agg-a", 1), ("agg-a", 3), ("agg-b", 5), ("agg-b", 6)]


def test_the_months_ahead_have_their_partitions():
    names = {p.name for p in partitions.partitions()}
    month = partitions.month_start(NOW)
    for _ in range(partitions.MONTHS_AHEAD + 1):
        assert partitions.partition_name(month) in names
        month = partitions.next_month(month)
    assert partitions.ensure_partitions_ahead() == []  # idempotent


def test_a_purge_that_fails_still_leaves_the_months_ahead_their_partitions(settings, tmp_path):
    """The daily job made the next months' partitions only after a successful purge: an
    archive directory it cannot write failed it every day, and three months later events
    landed in the default partition."""
    from petpro_booking.events.tasks import retention_events

    last = partitions.month_start(NOW)
    for _ in range(partitions.MONTHS_AHEAD):
        last = partitions.next_month(last)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partitions.partition_name(last)}")
    old_events(months_ago(15), 2, published=True)
    unwritable = tmp_path / "archive"
    unwritable.write_text("a file where the directory should be")
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(unwritable)

    with pytest.raises(FileExistsError):  # mkdir of the archive directory
        retention_events.apply(throw=True)

    assert table_exists(partitions.partition_name(last))
    assert table_exists(partitions.partition_name(months_ago(15)))  # not dropped unarchived


def test_processed_webhooks_older_than_30_days_go():
    ProcessedWebhook.objects.create(event_id="evt-old")
    ProcessedWebhook.objects.create(event_id="evt-new")
    ProcessedWebhook.objects.filter(event_id="evt-old").update(
        received_at=timezone.now() - dt.timedelta(days=31)
    )
    assert processed_webhooks_purge() == 1
    assert list(ProcessedWebhook.objects.values_list("event_id", flat=True)) == ["evt-new"]


def test_history_of_long_closed_bookings_is_pseudonymised(owner_pet, slot, second_slot):  # noqa: F811
    old = book_on(slot)
    booking_cancel(actor=OWNER, booking_id=old.id, reason="Rex is scared of vets")
    recent = book_on(second_slot)
    booking_cancel(actor=OWNER, booking_id=recent.id, reason="Rex is ill")
    old.__class__.objects.filter(id=old.id).update(
        updated_at=timezone.now() - dt.timedelta(days=4 * 365)
    )

    assert booking_history_pseudonymise_closed() == 2  # created + cancelled, both by the owner
    assert booking_history_pseudonymise_closed() == 0  # nothing left to do

    rows = list(BookingHistory.objects.filter(booking=old).order_by("id"))
    assert [r.to_status for r in rows] == ["confirmed", "cancelled"]
    assert {r.reason for r in rows} == {""}
    assert {r.actor_id for r in rows} == {owner_key("actor:owner-1")}
    kept = BookingHistory.objects.filter(booking=recent).order_by("id").last()
    assert (kept.reason, kept.actor_id) == ("Rex is ill", "owner-1")


def test_pseudonymising_writes_one_update_per_person_in_a_batch(owner_pet, slot, second_slot):  # noqa: F811
    """Three history rows of the owner and one of support: two UPDATEs, each person's rows
    under that person's pseudonym."""
    bookings = [book_on(s) for s in (slot, second_slot)]
    booking_cancel(actor=OWNER, booking_id=bookings[0].id, reason="moving away")
    booking_cancel(actor=SUPPORT, booking_id=bookings[1].id, reason="the owner called")
    bookings[0].__class__.objects.filter(id__in=[b.id for b in bookings]).update(
        updated_at=timezone.now() - dt.timedelta(days=4 * 365)
    )
    with CaptureQueriesContext(connection) as queries:
        assert booking_history_pseudonymise_closed() == 4
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "booking_history"')]
    assert len(updates) == 2
    rows = BookingHistory.objects.filter(booking__in=bookings)
    assert sorted(rows.values_list("actor_type", "actor_id")) == sorted(
        [("user", owner_key("actor:owner-1"))] * 3 + [("support", owner_key("actor:support-1"))]
    )
    assert {row.reason for row in rows} == {""}


def test_pseudonymising_empties_staff_internal_notes_too(owner_pet, slot, second_slot):  # noqa: F811
    """The note staff keep apart from the owner's reason is free text about the owner: it goes
    with the reason, also on a row an earlier run had pseudonymised but left the note on."""
    first, second = book_on(slot), book_on(second_slot)
    staff = staff_of(slot.clinic_id)
    for booking in (first, second):
        booking_cancel(
            actor=staff,
            booking_id=booking.id,
            reason="clinic closed",
            internal_note="owner shouted at reception, Mrs Example",
        )
    first.__class__.objects.filter(id__in=[first.id, second.id]).update(
        updated_at=timezone.now() - dt.timedelta(days=4 * 365)
    )
    # As an earlier run left it: reason emptied, actor hashed, the note still there.
    BookingHistory.objects.filter(booking=second, actor_type="staff").update(
        reason="", actor_id=owner_key("actor:staff-1")
    )

    assert booking_history_pseudonymise_closed() == 4  # 2 owners' confirmations, 2 cancels
    assert booking_history_pseudonymise_closed() == 0
    rows = BookingHistory.objects.filter(booking__in=[first, second])
    assert {(row.reason, row.internal_note) for row in rows} == {("", "")}
