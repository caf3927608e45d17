"""Paying for a booking (docs/payments.md): create the payment with the Payment Service,
take its signed webhook, reconcile what a lost webhook missed, cancel unpaid bookings at their
deadline, and handle payments that arrive after it.

Network calls to the provider never run inside a transaction: the payment record (with its
idempotency key, fixed at the first attempt) is written in one short transaction, the provider
is called, and its answer is recorded in another. Every booking change goes through the
status machine of `history.py` (`booking_transition`), inside one slot write
(`slots.locking.slot_write`) in the same slot-then-booking order as the other writers. The
webhook's path goes one way: receive → process → `_payment_apply` (slot write) → history.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from integrations.payments.gateway import (
    PaymentRejected,
    PaymentServiceUnavailable,
    payment_create,
    payment_get,
)
from integrations.payments.webhook import (
    WebhookEvent,
    WebhookMalformed,
    webhook_event_parse,
    webhook_signature_valid_any,
)
from petpro_booking.core import metrics
from petpro_booking.core.errors import (
    NotFound,
    PermissionDeniedError,
    ValidationFailed,
    VersionConflict,
)
from petpro_booking.core.http import uuid_or_none
from petpro_booking.core.logging import bind_log_context
from petpro_booking.core.principal import SYSTEM, Principal
from reservations.services import reservation_expire_stale
from slots.locking import SlotBusy, SlotRef, slot_write
from slots.models import Slot, SlotStatus
from slots.services import slot_return_booking, slot_take_booking

from ..errors import InvalidSignature, InvalidTransition
from ..models import (
    Booking,
    BookingStatus,
    CancelReason,
    PaymentRecord,
    PaymentStatus,
    ProcessedWebhook,
)
from .history import (
    BookingEvent,
    booking_events_append,
    booking_history_note,
    booking_transition,
)
from .lifecycle import SCOPE_UNPAID_GROUP, booking_cancel
from .payment_deadline import (
    bookings_past_payment_deadline,
    payment_deadline_extend,
    payment_deadline_of,
    payment_deadline_start,
)
from .refunds import PARTIAL_REFUND_OWED, payment_refund_request

logger = logging.getLogger(__name__)
# Events an operator should see and alert on (refused webhooks that were correctly signed).
security_log = logging.getLogger("petpro.security")

PAYMENT_DEADLINE_REASON = CancelReason.PAYMENT_DEADLINE.value
LATE_PAYMENT_REASON = "late_payment"
REFUNDED_REASON = "payment_refunded"
LIVE_STATUSES = (PaymentStatus.CREATED, PaymentStatus.PENDING)
WEBHOOK_STATUSES = {
    "payment.succeeded": PaymentStatus.SUCCEEDED,
    "payment.failed": PaymentStatus.FAILED,
    "payment.refunded": PaymentStatus.REFUNDED,
}
JOB_BATCH = 100
# Pending payments older than this are no longer asked about (the provider has given up too).
RECONCILE_MAX_AGE = dt.timedelta(days=7)


# --- create ----------------------------------------------------------------------------------


def _booking_to_pay(*, actor: Principal, booking_id: uuid.UUID | str) -> Booking:
    """The booking if its owner asks; 404 for whoever may not see it, 403 for staff."""
    key = uuid_or_none(booking_id)
    booking = Booking.objects.filter(id=key).first() if key else None
    if booking is None or not (
        booking.user_id == actor.sub or actor.can_manage_clinic(booking.clinic_id)
    ):
        raise NotFound("No such booking.")
    if booking.user_id != actor.sub:
        raise PermissionDeniedError("Only the owner of the booking can pay for it.")
    return booking


def _payment_record_for_attempt(
    *, booking_id: uuid.UUID, group_id: uuid.UUID | None = None
) -> PaymentRecord:
    """The booking's live payment record, or a new one with its idempotency key fixed now.
    One short transaction; the booking row lock makes two concurrent requests share one.
    A booking of a pet group shares the group's record: one payment for the group's unpaid
    bookings (`_group_payment_record`)."""
    with transaction.atomic(durable=True):
        if group_id is not None:
            # Every booking of the group, locked in id order (two of its owner's requests from
            # two bookings of the group queue instead of deadlocking).
            members = list(
                Booking.objects.select_for_update().filter(group_id=group_id).order_by("id")
            )
            booking = next(member for member in members if member.id == booking_id)
        else:
            booking = Booking.objects.select_for_update().get(id=booking_id)
        if booking.status != BookingStatus.PENDING_PAYMENT:
            raise InvalidTransition(
                gettext("A %(status)s booking cannot be paid.") % {"status": booking.status},
                details={"status": booking.status, "requested": "payment"},
            )
        deadline = payment_deadline_of(booking)
        if timezone.now() >= deadline:
            raise InvalidTransition(
                "The payment deadline of this booking has passed.",
                details={
                    "status": booking.status,
                    "requested": "payment",
                    "payment_deadline": deadline.isoformat(),
                },
            )
        if group_id is not None:
            return _group_payment_record(booking=booking, members=members)
        record = (
            PaymentRecord.objects.filter(booking=booking, status__in=LIVE_STATUSES)
            .order_by("-created_at")
            .first()
        )
        if record is None:
            payment_deadline_start(booking=booking, now=timezone.now())
            record = PaymentRecord.objects.create(
                booking=booking,
                idempotency_key=f"booking-{booking.id}-{uuid.uuid4().hex[:12]}",
                amount=booking.amount,
                currency=booking.currency,
            )
        return record


def _group_payment_record(*, booking: Booking, members: list[Booking]) -> PaymentRecord:
    """The group's live payment record, or a new one for the sum of the group's unpaid
    bookings, attached to `booking` (the one its owner pays from: the provider knows that
    booking id). Starting to pay moves the deadline of every unpaid booking of the group."""
    record = (
        PaymentRecord.objects.filter(group_id=booking.group_id, status__in=LIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )
    if record is None:
        unpaid = [member for member in members if member.status == BookingStatus.PENDING_PAYMENT]
        now = timezone.now()
        for member in unpaid:
            payment_deadline_start(booking=member, now=now)
        record = PaymentRecord.objects.create(
            booking=booking,
            group_id=booking.group_id,
            idempotency_key=f"group-{booking.group_id}-{uuid.uuid4().hex[:12]}",
            amount=sum((member.amount for member in unpaid), Decimal("0")),
            currency=booking.currency,
        )
    return record


def _payment_record_answered(*, record_id: uuid.UUID, answer) -> PaymentRecord:
    with transaction.atomic(durable=True):
        record = PaymentRecord.objects.select_for_update().get(id=record_id)
        if record.payment_id is None:
            record.payment_id = answer.payment_id
            if record.status == PaymentStatus.CREATED:
                record.status = PaymentStatus.PENDING
            record.checkout_url = answer.checkout_url[:500]
            record.last_payload = answer.payload
            record.version += 1
            record.save(
                update_fields=[
                    "payment_id",
                    "status",
                    "checkout_url",
                    "last_payload",
                    "version",
                    "updated_at",
                ]
            )
        elif record.payment_id != answer.payment_id:
            # Cannot happen with one idempotency key; keep the first and say so loudly.
            logger.error(
                "provider answered payment %s for record %s, which has %s",
                answer.payment_id,
                record.id,
                record.payment_id,
            )
        return record


def payment_create_for_booking(*, actor: Principal, booking_id: uuid.UUID | str) -> PaymentRecord:
    """Start (or return) the payment of a `pending_payment` booking; only its owner may.

    The same live payment is returned on every retry, and a retry after a failed call reuses
    the stored idempotency key, so the provider creates one payment however often this runs.
    A provider that is down or slow is a 503 `dependency_unavailable` within the client's
    total deadline; the booking stays `pending_payment`.
    """
    booking = _booking_to_pay(actor=actor, booking_id=booking_id)
    record = _payment_record_for_attempt(booking_id=booking.id, group_id=booking.group_id)
    if record.payment_id:
        return record  # the provider already answered: same payment
    paid_from = booking if record.booking_id == booking.id else record.booking
    description = f"PetPro booking {paid_from.reference}"
    if record.group_id is not None:
        description += " and the other pets of its group"
    try:
        answer = payment_create(
            idempotency_key=record.idempotency_key,
            booking_id=str(record.booking_id),
            amount=record.amount,
            currency=record.currency,
            description=description,
            customer_id=booking.user_id,
        )
    except PaymentServiceUnavailable:
        metrics.PAYMENTS.labels(outcome="provider_unavailable").inc()
        raise
    metrics.PAYMENTS.labels(outcome="created").inc()
    return _payment_record_answered(record_id=record.id, answer=answer)


# --- what the provider tells us (webhook or reconciliation) ----------------------------------


def payment_webhook_receive(*, body: bytes, signature: str | None) -> str:
    """The Payment Service's webhook: verify the signature over the raw body (401
    `invalid_signature` and nothing changes), then process the event once per `event_id`."""
    if not webhook_signature_valid_any(
        body=body,
        signature=signature,
        secrets=(settings.PAYMENT_WEBHOOK_SECRET, settings.PAYMENT_WEBHOOK_SECRET_PREVIOUS),
    ):
        metrics.PAYMENTS.labels(outcome="webhook_invalid_signature").inc()
        raise InvalidSignature()
    try:
        event = webhook_event_parse(body)
    except WebhookMalformed as exc:
        raise ValidationFailed(
            "The webhook body is not a payment event.", details={"body": [str(exc)]}
        ) from exc
    return payment_webhook_process(event=event)


def webhook_booking_check(*, event: WebhookEvent, record: PaymentRecord) -> None:
    """A signed body whose `booking_id` is not the payment's booking is refused before anything
    changes (a provider bug or a replayed body edited by someone holding the secret), and is
    logged as a security event."""
    if event.booking_id and event.booking_id != str(record.booking_id):
        security_log.warning(
            "webhook_booking_mismatch",
            extra={
                "event_id": event.event_id,
                "payment_id": event.payment_id,
                "claimed_booking_id": event.booking_id,
                "booking_id": str(record.booking_id),
            },
        )
        metrics.PAYMENTS.labels(outcome="webhook_booking_mismatch").inc()
        raise ValidationFailed(
            "The webhook's booking_id is not the booking of this payment.",
            details={"booking_id": ["Does not match the payment's booking."]},
        )


def booking_cancel_for_refund(*, booking: Booking, slot: Slot, payment_id: str | None) -> bool:
    """payment.refunded on a booking that still holds its unit: the booking becomes
    `cancelled` (cancelled-with-refund, docs/payments.md), its unit goes back to the slot and
    BookingCancelled carries `refunded: true`. Runs inside the payment decision (slot and
    booking locked). False when the booking no longer holds a unit (nothing to move)."""
    if booking.status not in (BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED):
        return False
    slot_return_booking(slot_id=slot.id)
    booking_transition(
        booking=booking,
        to_status=BookingStatus.CANCELLED,
        actor=SYSTEM,
        reason=REFUNDED_REASON,
        event_type="BookingCancelled",
        extra_data={"refund_requested": False, "refunded": True, "payment_id": payment_id},
    )
    return True


def payment_webhook_process(*, event: WebhookEvent) -> str:
    """Apply one verified webhook event; a replayed `event_id` changes nothing. An unknown
    payment is 404 so the provider delivers it again (never acknowledged and lost)."""
    if ProcessedWebhook.objects.filter(event_id=event.event_id).exists():
        metrics.PAYMENTS.labels(outcome="webhook_replayed").inc()
        return "duplicate"
    record = (
        PaymentRecord.objects.select_related("booking").filter(payment_id=event.payment_id).first()
    )
    if record is None:
        raise NotFound("No payment with this payment_id.", details={"payment_id": event.payment_id})
    bind_log_context(bookingId=str(record.booking_id))  # the webhook's lines name the booking
    webhook_booking_check(event=event, record=record)
    return _payment_apply(
        record=record,
        status=WEBHOOK_STATUSES[event.type],
        amount=event.amount,
        currency=event.currency,
        payload=event.payload,
        event_id=event.event_id,
    )


def _payment_apply(
    *,
    record: PaymentRecord,
    status: str,
    amount: Decimal,
    currency: str,
    payload: dict[str, Any],
    event_id: str | None,
) -> str:
    """Apply the provider's word about one payment: one SERIALIZABLE decision under the slot
    lock (slot row, then booking, then payment record), idempotent by the record's status."""
    if record.group_id is not None:
        return _group_payment_apply(
            record=record,
            status=status,
            amount=amount,
            currency=currency,
            payload=payload,
            event_id=event_id,
        )
    seen = record.booking

    def decide(slot: Slot) -> str:
        booking = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("reservation")
            .get(id=seen.id)
        )
        if booking.slot_id != slot.id:
            raise VersionConflict("The booking moved to another slot meanwhile; try again.")
        booking.slot = slot
        current = PaymentRecord.objects.select_for_update().get(id=record.id)
        if event_id is not None:
            try:
                with transaction.atomic():
                    ProcessedWebhook.objects.create(event_id=event_id)
            except IntegrityError:
                return "duplicate"
        if status == PaymentStatus.SUCCEEDED:
            return _apply_success(
                booking=booking,
                slot=slot,
                record=current,
                amount=amount,
                currency=currency,
                payload=payload,
            )
        if status == PaymentStatus.FAILED:
            return _apply_failure(record=current, payload=payload)
        if status == PaymentStatus.REFUNDED:
            if current.status == PaymentStatus.REFUNDED:
                return "already_applied"
            _record_status(current, PaymentStatus.REFUNDED, payload)
            if booking_cancel_for_refund(booking=booking, slot=slot, payment_id=current.payment_id):
                return "refunded_cancelled"
            booking_history_note(
                booking=booking,
                reason=f"payment {current.payment_id} refunded by the payment service",
            )
            return "refunded"
        return "still_pending"

    outcome = slot_write(
        SlotRef(seen.slot_id, seen.clinic_id, seen.service_id),
        name="payment_apply",
        decide=decide,
        operation="payment_apply",
    )
    metrics.PAYMENTS.labels(outcome=outcome).inc()
    return outcome


