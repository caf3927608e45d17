"""A booking's life: confirm a hold into a booking, cancel, reschedule, complete, no-show.

Every status move goes through `booking_transition`: the transition table says which moves
exist, the UPDATE is fenced on the version and status the caller saw, and the history row and
the event are written in the same transaction (DESIGN.md §3, §4, §5).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from petpro_booking.core import metrics
from petpro_booking.core.db import run_serializable
from petpro_booking.core.errors import NotFound, ValidationFailed, VersionConflict
from petpro_booking.core.locking import lock_manager, slot_lock_key
from petpro_booking.core.principal import Principal
from petpro_booking.events.services import event_append
from reservations.events import appointment_data
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_expire_stale, reservation_mark_confirmed
from slots.errors import SlotUnavailable
from slots.models import Slot
from slots.services import slot_convert_hold, slot_return_booking, slot_take_booking

from ..errors import InvalidTransition, NotBookingManager, OutsideCancellationWindow
from ..limits import booking_limits_check
from ..models import Booking, BookingHistory, BookingStatus
from ..visit_rules import booking_close_check
from .refunds import payment_refund_schedule_if_paid

BOOKING_AGGREGATE = "booking"

# The only moves a booking's status can make. Reschedule keeps the status (see RESCHEDULABLE).
TRANSITIONS: dict[str, frozenset[str]] = {
    BookingStatus.PENDING_PAYMENT: frozenset({BookingStatus.CONFIRMED, BookingStatus.CANCELLED}),
    BookingStatus.CONFIRMED: frozenset(
        {BookingStatus.CANCELLED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW}
    ),
    # A payment that lands after the deadline cancelled the booking re-books it (payments).
    BookingStatus.CANCELLED: frozenset({BookingStatus.CONFIRMED}),
    BookingStatus.COMPLETED: frozenset(),
    BookingStatus.NO_SHOW: frozenset(),
}
# Moves only the service itself may make (never a person, through the API or admin).
SYSTEM_ONLY_TRANSITIONS = frozenset({(BookingStatus.CANCELLED, BookingStatus.CONFIRMED)})
RESCHEDULABLE = frozenset({BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED})
# Bookings in these statuses hold one unit of their slot's booked_count.
HOLDS_A_UNIT = frozenset(
    {
        BookingStatus.PENDING_PAYMENT,
        BookingStatus.CONFIRMED,
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
    }
)

REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
REFERENCE_LENGTH = 6
REFERENCE_ATTEMPTS = 5


def transition_allowed(*, from_status: str, to_status: str, actor: Principal) -> bool:
    if to_status not in TRANSITIONS.get(from_status, frozenset()):
        return False
    if (from_status, to_status) in SYSTEM_ONLY_TRANSITIONS:
        return actor.actor["type"] == "system"
    return True


def booking_reference_new() -> str:
    """`PP-` + 6 characters nobody misreads on the phone (31^6 ≈ 887 million codes)."""
    return "PP-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def booking_event_data(
    *,
    booking: Booking,
    from_status: str,
    reason: str = "",
    extra_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `data` of a booking event (events-contract.md): booking fields + appointment.

    Load `slot__clinic`, `slot__service` and `reservation` with the booking (select_related)
    or this costs three queries.
    """
    data: dict[str, Any] = {
        "booking_id": str(booking.id),
        "reference": booking.reference,
        "reservation_id": str(booking.reservation_id),
        "status": booking.status,
        "from_status": from_status,
        "amount": str(booking.amount),
        "currency": booking.currency,
        **appointment_data(
            slot=booking.slot,
            user_id=booking.user_id,
            pet_id=booking.pet_id,
            pet_name=booking.reservation.pet_name,
        ),
    }
    if reason:
        data["reason"] = reason
    if extra_data:
        data.update(extra_data)
    return data


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("booking changes must run inside the caller's transaction")


