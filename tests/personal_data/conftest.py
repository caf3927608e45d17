"""A person with data in every place we keep it: bookings in every status, holds, a payment,
history with free text, an idempotency record, cached answers; and a bystander."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.utils import timezone

from bookings.models import Booking
from bookings.services import booking_cancel, booking_complete, booking_mark_no_show
from petpro_booking.core.principal import Principal
from reservations.models import Reservation
from reservations.services import reservation_create, reservation_release
from waitlist.services import waitlist_join

from ..bookings.conftest import SUPPORT, book_on, let_slot_start, staff_of
from ..bookings.payment_fixtures import book_paid
from ..conftest import api_client_for
from ..factories import (
    ClinicServiceFactory,
    LocalPetFactory,
    PaymentRecordFactory,
    SlotFactory,
)

PERSON = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
BYSTANDER = Principal(sub="owner-2", roles=frozenset({"pet_owner"}))
PET_NAME = "Biscuit the Brave"
EMAIL = "biscuits-owner@example.com"
PHONE = "+49 170 5550101"
OWNER_REASON = "Biscuit hurt his paw at Lake Tegel"
STAFF_REASON = "Biscuit seen by Dr Vogel, leg fine"
# Every value that identifies the person or that they told us.
PERSONAL_VALUES = ("owner-1", "pet-1", PET_NAME, EMAIL, PHONE, OWNER_REASON, STAFF_REASON)


@dataclass
class Person:
    bookings: dict[str, Booking]
    live_hold: Reservation
    bystander_booking: Booking


@pytest.fixture
def person(clinic) -> Person:
    LocalPetFactory(
        id="pet-1",
        name=PET_NAME,
        species="dog",
        owner__id="owner-1",
        owner__email=EMAIL,
        owner__phone=PHONE,
    )
    LocalPetFactory(id="pet-2", name="Nala", species="cat", owner__id="owner-2")
    service = ClinicServiceFactory(clinic=clinic, species=["dog", "cat"])
    paid = ClinicServiceFactory(clinic=clinic, species=["dog", "cat"], requires_payment=True)
    start = timezone.now() + dt.timedelta(days=3)

    def slot(n: int, *, on=service, capacity: int = 1):
        at = start + dt.timedelta(hours=n)
        return SlotFactory(
            clinic=clinic,
            service=on,
            start_at=at,
            end_at=at + dt.timedelta(minutes=30),
            capacity=capacity,
        )

    staff = staff_of(clinic.id)
    shared = slot(0, capacity=3)
    bookings = {"confirmed": book_on(shared, owner=PERSON)}
    bystander_booking = book_on(shared, owner=BYSTANDER, pet_id="pet-2")
    pending = book_paid(slot(1, on=paid), owner=PERSON)
    PaymentRecordFactory(
        booking=pending,
        payment_id="pay_erasure_1",
        status="pending",
        checkout_url="https://pay.example/checkout?customer=owner-1",
        last_payload={"customer_id": "owner-1", "description": f"Check-up for {PET_NAME}"},
    )
    bookings["pending_payment"] = pending
    cancelled = book_on(slot(2), owner=PERSON)
    bookings["cancelled"] = booking_cancel(
        actor=PERSON, booking_id=cancelled.id, reason=OWNER_REASON
    )
    done = book_on(slot(3), owner=PERSON)
    let_slot_start(done.slot)  # a visit is closed once its slot has started
    bookings["completed"] = booking_complete(actor=staff, booking_id=done.id, reason=STAFF_REASON)
    missed = book_on(slot(4), owner=PERSON)
    let_slot_start(missed.slot)
    bookings["no_show"] = booking_mark_no_show(
        actor=SUPPORT, booking_id=missed.id, reason=STAFF_REASON
    )
    released = reservation_create(actor=PERSON, slot_id=slot(5).id, pet_id="pet-1")
    reservation_release(actor=PERSON, reservation_id=released.id)
    # The live hold through the API: an idempotency record and throttle counters too.
    answer = api_client_for(sub="owner-1", roles=["pet_owner"]).post(
        "/api/v1/reservations",
        {"slot_id": str(slot(6).id), "pet_id": "pet-1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="hold-for-biscuit",
    )
    assert answer.status_code == 201, answer.content
    live_hold = Reservation.objects.get(id=answer.json()["id"])
    # In line for a slot the bystander holds (the waiting list keeps the owner and the pet).
    full = slot(7)
    reservation_create(actor=BYSTANDER, slot_id=full.id, pet_id="pet-2")
    waitlist_join(actor=PERSON, slot_id=full.id, pet_id="pet-1")
    # What the User Service client caches about an owner (the cache shared with it).
    cache.set("svc:{user:owner-1}:profile", {"id": "owner-1", "email": EMAIL, "phone": PHONE})
    return Person(bookings=bookings, live_hold=live_hold, bystander_booking=bystander_booking)
