"""Refunds of booking payments: mark what is owed inside the change that owes it, pay it back
through the Payment Service after commit, and sweep until the provider confirms it.

A refund is owed when a payment succeeded but the booking must not keep it: the booking was
cancelled after it was paid, the payment arrived late for a booking the deadline had cancelled
and whose slot was gone, a second payment landed on an already paid booking, or the amount did
not match. `refund_requested_at` records that; the payment record becomes `refunded` when done.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from integrations.payments.gateway import (
    PaymentRejected,
    PaymentServiceUnavailable,
    payment_refund,
)
from petpro_booking.core import metrics
from petpro_booking.core.logging import bind_log_context

from ..models import Booking, BookingStatus, PaymentRecord, PaymentStatus
from .history import booking_history_note

logger = logging.getLogger(__name__)

REFUND_SWEEP_BATCH = 100
PARTIAL_REFUND_OWED = "partial_refund_owed"
# A booking in these statuses uses its share of a group's payment (its unit, or its visit).
KEEPS_PAYMENT = (
    BookingStatus.PENDING_PAYMENT,
    BookingStatus.CONFIRMED,
    BookingStatus.COMPLETED,
    BookingStatus.NO_SHOW,
)


def payment_refund_request(*, record: PaymentRecord) -> None:
    """Mark a succeeded payment as owed back and refund it after commit. Runs inside the
    transaction that decided it, with the record row locked by the caller."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a refund is requested inside the transaction that owes it")
    if record.refund_requested_at is None:
        now = timezone.now()
        PaymentRecord.objects.filter(id=record.id).update(refund_requested_at=now, updated_at=now)
        record.refund_requested_at = now
    record_id = str(record.id)

    def enqueue() -> None:
        from bookings.tasks import payment_refund_owed_task

        payment_refund_owed_task.delay(record_id)

    transaction.on_commit(enqueue)


def payment_refund_schedule_if_paid(
    *, booking: Booking, leaving: Collection[uuid.UUID] = ()
) -> bool:
    """Call inside the transaction that cancels `booking`: every succeeded payment of it is
    owed back and refunded after commit. True when a refund was requested (the
    `refund_requested` of BookingCancelled).

    A booking of a pet group shares the group's one payment. The Payment Service refunds
    whole payments only, so the payment is refunded when no other booking of the group keeps
    its unit (besides `leaving`: the group's bookings cancelled in the same change); until
    then the cancelled pet's share is recorded as owed in its history (docs/bookings.md)."""
    if booking.group_id is None:
        records = list(
            PaymentRecord.objects.select_for_update().filter(
                booking_id=booking.id, status=PaymentStatus.SUCCEEDED
            )
        )
    else:
        records = list(
            PaymentRecord.objects.select_for_update().filter(
                group_id=booking.group_id, status=PaymentStatus.SUCCEEDED
            )
        )
        if records and group_keeps_payment(booking=booking, leaving=leaving):
            for record in records:
                booking_history_note(
                    booking=booking,
                    reason=f"{PARTIAL_REFUND_OWED}: {booking.amount} {booking.currency} of group "
                    f"payment {record.payment_id}; the payment is refunded whole when the "
                    "group's last booking is cancelled, until then the clinic settles it",
                )
            return False
    for record in records:
        payment_refund_request(record=record)
    return bool(records)


def group_keeps_payment(*, booking: Booking, leaving: Collection[uuid.UUID] = ()) -> bool:
    """True when another booking of `booking`'s group still holds its unit (pending,
    confirmed, or its visit took place): the group's payment is still used."""
    return (
        Booking.objects.filter(group_id=booking.group_id, status__in=KEEPS_PAYMENT)
        .exclude(id__in=[booking.id, *leaving])
        .exists()
    )


