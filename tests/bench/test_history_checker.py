"""The offline history checker (benchmarks/history.py) finds what it claims to find: each
kind of violation, planted in a small hand-made history, is reported, and a clean history
is not."""

from __future__ import annotations

from datetime import UTC, datetime

from benchmarks.history import Event, check
from benchmarks.load import Record

SLOT, OTHER = "slot-1", "slot-2"
CAPACITY = {SLOT: 1, OTHER: 1}
FAR = datetime(2100, 1, 1, tzinfo=UTC).isoformat()


def hold(start, end, rid, slot=SLOT, status=201):
    note = {"slot_id": slot}
    if status == 201:
        note.update(reservation_id=rid, expires_at=FAR)
    elif status == 409:
        note["error"] = "slot_unavailable"
    return Record("hold", start, end, status, note)


def event(id_, type_, aggregate, at, slot=SLOT, version=1, **payload):
    aggregate_type = "booking" if type_.startswith("Booking") else "reservation"
    return Event(
        id_,
        f"e{id_}",
        type_,
        aggregate_type,
        aggregate,
        version,
        {"slot_id": slot, **payload},
        at,
        True,
    )


def clean_history():
    ops = [
        hold(1.0, 1.1, "r1"),
        hold(1.2, 1.3, None, status=409),  # r1 holds the only unit: justified
        Record("release", 2.0, 2.1, 204, {"reservation_id": "r1"}),
        hold(3.0, 3.1, "r2"),
        Record("confirm", 4.0, 4.1, 201, {"reservation_id": "r2", "booking_id": "b2"}),
    ]
    events = [
        event(1, "ReservationCreated", "r1", 1.05),
        event(2, "ReservationReleased", "r1", 2.05),
        event(3, "ReservationCreated", "r2", 3.05),
        event(4, "ReservationConfirmed", "r2", 4.05),
        event(5, "BookingCreated", "b2", 4.05, status="confirmed"),
    ]
    return ops, events


def test_a_clean_history_has_no_violation():
    ops, events = clean_history()
    found = check(ops, events, CAPACITY, {"b2": "confirmed"}, {f"e{i}" for i in range(1, 6)})
    assert found.total == 0, found.items()


def test_overbooking_in_the_events_and_by_acknowledged_holds_is_found():
    ops, events = clean_history()
    ops.append(hold(1.15, 1.18, "r9"))  # a second unit acknowledged while r1 held the only one
    events.append(event(6, "ReservationCreated", "r9", 1.16))
    events.sort(key=lambda e: e.created_at)
    for number, item in enumerate(events, start=1):
        item.id = number
    found = check(ops, events, CAPACITY, {"b2": "confirmed"}, None)
    assert found.capacity_events
    assert found.capacity_acked


def test_an_acknowledged_operation_without_its_event_is_found():
    ops, events = clean_history()
    events = [e for e in events if e.event_type != "ReservationReleased"]
    found = check(ops, events, CAPACITY, {"b2": "confirmed"}, None)
    assert any("release of r1" in v for v in found.acked_missing)


def test_a_missing_booking_a_wrong_status_and_a_lost_message_are_found():
    ops, events = clean_history()
    assert check(ops, events, CAPACITY, {}, None).bookings  # acknowledged, not in the database
    wrong = check(ops, events, CAPACITY, {"b2": "cancelled"}, None)
    assert any("status cancelled" in v for v in wrong.bookings)
    lost = check(ops, events, CAPACITY, {"b2": "confirmed"}, {"e1", "e2", "e3", "e4"})
    assert any("BookingCreated" in v for v in lost.messages)


def test_a_409_while_the_slot_had_room_is_found():
    ops, events = clean_history()
    ops.append(hold(2.5, 2.6, None, status=409))  # r1 released at 2.1, r2 only at 3.0
    found = check(ops, events, CAPACITY, {"b2": "confirmed"}, None)
    assert len(found.unjustified_409) == 1
    assert "[2.500, 2.600]" in found.unjustified_409[0]