def booking_event_append(
    *,
    booking: Booking,
    event_type: str,
    actor: Principal,
    from_status: str,
    reason: str = "",
    extra_data: dict[str, Any] | None = None,
) -> None:
    """Append one booking event (for a second event of the same change, e.g. BookingPaid
    followed by BookingConfirmed). Runs inside the caller's transaction."""
    event_append(
        aggregate_type=BOOKING_AGGREGATE,
        aggregate_id=booking.id,
        event_type=event_type,
        data=booking_event_data(
            booking=booking, from_status=from_status, reason=reason, extra_data=extra_data
        ),
        actor=actor,
    )


def _history_write(
    *, booking: Booking, from_status: str, actor: Principal, reason: str, internal_note: str = ""
) -> None:
    who = actor.actor
    BookingHistory.objects.create(
        booking=booking,
        from_status=from_status,
        to_status=booking.status,
        actor_type=who["type"],
        actor_id=who["id"],
        reason=reason,
        internal_note=internal_note,
    )


def _fenced_write(
    *, booking: Booking, to_status: str, changes: dict[str, Any] | None = None
) -> None:
    """UPDATE the booking only if it still has the version and status the caller saw."""
    now = timezone.now()
    updated = Booking.objects.filter(
        id=booking.id, version=booking.version, status=booking.status
    ).update(status=to_status, version=F("version") + 1, updated_at=now, **(changes or {}))
    if updated != 1:
        current = Booking.objects.filter(id=booking.id).values("status", "version").first()
        if current is None:
            raise NotFound("No such booking.")
        if current["status"] != booking.status:
            raise InvalidTransition(
                f"The booking is {current['status']} now.",
                details={"status": current["status"], "requested": to_status},
            )
        raise VersionConflict(details={"current_version": current["version"]})
    booking.status = to_status
    booking.version += 1
    booking.updated_at = now
    for field, value in (changes or {}).items():
        setattr(booking, field, value)


def booking_transition(
    *,
    booking: Booking,
    to_status: str,
    actor: Principal,
    reason: str = "",
    event_type: str,
    extra_data: dict[str, Any] | None = None,
    internal_note: str = "",
) -> Booking:
    """Move `booking` to `to_status` if the transition table allows it, fenced on the
    version and status the caller read (a stale caller gets 409 invalid_transition when the
    status moved, 412 version_conflict otherwise), and write the history row and the event.

    Must run inside the caller's transaction, which also makes any counter change that goes
    with the move (freeing or taking a unit of the slot) — this helper touches no slot.
    """
    _require_transaction()
    from_status = booking.status
    if not transition_allowed(from_status=from_status, to_status=to_status, actor=actor):
        raise InvalidTransition(
            f"A {from_status} booking cannot become {to_status}.",
            details={"status": from_status, "requested": to_status},
        )
    _fenced_write(booking=booking, to_status=to_status)
    _history_write(
        booking=booking,
        from_status=from_status,
        actor=actor,
        reason=reason,
        internal_note=internal_note,
    )
    if internal_note:  # staff and support read it in the history; owners never (selectors)
        extra_data = {**(extra_data or {}), "internal_note": internal_note}
    booking_event_append(
        booking=booking,
        event_type=event_type,
        actor=actor,
        from_status=from_status,
        reason=reason,
        extra_data=extra_data,
    )
    transaction.on_commit(lambda: metrics.BOOKINGS.labels(change=to_status).inc())
    return booking


# --- reading a booking for a change ----------------------------------------------------------


def _slot_key(slot: Slot) -> str:
    return slot_lock_key(clinic_id=slot.clinic_id, service_id=slot.service_id, slot_id=slot.id)


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _booking_for_change(*, actor: Principal, booking_id: uuid.UUID | str) -> Booking:
    """The booking if `actor` may see it; 404 otherwise (never reveal others' bookings)."""
    key = _as_uuid(booking_id)
    booking = Booking.objects.select_related("slot").filter(id=key).first() if key else None
    if booking is None or not (
        booking.user_id == actor.sub or actor.can_manage_clinic(booking.clinic_id)
    ):
        raise NotFound("No such booking.")
    return booking


