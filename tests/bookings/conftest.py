"""Fixtures of the bookings tests: holds and bookings made through the real services."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from bookings.models import Booking
from bookings.services import booking_confirm_reservation
from petpro_booking.core.principal import Principal
from reservations.models import Reservation
from reservations.services import reservation_create
from slots.models import Slot

from ..factories import LocalPetFactory, SlotFactory
from .payment_fixtures import paid_slot, unpaid_booking  # noqa: F401  (payment tests)

OWNER = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
OTHER_OWNER = Principal(sub="owner-2", roles=frozenset({"pet_owner"}))
SUPPORT = Principal(sub="support-1", roles=frozenset({"support"}))


def staff_of(clinic_id: str) -> Principal:
    return Principal(
        sub="staff-1", roles=frozenset({"clinic_staff"}), clinic_ids=frozenset({clinic_id})
    )


def hold_on(slot: Slot, *, owner: Principal = OWNER, pet_id: str = "pet-1") -> Reservation:
    return reservation_create(actor=owner, slot_id=slot.id, pet_id=pet_id)


def book_on(slot: Slot, *, owner: Principal = OWNER, pet_id: str = "pet-1") -> Booking:
    reservation = hold_on(slot, owner=owner, pet_id=pet_id)
    return booking_confirm_reservation(actor=owner, reservation_id=reservation.id)


def counters(slot: Slot) -> tuple[int, int]:
    slot.refresh_from_db()
    return slot.booked_count, slot.held_count


def let_slot_start(slot: Slot, *, ago: dt.timedelta = dt.timedelta(minutes=5)) -> Slot:
    """Move a booked slot's start into the past, so its visit may be completed or missed."""
    start = timezone.now() - ago
    Slot.objects.filter(id=slot.id).update(start_at=start, end_at=start + dt.timedelta(minutes=30))
    slot.refresh_from_db()
    return slot


@pytest.fixture
def other_pet(db):
    return LocalPetFactory(owner__id="owner-2", id="pet-2", species="dog")


@pytest.fixture
def booking(owner_pet, slot) -> Booking:
    return book_on(slot)


@pytest.fixture
def second_slot(slot) -> Slot:
    return SlotFactory(
        clinic=slot.clinic,
        service=slot.service,
        start_at=slot.start_at + dt.timedelta(days=1, minutes=7),
    )