def _webhook_claim(event_id: str | None) -> bool:
    """Record a webhook's `event_id` as handled in this transaction; False when it was."""
    if event_id is None:
        return True
    try:
        with transaction.atomic():
            ProcessedWebhook.objects.create(event_id=event_id)
    except IntegrityError:
        return False
    return True


def _group_payment_apply(
    *,
    record: PaymentRecord,
    status: str,
    amount: Decimal,
    currency: str,
    payload: dict[str, Any],
    event_id: str | None,
) -> str:
    """`_payment_apply` for a pet group's payment: one slot write over every slot the group's
    bookings sit on (slot rows, then the group's bookings in id order, then the record). A
    success confirms every unpaid booking of the group when the amount is their sum; a
    refund cancels every booking of the group still holding its unit."""
    members = list(Booking.objects.filter(group_id=record.group_id))
    refs = {
        member.slot_id: SlotRef(member.slot_id, member.clinic_id, member.service_id)
        for member in members
    }

    def decide(*slots: Slot) -> str:
        by_id = {slot.id: slot for slot in slots}
        group = list(
            Booking.objects.select_for_update(of=("self",))
            .select_related("reservation")
            .filter(group_id=record.group_id)
            .order_by("id")
        )
        for booking in group:
            if booking.slot_id not in by_id:
                raise VersionConflict("A booking moved to another slot meanwhile; try again.")
            booking.slot = by_id[booking.slot_id]
        group.sort(key=lambda booking: (booking.created_at, booking.id))
        current = PaymentRecord.objects.select_for_update().get(id=record.id)
        if not _webhook_claim(event_id):
            return "duplicate"
        if status == PaymentStatus.SUCCEEDED:
            return _apply_group_success(
                group=group, record=current, amount=amount, currency=currency, payload=payload
            )
        if status == PaymentStatus.FAILED:
            return _apply_failure(record=current, payload=payload)
        if status == PaymentStatus.REFUNDED:
            if current.status == PaymentStatus.REFUNDED:
                return "already_applied"
            _record_status(current, PaymentStatus.REFUNDED, payload)
            cancelled = [
                booking_cancel_for_refund(
                    booking=booking, slot=booking.slot, payment_id=current.payment_id
                )
                for booking in group
            ]
            if any(cancelled):
                return "refunded_cancelled"
            payer = next(booking for booking in group if booking.id == current.booking_id)
            booking_history_note(
                booking=payer,
                reason=f"payment {current.payment_id} refunded by the payment service",
            )
            return "refunded"
        return "still_pending"

    outcome = slot_write(
        *refs.values(), name="payment_apply_group", decide=decide, operation="payment_apply"
    )
    metrics.PAYMENTS.labels(outcome=outcome).inc()
    return outcome


