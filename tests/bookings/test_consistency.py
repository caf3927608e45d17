"""manage.py check_consistency: each invariant broken by hand (raw SQL) is reported; --repair
corrects slot counters only, through the slot locks, with an event and a log line."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from prometheus_client import REGISTRY

from bookings.models import Booking
from bookings.tasks import consistency_check as consistency_task
from petpro_booking.events.models import Event
from slots.models import Slot

from ..factories import SlotFactory
from .conftest import OTHER_OWNER, book_on, hold_on
from .payment_fixtures import book_paid

pytestmark = pytest.mark.django_db(transaction=True)

CHECK_NAMES = {
    "slot_counters",
    "slot_capacity",
    "reservation_bookings",
    "booking_history",
    "booking_events",
    "payments",
    "pet_groups",
    "outbox_age",
    "hold_expiry",
    "waitlist",
}


def run(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("check_consistency", *args, stdout=out)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


def sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def broken(report: dict) -> set[str]:
    return {name for name, check in report["checks"].items() if not check["ok"]}


@pytest.fixture
def drop_constraint():
    """Let raw SQL break what the database would refuse; the constraint comes back after the
    test (its table emptied first: the test's rows break it)."""
    dropped: list[tuple[str, str, str]] = []

    def drop(table: str, definition_like: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND pg_get_constraintdef(oid) LIKE %s",
                [table, definition_like],
            )
            for name, definition in cursor.fetchall():
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                dropped.append((table, name, definition))

    yield drop
    with connection.cursor() as cursor:
        for table, name, definition in dropped:
            cursor.execute(f"TRUNCATE {table} CASCADE")
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


@pytest.fixture
def busy_day(owner_pet, other_pet, slot):
    """A booking, a live hold and a paid booking: every table has rows that hold."""
    booking = book_on(slot)
    second = SlotFactory(clinic=slot.clinic, service=slot.service, capacity=2)
    hold = hold_on(second, owner=OTHER_OWNER, pet_id="pet-2")
    return {"booking": booking, "slot": slot, "hold": hold, "second": second}


def test_a_consistent_database_reports_every_check_ok(busy_day):
    code, report = run()

    assert code == 0
    assert report["ok"] is True
    assert set(report["checks"]) == CHECK_NAMES
    assert report["violations"] == 0


def test_a_wrong_counter_is_reported_and_repaired_through_the_lock(busy_day, caplog):
    slot = busy_day["second"]
    sql("UPDATE slots SET held_count = 0 WHERE id = %s", [slot.id])  # one live hold exists

    code, report = run()
    assert code == 1
    assert broken(report) == {"slot_counters"}
    assert report["checks"]["slot_counters"]["samples"][0]["slot_id"] == str(slot.id)

    with caplog.at_level(logging.WARNING, logger="bookings.consistency"):
        code, report = run("--repair")

    assert code == 0, report
    assert report["repaired"] == [
        {
            "slot_id": str(slot.id),
            "before": {"booked_count": 0, "held_count": 0},
            "after": {"booked_count": 0, "held_count": 1},
            "capacity": 2,
            "repaired": True,
        }
    ]
    slot.refresh_from_db()
    assert (slot.booked_count, slot.held_count) == (0, 1)
    event = Event.objects.filter(aggregate_id=str(slot.id)).order_by("-aggregate_version").first()
    assert event.event_type == "SlotUpdated"
    assert event.payload["reason"] == "consistency_repair"
    assert event.payload["previous"] == {"booked_count": 0, "held_count": 0}
    assert any("repaired" in record.getMessage() for record in caplog.records)


def test_repair_refuses_an_overbooking_and_everything_else(busy_day, drop_constraint):
    drop_constraint("slots", "%capacity%")
    booking = busy_day["booking"]
    # Two bookings on a slot of capacity 1 (a second booked row), counter saying 1.
    other = book_on(busy_day["second"], owner=OTHER_OWNER, pet_id="pet-2")
    sql("UPDATE bookings SET slot_id = %s WHERE id = %s", [booking.slot_id, other.id])
    sql("UPDATE bookings SET status = 'completed' WHERE id = %s", [booking.id])  # no history

    code, report = run("--repair")

    assert code == 1
    assert {"slot_capacity", "slot_counters", "booking_history"} <= broken(report)
    assert report["repaired"] == [
        # The slot the other booking left: its counter is corrected (1 held, 0 booked).
        {
            "slot_id": str(busy_day["second"].id),
            "before": {"booked_count": 1, "held_count": 1},
            "after": {"booked_count": 0, "held_count": 1},
            "capacity": 2,
            "repaired": True,
        }
    ]
    assert [(r["slot_id"], r["why"]) for r in report["refused"]] == [
        (str(booking.slot_id), "rows exceed capacity")
    ]
    assert Slot.objects.get(id=booking.slot_id).booked_count == 1  # left alone
    assert Booking.objects.get(id=booking.id).status == "completed"  # not "fixed"


def test_counters_above_capacity_are_reported(busy_day, drop_constraint):
    drop_constraint("slots", "%capacity%")
    sql("UPDATE slots SET booked_count = capacity + 1 WHERE id = %s", [busy_day["slot"].id])

    code, report = run()

    assert code == 1
    assert broken(report) == {"slot_capacity", "slot_counters"}
    sample = report["checks"]["slot_capacity"]["samples"][0]
    assert sample["booked_count"] == 2
    assert sample["capacity"] == 1


def test_a_reservation_with_two_bookings_is_reported(busy_day, drop_constraint):
    drop_constraint("bookings", "UNIQUE (reservation_id)")
    booking = busy_day["booking"]
    sql(
        "INSERT INTO bookings (id, reference, slot_id, reservation_id, clinic_id, service_id, "
        "user_id, pet_id, status, amount, currency, version, created_at, updated_at) "
        "SELECT gen_random_uuid(), 'PP-ZZZZZZ', slot_id, reservation_id, clinic_id, "
        "service_id, user_id, pet_id, 'cancelled', amount, currency, 1, now(), now() "
        "FROM bookings WHERE id = %s",
        [booking.id],
    )

    code, report = run()

    assert code == 1
    assert "reservation_bookings" in broken(report)
    assert report["checks"]["reservation_bookings"]["samples"] == [
        {"reservation_id": str(booking.reservation_id), "bookings": 2}
    ]


def test_a_status_that_is_not_the_last_history_entry_is_reported(busy_day):
    booking = busy_day["booking"]
    sql("UPDATE bookings SET status = 'no_show' WHERE id = %s", [booking.id])

    code, report = run()

    assert code == 1
    assert broken(report) == {"booking_history"}
    assert report["checks"]["booking_history"]["samples"] == [
        {
            "booking_id": str(booking.id),
            "reference": booking.reference,
            "status": "no_show",
            "last_history_status": "confirmed",
        }
    ]


def test_a_gap_in_a_bookings_events_is_reported(busy_day):
    booking = busy_day["booking"]
    sql(
        "DELETE FROM events WHERE aggregate_id = %s AND aggregate_version = 1",
        [str(booking.id)],
    )

    code, report = run()

    assert code == 1
    assert broken(report) == {"booking_events"}
    sample = report["checks"]["booking_events"]["samples"][0]
    assert (sample["events"], sample["first_version"], sample["last_version"]) == (1, 2, 2)


def test_a_booking_older_than_the_event_retention_is_not_a_gap(busy_day, settings):
    """Retention removes published events past RETENTION_EVENTS_DAYS; the bookings stay. A
    booking that old, whose first events are gone, reported a gap forever."""
    booking = busy_day["booking"]
    sql(
        "DELETE FROM events WHERE aggregate_id = %s AND aggregate_version = 1",
        [str(booking.id)],
    )
    sql(
        "UPDATE bookings SET created_at = now() - make_interval(days => %s) WHERE id = %s",
        [settings.RETENTION_EVENTS_DAYS + 1, booking.id],
    )

    code, report = run()

    assert code == 0, broken(report)


def test_payments_without_their_counterpart_are_reported(owner_pet, paid_slot):
    unpaid = book_paid(paid_slot)
    assert unpaid.status == "pending_payment"
    # Confirmed without any succeeded payment (history made to agree: only payments break).
    sql("UPDATE bookings SET status = 'confirmed' WHERE id = %s", [unpaid.id])
    sql(
        "INSERT INTO booking_history (booking_id, from_status, to_status, actor_type, "
        "actor_id, reason, at) VALUES (%s, 'pending_payment', 'confirmed', 'system', 'x', "
        "'', now())",
        [unpaid.id],
    )
    code, report = run()
    assert code == 1
    assert broken(report) == {"payments"}
    assert [s["problem"] for s in report["checks"]["payments"]["samples"]] == [
        "confirmed_without_payment"
    ]

    # A succeeded payment of a booking that is cancelled, with no refund asked for.
    sql("UPDATE bookings SET status = 'cancelled' WHERE id = %s", [unpaid.id])
    sql(
        "INSERT INTO booking_history (booking_id, from_status, to_status, actor_type, "
        "actor_id, reason, at) VALUES (%s, 'confirmed', 'cancelled', 'system', 'x', '', now())",
        [unpaid.id],
    )
    sql(
        "INSERT INTO payment_records (id, booking_id, payment_id, idempotency_key, amount, "
        "currency, status, checkout_url, last_payload, version, created_at, updated_at) "
        "VALUES (gen_random_uuid(), %s, 'pay-1', 'idem-1', 45, 'EUR', 'succeeded', '', "
        "'{}', 1, now(), now())",
        [unpaid.id],
    )
    code, report = run()
    assert [s["problem"] for s in report["checks"]["payments"]["samples"]] == [
        "payment_without_booking_or_refund"
    ]
    # Asking for the refund is what makes it right.
    sql("UPDATE payment_records SET refund_requested_at = now() WHERE booking_id = %s", [unpaid.id])
    code, report = run()
    assert "payments" not in broken(report)


def test_an_old_unpublished_event_is_reported(busy_day):
    age = settings.CONSISTENCY_OUTBOX_MAX_AGE_SECONDS + 60
    sql(
        "UPDATE events SET created_at = now() - make_interval(secs => %s) "
        "WHERE id = (SELECT min(id) FROM events)",
        [age],
    )

    code, report = run()

    assert code == 1
    assert broken(report) == {"outbox_age"}
    assert report["checks"]["outbox_age"]["samples"][0]["oldest_age_seconds"] >= age


def test_a_hold_overdue_for_expiry_is_reported(busy_day):
    hold = busy_day["hold"]
    sql(
        "UPDATE reservations SET expires_at = now() - make_interval(secs => %s) WHERE id = %s",
        [settings.CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS + 5, hold.id],
    )

    code, report = run()

    assert code == 1
    assert broken(report) == {"hold_expiry"}
    assert report["checks"]["hold_expiry"]["samples"][0]["reservation_id"] == str(hold.id)


def test_the_beat_job_publishes_one_gauge_per_check(busy_day):
    sql("UPDATE bookings SET status = 'no_show' WHERE id = %s", [busy_day["booking"].id])

    result = consistency_task.delay().get()

    assert result["booking_history"] == 1
    for name in CHECK_NAMES:
        expected = 1.0 if name == "booking_history" else 0.0
        assert REGISTRY.get_sample_value("petpro_consistency_violations", {"check": name}) == (
            expected
        )
    assert REGISTRY.get_sample_value("petpro_consistency_last_run_timestamp_seconds") > 0
    schedule = settings.CELERY_BEAT_SCHEDULE["check-consistency"]
    assert (schedule["task"], schedule["schedule"]) == ("bookings.consistency_check", 300.0)


def _waiting_entry(slot, *, owner: str, pet: str, status: str = "waiting", hold=None) -> str:
    entry_id = str(uuid.uuid4())
    sql(
        "INSERT INTO waitlist_entries (id, slot_id, user_id, pet_id, pet_name, status,"
        " joined_at, reservation_id, version, end_reason) VALUES"
        " (%s, %s, %s, %s, '', %s, now(), %s, 1, '')",
        [entry_id, slot.id, owner, pet, status, hold.id if hold else None],
    )
    return entry_id


def test_waiting_list_entries_left_unsettled_are_reported(busy_day):
    grace = settings.CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS
    hold, second = busy_day["hold"], busy_day["second"]
    live_offer = _waiting_entry(
        second, owner=OTHER_OWNER.sub, pet="pet-2", status="offered", hold=hold
    )
    code, report = run()
    assert (code, broken(report)) == (0, set())  # an offer that is a live hold: fine

    # Its hold confirmed (or released) just now: the sweep has the grace to settle the entry.
    sql("UPDATE reservations SET status = 'released' WHERE id = %s", [hold.id])
    sql("UPDATE slots SET held_count = held_count - 1 WHERE id = %s", [second.id])
    assert run()[0] == 0
    sql(
        "UPDATE reservations SET updated_at = now() - make_interval(secs => %s) WHERE id = %s",
        [grace + 5, hold.id],
    )
    started = busy_day["slot"]
    sql(
        "UPDATE slots SET start_at = now() - make_interval(secs => %s),"
        " end_at = now() WHERE id = %s",
        [grace + 5, started.id],
    )
    stale_wait = _waiting_entry(started, owner="owner-9", pet="pet-9")

    code, report = run()

    assert code == 1
    assert broken(report) == {"waitlist"}
    samples = report["checks"]["waitlist"]["samples"]
    assert {(row["kind"], row["entry_id"]) for row in samples} == {
        ("offer_not_a_live_hold", live_offer),
        ("waiting_on_started_slot", stale_wait),
    }


def test_the_command_shows_its_progress_on_stderr_and_keeps_stdout_json():
    from bookings.consistency import CHECKS

    out, err = io.StringIO(), io.StringIO()
    call_command("check_consistency", stdout=out, stderr=err)
    assert json.loads(out.getvalue())["ok"] is True
    total = len(CHECKS)
    assert err.getvalue().splitlines()[-1] == f"consistency checks: {total}/{total} (100%)"
