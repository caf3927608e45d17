"""Holds that follow the payment: when an unpaid booking is cancelled, and how paying moves it.

* An unpaid booking is cancelled PAYMENT_DEADLINE_SECONDS after its creation.
* When its owner starts paying, the deadline becomes PAYMENT_DEADLINE_SECONDS from that
  moment, never later than creation + PAYMENT_DEADLINE_CAP_SECONDS (and never earlier than
  it was).
* At the deadline the job asks the Payment Service first: a payment it still processes
  (pending, processing: 3-D Secure, a bank transfer) extends the deadline by
  PAYMENT_PENDING_EXTENSION_SECONDS, up to creation + PAYMENT_DEADLINE_MAX_SECONDS; past that
  the booking is cancelled all the same (a payment landing later is refunded or re-booked,
  docs/payments.md).

Each move of the deadline is a history note on the booking.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import Booking, BookingStatus
from .history import booking_history_note

DEADLINE_STARTED = "payment_started"
DEADLINE_EXTENDED = "payment_processing"


def payment_deadline_of(booking: Booking) -> dt.datetime:
    """The instant an unpaid `booking` is cancelled."""
    if booking.payment_deadline_at is not None:
        return booking.payment_deadline_at
    return booking.created_at + dt.timedelta(seconds=settings.PAYMENT_DEADLINE_SECONDS)


def bookings_past_payment_deadline(*, now: dt.datetime) -> Q:
    """Unpaid bookings whose deadline has come (for the deadline job's query)."""
    by_creation = now - dt.timedelta(seconds=settings.PAYMENT_DEADLINE_SECONDS)
    return Q(status=BookingStatus.PENDING_PAYMENT) & (
        Q(payment_deadline_at__lte=now)
        | Q(payment_deadline_at__isnull=True, created_at__lte=by_creation)
    )


def _deadline_move(*, booking: Booking, to: dt.datetime, note: str) -> bool:
    """Move the deadline later (never earlier) and write the history note; the caller holds
    the booking row lock in its transaction."""
    if to <= payment_deadline_of(booking):
        return False
    Booking.objects.filter(id=booking.id).update(
        payment_deadline_at=to, version=F("version") + 1, updated_at=timezone.now()
    )
    booking.payment_deadline_at = to
    booking.version += 1
    booking_history_note(booking=booking, reason=f"{note}: payment deadline {to.isoformat()}")
    return True


def payment_deadline_start(*, booking: Booking, now: dt.datetime) -> bool:
    """The owner starts paying now (called once, when the booking's payment is created, with
    the booking row locked): the deadline counts from now, within the cap."""
    cap = booking.created_at + dt.timedelta(seconds=settings.PAYMENT_DEADLINE_CAP_SECONDS)
    wanted = min(now + dt.timedelta(seconds=settings.PAYMENT_DEADLINE_SECONDS), cap)
    return _deadline_move(booking=booking, to=wanted, note=DEADLINE_STARTED)


def payment_deadline_extend(*, booking_id: uuid.UUID) -> bool:
    """The provider still processes this booking's payment at its deadline: give it
    PAYMENT_PENDING_EXTENSION_SECONDS more, up to the maximum. False when the maximum is
    reached (or the booking is no longer unpaid): then it is cancelled."""
    with transaction.atomic(durable=True):
        booking = Booking.objects.select_for_update().filter(id=booking_id).first()
        if booking is None or booking.status != BookingStatus.PENDING_PAYMENT:
            return False
        now = timezone.now()
        ceiling = booking.created_at + dt.timedelta(seconds=settings.PAYMENT_DEADLINE_MAX_SECONDS)
        wanted = min(
            now + dt.timedelta(seconds=settings.PAYMENT_PENDING_EXTENSION_SECONDS), ceiling
        )
        if wanted <= now:
            return False
        return _deadline_move(booking=booking, to=wanted, note=DEADLINE_EXTENDED)