def _apply_group_success(
    *,
    group: list[Booking],
    record: PaymentRecord,
    amount: Decimal,
    currency: str,
    payload: dict[str, Any],
) -> str:
    """A group's payment succeeded: its unpaid bookings become confirmed when the amount is
    their sum. A payment with nothing left to pay for (all paid or cancelled) is given back:
    a late group payment is refunded, not re-booked (docs/bookings.md)."""
    if record.status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
        return "already_applied"
    _record_status(record, PaymentStatus.SUCCEEDED, payload)
    payment_id = record.payment_id
    payer = next(booking for booking in group if booking.id == record.booking_id)
    unpaid = [booking for booking in group if booking.status == BookingStatus.PENDING_PAYMENT]
    if not unpaid:
        late = all(booking.status == BookingStatus.CANCELLED for booking in group)
        booking_history_note(
            booking=payer,
            reason=f"{LATE_PAYMENT_REASON if late else 'second payment'}: group payment "
            f"{payment_id} with no unpaid booking left in the group; refund requested",
        )
        payment_refund_request(record=record)
        return "late_refunded" if late else "duplicate_payment_refunded"
    due = sum((booking.amount for booking in unpaid), Decimal("0"))
    # What was asked when the payment started: a pet cancelled since then lowers the sum due,
    # and its share is owed back like any pet cancelled from a paid group.
    asked_before_a_cancel = amount == record.amount and amount > due
    if (amount != due and not asked_before_a_cancel) or currency.upper() != payer.currency.upper():
        logger.error(
            "group payment %s of %s %s does not match the group's unpaid bookings (%s %s)",
            payment_id,
            amount,
            currency,
            due,
            payer.currency,
        )
        booking_history_note(
            booking=payer,
            reason=f"payment {payment_id} of {amount} {currency} does not match the group's "
            f"unpaid bookings ({due} {payer.currency}); refund requested",
        )
        payment_refund_request(record=record)
        return "amount_mismatch"
    for booking in unpaid:
        _booking_paid(booking=booking, payment_id=payment_id)
    if asked_before_a_cancel:
        booking_history_note(
            booking=payer,
            reason=f"{PARTIAL_REFUND_OWED}: {amount - due} {currency} of group payment "
            f"{payment_id} for pets cancelled after the payment started; the payment is "
            "refunded whole when the group's last booking is cancelled, until then the clinic "
            "settles it",
        )
    return "confirmed"