def payment_refund_owed(*, record_id: uuid.UUID | str) -> str:
    """Refund one payment that is owed back. The provider is called outside any transaction;
    a provider outage leaves it owed for the next sweep (never raises for that).

    Returns "refunded", "not_owed", "rejected", "not_refunded" (the provider answered another
    status than refunded) or "provider_unavailable".
    """
    record = PaymentRecord.objects.filter(id=record_id).first()
    if record is None or not _owed(record):
        return "not_owed"
    bind_log_context(bookingId=str(record.booking_id))  # the task's lines name the booking
    if not record.payment_id:
        return "not_owed"
    try:
        result = payment_refund(payment_id=record.payment_id, idempotency_key=f"refund-{record.id}")
    except PaymentRejected as exc:
        # Needs a person (support sees it in the logs and the metric); still owed, so it is
        # tried again, after the others (updated_at moves it to the back of the sweep).
        logger.error("refund of %s refused by the provider: %s", record.payment_id, exc.details)
        metrics.PAYMENTS.labels(outcome="refund_rejected").inc()
        PaymentRecord.objects.filter(id=record.id).update(updated_at=timezone.now())
        return "rejected"
    except PaymentServiceUnavailable as exc:
        # Behind the others next time: one payment the provider keeps failing on (a 5xx, an
        # answer we cannot read) must not hold every other refund back.
        logger.warning("refund of %s postponed: %s", record.payment_id, exc.message)
        metrics.PAYMENTS.labels(outcome="refund_postponed").inc()
        PaymentRecord.objects.filter(id=record.id).update(updated_at=timezone.now())
        return "provider_unavailable"
    if result.status != PaymentStatus.REFUNDED:
        # The provider took the request but has not refunded (pending) or could not (failed,
        # or the payment still succeeded): still owed, asked again with the same key later.
        logger.error("refund of %s answered %r, not refunded", record.payment_id, result.status)
        metrics.PAYMENTS.labels(outcome="refund_postponed").inc()
        PaymentRecord.objects.filter(id=record.id).update(updated_at=timezone.now())
        return "not_refunded"

    with transaction.atomic(durable=True):
        record = (
            PaymentRecord.objects.select_for_update(of=("self",))
            .select_related("booking")
            .get(id=record.id)
        )
        if record.status != PaymentStatus.SUCCEEDED:
            return "not_owed"  # the refund webhook got here first
        if record.refund_requested_at is None:
            record.refund_requested_at = timezone.now()
        record.status = PaymentStatus.REFUNDED
        record.last_payload = result.payload
        record.version += 1
        record.save(
            update_fields=["status", "last_payload", "refund_requested_at", "version", "updated_at"]
        )
        booking_history_note(
            booking=record.booking,
            reason=f"payment {record.payment_id} refunded ({record.amount} {record.currency})",
        )
    metrics.PAYMENTS.labels(outcome="refunded").inc()
    return "refunded"


def _owed(record: PaymentRecord) -> bool:
    if record.status != PaymentStatus.SUCCEEDED:
        return False
    if record.refund_requested_at is not None:
        return True
    if record.group_id is not None:  # a group's payment: owed once no booking of it uses it
        return not Booking.objects.filter(
            group_id=record.group_id, status__in=KEEPS_PAYMENT
        ).exists()
    return record.booking.status == BookingStatus.CANCELLED


def payments_refund_owed(*, batch_size: int = REFUND_SWEEP_BATCH) -> dict[str, int]:
    """The sweep: refund every payment still owed back. A succeeded payment on a cancelled
    booking counts too, so a cancel path that did not request it is caught here.
    Stops at the first provider outage (the rest waits for the next run)."""
    group_in_use = Booking.objects.filter(group_id=OuterRef("group_id"), status__in=KEEPS_PAYMENT)
    owed = (
        PaymentRecord.objects.filter(status=PaymentStatus.SUCCEEDED)
        .filter(
            Q(refund_requested_at__isnull=False)
            | Q(group_id__isnull=True, booking__status=BookingStatus.CANCELLED)
            | (Q(group_id__isnull=False) & ~Exists(group_in_use))
        )
        .exclude(payment_id=None)
        .order_by("updated_at")
        .values_list("id", flat=True)[:batch_size]
    )
    counts: dict[str, int] = {}
    for record_id in list(owed):
        outcome = payment_refund_owed(record_id=record_id)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "provider_unavailable":
            break
    return counts
