"""Property: whatever sequence of hold, release, expire, confirm, cancel and reschedule runs,
every slot's counters equal the rows they count and never exceed its capacity.

A hypothesis state machine drives the real services against PostgreSQL and Redis; each
example works on slots of its own, and after every step the invariant is checked on all of
them straight from the database.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from bookings.models import Booking, BookingStatus
from bookings.services import booking_cancel, booking_confirm_reservation, booking_reschedule
from petpro_booking.core.errors import ApplicationError
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.models import Reservation, ReservationStatus
from reservations.services import (
    reservation_create,
    reservation_expire_due,
    reservation_release,
)
from slots.models import Slot

from ..factories import LocalPetFactory, SlotFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OWNERS = [Principal(sub=f"owner-{i}", roles=frozenset({"pet_owner"})) for i in range(1, 4)]
SUPPORT = Principal(sub="support-1", roles=frozenset({"support"}))
# What a refused step may answer; anything else (a 500, a deadlock) fails the property.
EXPECTED_REFUSALS = {
    "slot_unavailable",
    "reservation_expired",
    "reservation_not_held",
    "invalid_transition",
    "validation_error",
    # fair use (bookings per pet per day, unpaid bookings): the three owners' slots may fall on
    # one clinic day, depending on where the factory's sequence has got to in the run
    "limit_exceeded",
}


def test_counters_always_equal_live_rows(clinic_service):
    for index, _ in enumerate(OWNERS, start=1):
        LocalPetFactory(owner__id=f"owner-{index}", id=f"pet-{index}", species="dog")

    class Bookings(RuleBasedStateMachine):
        holds = Bundle("holds")
        bookings = Bundle("bookings")

        @initialize(capacities=st.lists(st.integers(1, 3), min_size=2, max_size=3))
        def make_slots(self, capacities: list[int]) -> None:
            self.slots = [
                SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=c)
                for c in capacities
            ]

        def attempt(self, call):
            try:
                return call()
            except ApplicationError as exc:
                refusal = exc
            assert refusal.code in EXPECTED_REFUSALS, refusal
            return None

        @rule(target=holds, slot=st.integers(0, 2), who=st.integers(0, 2))
        def hold(self, slot: int, who: int):
            target = self.slots[slot % len(self.slots)]
            made = self.attempt(
                lambda: reservation_create(
                    actor=OWNERS[who], slot_id=target.id, pet_id=f"pet-{who + 1}"
                )
            )
            return multiple((OWNERS[who], made.id)) if made else multiple()

        @rule(hold=consumes(holds))
        def release(self, hold) -> None:
            owner, reservation_id = hold
            self.attempt(lambda: reservation_release(actor=owner, reservation_id=reservation_id))

        @rule(hold=holds)
        def let_expire(self, hold) -> None:
            """The hold's time runs out; the job or the next writer on the slot expires it."""
            _, reservation_id = hold
            Reservation.objects.filter(id=reservation_id).update(
                expires_at=timezone.now() - dt.timedelta(seconds=1)
            )

        @rule()
        def expiry_job(self) -> None:
            reservation_expire_due()

        @rule(target=bookings, hold=consumes(holds))
        def confirm(self, hold):
            owner, reservation_id = hold
            made = self.attempt(
                lambda: booking_confirm_reservation(actor=owner, reservation_id=reservation_id)
            )
            return multiple(made.id) if made else multiple()

        @rule(booking=bookings, by_support=st.booleans())
        def cancel(self, booking, by_support: bool) -> None:
            owner = Booking.objects.get(id=booking).user_id
            actor = SUPPORT if by_support else Principal(sub=owner, roles=frozenset({"pet_owner"}))
            self.attempt(lambda: booking_cancel(actor=actor, booking_id=booking, reason="r"))

        @rule(booking=bookings, slot=st.integers(0, 2))
        def reschedule(self, booking, slot: int) -> None:
            target = self.slots[slot % len(self.slots)]
            self.attempt(
                lambda: booking_reschedule(
                    actor=SUPPORT, booking_id=booking, slot_id=target.id, reason="move"
                )
            )

        @invariant()
        def counters_equal_rows(self) -> None:
            if not hasattr(self, "slots"):
                return
            for slot in Slot.objects.filter(id__in=[s.id for s in self.slots]):
                live = Booking.objects.filter(slot=slot).exclude(status=BookingStatus.CANCELLED)
                held = Reservation.objects.filter(slot=slot, status=ReservationStatus.HELD)
                assert slot.booked_count == live.count()
                assert slot.held_count == held.count()
                assert 0 <= slot.booked_count + slot.held_count <= slot.capacity
            confirmed = Reservation.objects.filter(
                slot__in=self.slots, status=ReservationStatus.CONFIRMED
            ).count()
            assert confirmed == Booking.objects.filter(reservation__slot__in=self.slots).count()

    run_state_machine_as_test(
        Bookings,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
            # The same sequences every run: a random draw once reached no successful release in
            # its 40 sequences and failed the coverage check below (1 run in about 10).
            derandomize=True,
        ),
    )
    # Whether a random sequence lands a reschedule depends on the room its steps left (and so
    # on luck): one more, on slots with room, makes sure the change itself is exercised.
    first, second = (
        SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=1)
        for _ in range(2)
    )
    hold = reservation_create(actor=OWNERS[0], slot_id=first.id, pet_id="pet-1")
    booking = booking_confirm_reservation(actor=OWNERS[0], reservation_id=hold.id)
    booking_reschedule(actor=SUPPORT, booking_id=booking.id, slot_id=second.id, reason="move")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.booked_count, second.booked_count) == (0, 1)
    # The sequences did reach every kind of change (not just refusals).
    happened = set(
        Event.objects.filter(aggregate_type__in=["booking", "reservation"])
        .values_list("event_type", flat=True)
        .distinct()
    )
    assert {
        "ReservationReleased",
        "ReservationExpired",
        "BookingCreated",
        "BookingCancelled",
        "BookingRescheduled",
    } <= happened