def _booking_paid(*, booking: Booking, payment_id: str | None) -> None:
    """An unpaid booking whose payment succeeded: BookingPaid, then BookingConfirmed."""
    booking_transition(
        booking=booking,
        to_status=BookingStatus.CONFIRMED,
        actor=SYSTEM,
        event_type="BookingPaid",
        extra_data={"payment_id": payment_id},
        then=[
            BookingEvent(
                "BookingConfirmed",
                BookingStatus.PENDING_PAYMENT,
                extra_data={"payment_id": payment_id},
            )
        ],
    )


def _apply_failure(*, record: PaymentRecord, payload: dict[str, Any]) -> str:
    """The provider says the payment failed: the record says so; the booking stays payable."""
    if record.status not in LIVE_STATUSES:
        return "already_applied"
    _record_status(record, PaymentStatus.FAILED, payload)
    return "failed"


def _record_status(record: PaymentRecord, status: str, payload: dict[str, Any]) -> None:
    record.status = status
    record.last_payload = payload
    record.version += 1
    record.save(update_fields=["status", "last_payload", "version", "updated_at"])


def _apply_success(
    *,
    booking: Booking,
    slot: Slot,
    record: PaymentRecord,
    amount: Decimal,
    currency: str,
    payload: dict[str, Any],
) -> str:
    if record.status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
        return "already_applied"
    _record_status(record, PaymentStatus.SUCCEEDED, payload)
    payment_id = record.payment_id
    if amount != booking.amount or currency.upper() != booking.currency.upper():
        # The money was taken, but not what the booking costs: give it back, keep the booking
        # payable, and leave a trace for support.
        logger.error(
            "payment %s of %s %s does not match booking %s (%s %s)",
            payment_id,
            amount,
            currency,
            booking.reference,
            booking.amount,
            booking.currency,
        )
        booking_history_note(
            booking=booking,
            reason=f"payment {payment_id} of {amount} {currency} does not match the booking "
            f"({booking.amount} {booking.currency}); refund requested",
        )
        payment_refund_request(record=record)
        return "amount_mismatch"
    if booking.status == BookingStatus.PENDING_PAYMENT:
        _booking_paid(booking=booking, payment_id=payment_id)
        return "confirmed"
    if booking.status == BookingStatus.CANCELLED:
        return _apply_late_success(booking=booking, slot=slot, record=record)
    # Already paid (confirmed, completed, no-show): a second payment is given back.
    booking_history_note(
        booking=booking,
        reason=f"second payment {payment_id} for an already paid booking; refund requested",
    )
    payment_refund_request(record=record)
    return "duplicate_payment_refunded"