def _lock_slots(*slot_ids: uuid.UUID) -> dict[uuid.UUID, Slot]:
    """Row-lock the slots in id order (the one order every writer of two slots follows)."""
    return {
        slot.id: slot
        # of=("self",): lock the slot rows only, not their clinic and service rows (which
        # would queue every booking write of a clinic behind one another).
        for slot in Slot.objects.select_for_update(of=("self",))
        .select_related("clinic", "service")
        .filter(id__in=slot_ids)
        .order_by("id")
    }


def _lock_booking(
    *, seen: Booking, expected_version: int | None, slot: Slot | None = None
) -> Booking:
    """Row-lock the booking (after its slot: slot rows first, then the rows that count on
    them) and check what the caller saw: `If-Match`, and that it still sits on the slot whose
    locks we hold."""
    booking = (
        Booking.objects.select_for_update(of=("self",))
        .select_related("reservation")
        .get(id=seen.id)
    )
    if expected_version is not None and booking.version != expected_version:
        raise VersionConflict(details={"current_version": booking.version})
    if booking.slot_id != seen.slot_id:
        # Rescheduled by someone else since we read it: our locks are for another slot.
        raise VersionConflict(details={"current_version": booking.version})
    if slot is not None:
        booking.slot = slot
    return booking


def _check_change_rights(*, booking: Booking, actor: Principal, reason: str) -> None:
    """Staff of the clinic and support may always change a booking but must say why; the owner
    only until `cancellation_window_hours` before the start."""
    if actor.can_manage_clinic(booking.clinic_id):
        if not reason:
            raise ValidationFailed(
                "Staff and support must give a reason.",
                details={"reason": ["This field is required for staff and support."]},
            )
        return
    hours = booking.slot.service.cancellation_window_hours
    if timezone.now() > booking.slot.start_at - dt.timedelta(hours=hours):
        raise OutsideCancellationWindow(
            details={
                "cancellation_window_hours": hours,
                "start_at": booking.slot.start_at.isoformat(),
            }
        )


# --- confirm a hold into a booking -----------------------------------------------------------


def _booking_insert(*, reservation: Reservation, slot: Slot, status: str) -> Booking:
    """Insert the booking under a fresh reference, drawing again on the rare collision (a
    savepoint keeps the surrounding SERIALIZABLE transaction usable)."""
    for _ in range(REFERENCE_ATTEMPTS):
        try:
            with transaction.atomic():
                return Booking.objects.create(
                    reference=booking_reference_new(),
                    slot=slot,
                    reservation=reservation,
                    clinic_id=slot.clinic_id,
                    service_id=slot.service_id,
                    user_id=reservation.user_id,
                    pet_id=reservation.pet_id,
                    status=status,
                    amount=slot.service.price,
                    currency=slot.service.currency,
                )
        except IntegrityError as exc:
            if "reference" not in str(exc):
                raise
    raise RuntimeError("could not draw an unused booking reference")


