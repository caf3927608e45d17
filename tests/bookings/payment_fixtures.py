"""Fixtures and helpers shared by the payment tests: a service that requires payment, a
booking waiting for its payment, and delivering a stub's signed webhook to our endpoint."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from bookings.models import Booking, PaymentRecord
from bookings.services import booking_confirm_reservation
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.services import reservation_create
from slots.models import Slot

from ..factories import ClinicServiceFactory, SlotFactory

PAYER = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))

WEBHOOK_URL = "/api/v1/payments/webhook"


@pytest.fixture
def paid_slot(clinic):
    service = ClinicServiceFactory(
        id="svc-vaccination",
        clinic=clinic,
        requires_payment=True,
        price=Decimal("45.00"),
        currency="EUR",
        species=["dog", "cat"],
    )
    return SlotFactory(clinic=clinic, service=service, capacity=1)


def book_paid(slot: Slot, *, owner: Principal = PAYER, pet_id: str = "pet-1") -> Booking:
    reservation = reservation_create(actor=owner, slot_id=slot.id, pet_id=pet_id)
    return booking_confirm_reservation(actor=owner, reservation_id=reservation.id)


@pytest.fixture
def unpaid_booking(owner_pet, paid_slot) -> Booking:
    booking = book_paid(paid_slot)
    assert booking.status == "pending_payment"
    return booking


def payment_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.id}/payment"


def deliver(client, body: bytes, signature: str | None):
    headers = {"HTTP_X_SIGNATURE": signature} if signature is not None else {}
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


def event_types(booking: Booking) -> list[str]:
    return list(
        Event.objects.filter(aggregate_id=str(booking.id))
        .order_by("aggregate_version")
        .values_list("event_type", flat=True)
    )


def last_event(booking: Booking, event_type: str) -> Event:
    return (
        Event.objects.filter(aggregate_id=str(booking.id), event_type=event_type)
        .order_by("-aggregate_version")
        .first()
    )


def age_booking(booking: Booking, *, seconds: float) -> None:
    """Pretend the booking was created `seconds` ago (its payment deadline counts from then,
    or from when its payment started, which moves back by as much)."""
    now = timezone.now()
    Booking.objects.filter(id=booking.id).update(created_at=now - dt.timedelta(seconds=seconds))
    Booking.objects.filter(id=booking.id, payment_deadline_at__isnull=False).update(
        payment_deadline_at=F("payment_deadline_at")
        - (now - booking.created_at)
        - dt.timedelta(seconds=seconds)
    )


def age_payments(booking: Booking, *, seconds: float) -> None:
    """Pretend we last heard of the booking's payments `seconds` ago."""
    PaymentRecord.objects.filter(booking=booking).update(
        updated_at=timezone.now() - dt.timedelta(seconds=seconds)
    )