def _apply_late_success(*, booking: Booking, slot: Slot, record: PaymentRecord) -> str:
    """A success for a cancelled booking (docs/payments.md, "Late payments"): when the deadline
    cancelled it and its slot still has room, the booking is taken again; otherwise the
    payment is refunded. Either way it is in the history and in the events."""
    payment_id = record.payment_id
    if (
        booking.cancel_reason == CancelReason.PAYMENT_DEADLINE
        and slot.status == SlotStatus.OPEN
        and slot.start_at > timezone.now()
    ):
        reservation_expire_stale(slot=slot)  # stale holds must not keep the payer out
        if slot_take_booking(slot_id=slot.id):
            booking_transition(
                booking=booking,
                to_status=BookingStatus.CONFIRMED,
                actor=SYSTEM,
                reason=LATE_PAYMENT_REASON,
                event_type="BookingPaid",
                extra_data={"payment_id": payment_id, "late": True},
                then=[
                    BookingEvent(
                        "BookingConfirmed",
                        BookingStatus.CANCELLED,
                        LATE_PAYMENT_REASON,
                        {"payment_id": payment_id},
                    )
                ],
                changes={"cancel_reason": CancelReason.NONE},
            )
            return "late_rebooked"
    booking_history_note(
        booking=booking,
        reason=f"{LATE_PAYMENT_REASON}: payment {payment_id} arrived after the booking was "
        "cancelled; refund requested",
    )
    booking_events_append(
        booking=booking,
        actor=SYSTEM,
        events=[
            BookingEvent(
                "BookingPaid",
                booking.status,
                LATE_PAYMENT_REASON,
                {"payment_id": payment_id, "late": True, "refund_requested": True},
            )
        ],
    )
    payment_refund_request(record=record)
    return "late_refunded"