def booking_confirm_reservation(*, actor: Principal, reservation_id: uuid.UUID | str) -> Booking:
    """Turn the caller's held, unexpired reservation into a booking: the held unit of the slot
    becomes a booked one. `pending_payment` when the service needs payment, else `confirmed`.

    409 reservation_expired past expiry, reservation_not_held when released or expired,
    invalid_transition when it is already confirmed.
    """
    key = _as_uuid(reservation_id)
    seen = Reservation.objects.select_related("slot").filter(id=key).first() if key else None
    if seen is None or seen.user_id != actor.sub:
        raise NotFound("No such reservation.")

    def decision() -> Booking:
        slot = _lock_slots(seen.slot_id)[seen.slot_id]
        reservation = Reservation.objects.select_for_update().get(id=seen.id)
        if reservation.status == ReservationStatus.CONFIRMED:
            made = Booking.objects.only("id", "reference").get(reservation_id=reservation.id)
            raise InvalidTransition(
                "This reservation is already confirmed into a booking.",
                details={
                    "status": reservation.status,
                    "requested": "confirmed",
                    "booking_id": str(made.id),
                    "reference": made.reference,
                },
            )
        # Fenced on the version, status and expiry seen here: if the expiry job took the hold
        # first, this fails and nothing below happens.
        status = (
            BookingStatus.PENDING_PAYMENT
            if slot.service.requires_payment
            else BookingStatus.CONFIRMED
        )
        booking_limits_check(reservation=reservation, slot=slot, status=status)  # fair use
        reservation = reservation_mark_confirmed(reservation=reservation, slot=slot, actor=actor)
        slot_convert_hold(slot_id=slot.id)
        booking = _booking_insert(reservation=reservation, slot=slot, status=status)
        booking.slot, booking.reservation = slot, reservation
        _history_write(booking=booking, from_status="", actor=actor, reason="")
        booking_event_append(
            booking=booking, event_type="BookingCreated", actor=actor, from_status=""
        )
        if status == BookingStatus.CONFIRMED:
            booking_event_append(
                booking=booking, event_type="BookingConfirmed", actor=actor, from_status=""
            )
        transaction.on_commit(lambda: metrics.BOOKINGS.labels(change="created").inc())
        return booking

    with lock_manager().acquire(_slot_key(seen.slot)):
        return run_serializable(decision, name="booking_confirm")


# --- cancel ----------------------------------------------------------------------------------


def booking_cancel(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    reason: str = "",
    expected_version: int | None = None,
    internal_note: str = "",
) -> Booking:
    """Cancel and give the unit back to the slot. Owners within the cancellation window;
    staff of the clinic and support always, with a reason (shown to the owner) and, if they
    like, an internal note (never shown to the owner)."""
    seen = _booking_for_change(actor=actor, booking_id=booking_id)
    reason = reason.strip()

    def decision() -> Booking:
        slot = _lock_slots(seen.slot_id)[seen.slot_id]
        booking = _lock_booking(seen=seen, expected_version=expected_version, slot=slot)
        if not transition_allowed(
            from_status=booking.status, to_status=BookingStatus.CANCELLED, actor=actor
        ):
            raise InvalidTransition(
                f"A {booking.status} booking cannot be cancelled.",
                details={"status": booking.status, "requested": BookingStatus.CANCELLED},
            )
        _check_change_rights(booking=booking, actor=actor, reason=reason)
        slot_return_booking(slot_id=slot.id)
        # A paid booking's payment is owed back; refunded after commit (payments helper).
        refund_requested = payment_refund_schedule_if_paid(booking=booking)
        return booking_transition(
            booking=booking,
            to_status=BookingStatus.CANCELLED,
            actor=actor,
            reason=reason,
            event_type="BookingCancelled",
            extra_data={"refund_requested": refund_requested},
            internal_note=internal_note.strip() if not actor.is_owner else "",
        )

    with lock_manager().acquire(_slot_key(seen.slot)):
        return run_serializable(decision, name="booking_cancel")


# --- reschedule ------------------------------------------------------------------------------


