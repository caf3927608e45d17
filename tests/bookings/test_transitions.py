"""The status machine: the transition table, fencing of stale callers, the system-only
re-book, and unique human references."""

from __future__ import annotations

import re

import pytest
from django.db import transaction

from bookings.errors import InvalidTransition
from bookings.models import Booking, BookingHistory, BookingStatus
from bookings.services import (
    TRANSITIONS,
    booking_cancel,
    booking_reference_new,
    booking_reschedule,
    booking_transition,
    lifecycle,
    transition_allowed,
)
from petpro_booking.core.errors import VersionConflict
from petpro_booking.core.principal import SYSTEM
from petpro_booking.events.models import Event

from .conftest import OWNER, SUPPORT, book_on

pytestmark = pytest.mark.django_db(transaction=True)

STATUSES = list(BookingStatus.values)


@pytest.mark.parametrize("from_status", STATUSES)
@pytest.mark.parametrize("to_status", STATUSES)
def test_people_move_only_along_the_table(from_status, to_status):
    expected = to_status in TRANSITIONS[from_status] and not (
        from_status == "cancelled" and to_status == "confirmed"
    )
    assert transition_allowed(from_status=from_status, to_status=to_status, actor=SUPPORT) is (
        expected
    )


def test_only_the_system_rebooks_a_cancelled_booking(booking):
    booking_cancel(actor=SUPPORT, booking_id=booking.id, reason="payment deadline")
    cancelled = Booking.objects.select_related("slot__clinic", "slot__service", "reservation").get(
        id=booking.id
    )
    with pytest.raises(InvalidTransition), transaction.atomic():
        booking_transition(
            booking=cancelled, to_status="confirmed", actor=OWNER, event_type="BookingConfirmed"
        )
    with transaction.atomic():
        booking_transition(
            booking=cancelled,
            to_status="confirmed",
            actor=SYSTEM,
            reason="late payment",
            event_type="BookingConfirmed",
            extra_data={"payment_id": "pay_1"},
        )
    last = BookingHistory.objects.filter(booking=booking).last()
    assert (last.from_status, last.to_status, last.actor_type) == (
        "cancelled",
        "confirmed",
        "system",
    )
    event = Event.objects.filter(aggregate_id=str(booking.id)).order_by("-id").first()
    assert event.event_type == "BookingConfirmed"
    assert event.payload["from_status"] == "cancelled"
    assert event.payload["payment_id"] == "pay_1"


def test_a_stale_caller_is_fenced_out(booking, second_slot):
    stale = Booking.objects.select_related("slot__clinic", "slot__service", "reservation").get(
        id=booking.id
    )
    # Someone else changes the booking without changing its status: version moves on.
    booking_reschedule(actor=SUPPORT, booking_id=booking.id, slot_id=second_slot.id, reason="x")
    with pytest.raises(VersionConflict), transaction.atomic():
        booking_transition(
            booking=stale, to_status="completed", actor=SUPPORT, event_type="BookingCompleted"
        )
    # ...or moves its status: the stale move is an invalid transition.
    fresh = Booking.objects.select_related("slot__clinic", "slot__service", "reservation").get(
        id=booking.id
    )
    with transaction.atomic():
        booking_transition(
            booking=fresh, to_status="completed", actor=SUPPORT, event_type="BookingCompleted"
        )
    fresh.status, fresh.version = "confirmed", fresh.version - 1
    with pytest.raises(InvalidTransition), transaction.atomic():
        booking_transition(
            booking=fresh, to_status="cancelled", actor=SUPPORT, event_type="BookingCancelled"
        )
    booking.refresh_from_db()
    assert booking.status == "completed"
    assert BookingHistory.objects.filter(booking=booking, to_status="cancelled").count() == 0


def test_transition_refuses_to_run_outside_a_transaction(booking):
    with pytest.raises(RuntimeError):
        booking_transition(
            booking=booking, to_status="completed", actor=SUPPORT, event_type="BookingCompleted"
        )


def test_references_are_unambiguous_and_a_collision_draws_again(
    owner_pet, slot, second_slot, monkeypatch
):
    assert all(
        re.fullmatch(r"PP-[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}", booking_reference_new())
        for _ in range(200)
    )
    first = book_on(slot)
    drawn = iter([first.reference, "PP-ABCDEF"])
    monkeypatch.setattr(lifecycle, "booking_reference_new", lambda: next(drawn))
    second = book_on(second_slot)
    assert second.reference == "PP-ABCDEF"
    assert Booking.objects.count() == 2