# --- reconciliation --------------------------------------------------------------------------


def payment_reconcile(*, record_id: uuid.UUID | str) -> str:
    """Ask the provider about one payment (GET /payments/{id}) and apply its answer, exactly as
    a webhook would: a lost webhook still confirms the booking. Also the support action
    "re-check with provider". Raises PaymentServiceUnavailable when it cannot be asked."""
    key = uuid_or_none(record_id)
    record = PaymentRecord.objects.select_related("booking").filter(id=key).first() if key else None
    if record is None:
        raise NotFound("No such payment record.")
    if not record.payment_id:
        return "not_sent"  # the provider never answered its creation; nothing to ask
    state = payment_get(payment_id=record.payment_id)
    if state.status == PaymentStatus.PENDING:
        PaymentRecord.objects.filter(id=record.id, status__in=LIVE_STATUSES).update(
            last_payload=state.payload, updated_at=timezone.now()
        )
        return "still_pending"
    return _payment_apply(
        record=record,
        status=state.status,
        amount=state.amount,
        currency=state.currency,
        payload=state.payload,
        event_id=None,
    )


def payments_reconcile_stale(*, batch_size: int = JOB_BATCH) -> dict[str, int]:
    """The reconciliation job: every payment still pending PAYMENT_RECONCILE_AFTER_SECONDS
    after we last heard of it is asked about. Stops at the first provider outage; the payment
    it failed on goes to the back of the line (`updated_at`), so one payment the provider
    keeps failing on (a 5xx, an answer we cannot read) does not stop the others every run."""
    now = timezone.now()
    due = (
        PaymentRecord.objects.filter(
            status__in=LIVE_STATUSES,
            updated_at__lt=now - dt.timedelta(seconds=settings.PAYMENT_RECONCILE_AFTER_SECONDS),
            created_at__gt=now - RECONCILE_MAX_AGE,
        )
        .exclude(payment_id=None)
        .order_by("updated_at")
        .values_list("id", flat=True)[:batch_size]
    )
    counts: dict[str, int] = {}
    for record_id in list(due):
        try:
            outcome = payment_reconcile(record_id=record_id)
        except PaymentRejected as exc:
            logger.error("reconciliation of %s refused by the provider: %s", record_id, exc.details)
            PaymentRecord.objects.filter(id=record_id).update(updated_at=timezone.now())
            outcome = "rejected"
        except PaymentServiceUnavailable:
            PaymentRecord.objects.filter(id=record_id).update(updated_at=timezone.now())
            counts["provider_unavailable"] = counts.get("provider_unavailable", 0) + 1
            break
        except (VersionConflict, SlotBusy, InvalidTransition):
            outcome = "retry_later"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