def booking_reschedule(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    slot_id: uuid.UUID | str,
    reason: str = "",
    expected_version: int | None = None,
) -> Booking:
    """Move the booking to another slot of the same clinic and service, keeping its status
    and payment. Both slots are locked in one fixed order (Redis keys sorted, rows by id), so
    two reschedules crossing the same pair of slots queue instead of deadlocking."""
    seen = _booking_for_change(actor=actor, booking_id=booking_id)
    reason = reason.strip()
    target_id = _as_uuid(slot_id)
    target = Slot.objects.filter(id=target_id).first() if target_id else None
    if target is None:
        raise ValidationFailed(details={"slot_id": ["No such slot."]})
    if target.clinic_id != seen.clinic_id or target.service_id != seen.service_id:
        raise ValidationFailed(
            details={"slot_id": ["Must be a slot of the same clinic and service."]}
        )
    if target.id == seen.slot_id:
        raise ValidationFailed(details={"slot_id": ["The booking is already on this slot."]})
    if target.start_at <= timezone.now():
        raise ValidationFailed(details={"slot_id": ["This slot has already started."]})

    def decision() -> Booking:
        slots = _lock_slots(seen.slot_id, target.id)
        previous, new_slot = slots[seen.slot_id], slots[target.id]
        booking = _lock_booking(seen=seen, expected_version=expected_version, slot=previous)
        if booking.status not in RESCHEDULABLE:
            raise InvalidTransition(
                f"A {booking.status} booking cannot be rescheduled.",
                details={"status": booking.status, "requested": "reschedule"},
            )
        _check_change_rights(booking=booking, actor=actor, reason=reason)
        # Holds past their expiry must not keep the booking out (DESIGN.md §3).
        reservation_expire_stale(slot=new_slot)
        if not slot_take_booking(slot_id=new_slot.id):
            raise SlotUnavailable()
        slot_return_booking(slot_id=previous.id)
        status = booking.status
        _fenced_write(booking=booking, to_status=status, changes={"slot_id": new_slot.id})
        booking.slot = new_slot
        _history_write(booking=booking, from_status=status, actor=actor, reason=reason)
        booking_event_append(
            booking=booking,
            event_type="BookingRescheduled",
            actor=actor,
            from_status=status,
            reason=reason,
            extra_data={
                "previous_slot_id": str(previous.id),
                "previous_start_at": previous.start_at.isoformat(),
                "previous_start_local": previous.start_at.astimezone(
                    ZoneInfo(previous.clinic.timezone)
                ).isoformat(),
            },
        )
        transaction.on_commit(lambda: metrics.BOOKINGS.labels(change="rescheduled").inc())
        return booking

    # acquire() takes the keys in sorted order whatever order they are given in.
    with lock_manager().acquire(_slot_key(seen.slot), _slot_key(target)):
        return run_serializable(decision, name="booking_reschedule")


# --- complete / no-show ----------------------------------------------------------------------


def _booking_close(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    to_status: str,
    event_type: str,
    reason: str,
    expected_version: int | None,
) -> Booking:
    seen = _booking_for_change(actor=actor, booking_id=booking_id)
    if not actor.can_manage_clinic(seen.clinic_id):
        raise NotBookingManager()

    def decision() -> Booking:
        slot = Slot.objects.select_related("clinic", "service").get(id=seen.slot_id)
        booking = _lock_booking(seen=seen, expected_version=expected_version, slot=slot)
        booking_close_check(booking=booking, slot=slot, to_status=to_status, now=timezone.now())
        return booking_transition(
            booking=booking,
            to_status=to_status,
            actor=actor,
            reason=reason.strip(),
            event_type=event_type,
        )

    return run_serializable(decision, name=f"booking_{to_status}")


def booking_complete(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    reason: str = "",
    expected_version: int | None = None,
) -> Booking:
    """Staff and support mark a confirmed booking as attended; the unit stays used."""
    return _booking_close(
        actor=actor,
        booking_id=booking_id,
        to_status=BookingStatus.COMPLETED,
        event_type="BookingCompleted",
        reason=reason,
        expected_version=expected_version,
    )


def booking_mark_no_show(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    reason: str = "",
    expected_version: int | None = None,
) -> Booking:
    """Staff and support mark a confirmed booking as missed; the unit stays used."""
    return _booking_close(
        actor=actor,
        booking_id=booking_id,
        to_status=BookingStatus.NO_SHOW,
        event_type="BookingNoShow",
        reason=reason,
        expected_version=expected_version,
    )