# --- the payment deadline --------------------------------------------------------------------


def _reconcile_booking(*, booking_id: uuid.UUID) -> bool:
    """Last look before cancelling: a payment whose webhook was lost must confirm, not lose,
    the booking. True when the provider still processes one of its payments. Raises
    PaymentServiceUnavailable when the provider cannot be asked."""
    in_group = Booking.objects.filter(id=booking_id, group_id__isnull=False).values("group_id")
    records = (
        PaymentRecord.objects.filter(status__in=LIVE_STATUSES)
        .filter(Q(booking_id=booking_id) | Q(group_id__in=in_group))
        .exclude(payment_id=None)
    )
    processing = False
    for record_id in list(records.values_list("id", flat=True)):
        try:
            processing |= payment_reconcile(record_id=record_id) == "still_pending"
        except PaymentRejected as exc:
            logger.error("payment %s unknown to the provider: %s", record_id, exc.details)
    return processing


def booking_cancel_for_payment_deadline(*, booking_id: uuid.UUID | str) -> str:
    """Cancel one booking still unpaid at its deadline, freeing its unit (BookingCancelled,
    reason `payment_deadline`). Fenced on the version read here: a booking paid meanwhile
    is left alone. A booking of a pet group takes the group's other unpaid bookings with it
    (they share its payment). Returns "cancelled", "not_due", "changed" or "slot_busy"."""
    booking = Booking.objects.filter(id=booking_id).first()
    if booking is None or booking.status != BookingStatus.PENDING_PAYMENT:
        return "not_due"
    if timezone.now() < payment_deadline_of(booking):
        return "not_due"
    try:
        booking_cancel(
            actor=SYSTEM,
            booking_id=booking.id,
            reason=PAYMENT_DEADLINE_REASON,
            expected_version=booking.version,
            cancel_reason=CancelReason.PAYMENT_DEADLINE,
            scope=SCOPE_UNPAID_GROUP,
        )
    except (VersionConflict, InvalidTransition):
        return "changed"
    except SlotBusy:
        return "slot_busy"
    metrics.PAYMENTS.labels(outcome="deadline_cancelled").inc()
    return "cancelled"


def bookings_cancel_unpaid(*, batch_size: int = JOB_BATCH) -> dict[str, int]:
    """The deadline job: unpaid bookings past their deadline (payment_deadline.py) are
    cancelled, after one last look at the provider for each (skipped for the rest of the run
    once the provider is down: the late-payment path catches what that misses). One whose
    payment the provider still processes gets more time instead, up to the maximum."""
    due = (
        Booking.objects.filter(bookings_past_payment_deadline(now=timezone.now()))
        .order_by("created_at")
        .values_list("id", flat=True)[:batch_size]
    )
    ask_provider = True
    counts: dict[str, int] = {}
    for booking_id in list(due):
        processing = False
        if ask_provider:
            try:
                processing = _reconcile_booking(booking_id=booking_id)
            except PaymentServiceUnavailable:
                ask_provider = False
            except (VersionConflict, SlotBusy, InvalidTransition):
                pass
        if processing and payment_deadline_extend(booking_id=booking_id):
            outcome = "extended"
        else:
            outcome = booking_cancel_for_payment_deadline(booking_id=booking_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
