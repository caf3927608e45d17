"""A booking's life: confirm a hold into a booking, cancel, reschedule, complete, no-show.

Each change is one slot write (`slots.locking.slot_write`: Redis lock, SERIALIZABLE
transaction, slot rows locked) whose `decide` checks, decides and writes; the status move,
history row and events are `history.py`'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import secrets
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Model, Q
from django.utils import timezone
from django.utils.translation import gettext

from petpro_booking.core import metrics
from petpro_booking.core.db import RetryTransaction, RowInserter
from petpro_booking.core.errors import NotFound, ValidationFailed, VersionConflict
from petpro_booking.core.http import uuid_or_none
from petpro_booking.core.logging import bind_log_context
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from petpro_booking.events.services import events_insert
from reservations.errors import ReservationNotHeld
from reservations.limits import fair_use_guard
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_expire_stale, reservation_mark_confirmed
from slots.errors import SlotUnavailable
from slots.locking import SlotRef, slot_write
from slots.models import Slot
from slots.rules import SLOT_STARTED, SlotStarted, cancellation_window_hours, slot_hold_check
from slots.services import slot_convert_hold, slot_return_booking, slot_take_booking

from ..errors import InvalidTransition, NotBookingManager, OutsideCancellationWindow
from ..limits import booking_group_limits_check, booking_limits_check, booking_move_limits_check
from ..models import Booking, BookingHistory, BookingStatus, CancelReason
from ..visit_rules import booking_close_check
from .history import (
    RESCHEDULABLE,
    BookingEvent,
    booking_change_record,
    booking_events_new,
    booking_history_new,
    booking_transition,
    transition_allowed,
)
from .refunds import payment_refund_schedule_if_paid

# What a change of a pet group's booking acts on (issue 15): this pet, or the whole group.
SCOPE_BOOKING = "booking"
SCOPE_GROUP = "group"
# The payment deadline's own scope: the group's bookings still unpaid (they share a payment).
SCOPE_UNPAID_GROUP = "unpaid_group"

REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
REFERENCE_LENGTH = 6
# Every confirm inserts a booking and its history row: their INSERTs are built once.
_BOOKING_INSERT = RowInserter(Booking)
_HISTORY_INSERT = RowInserter(BookingHistory)


def booking_reference_new() -> str:
    """`PP-` + 6 characters nobody misreads on the phone (31^6 ≈ 887 million codes)."""
    return "PP-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


# --- reading a booking for a change ----------------------------------------------------------


def _booking_for_change(*, actor: Principal, booking_id: uuid.UUID | str) -> Booking:
    """The booking if `actor` may see it; 404 otherwise (never reveal others' bookings)."""
    key = uuid_or_none(booking_id)
    booking = Booking.objects.select_related("slot").filter(id=key).first() if key else None
    if booking is None or not (
        booking.user_id == actor.sub or actor.can_manage_clinic(booking.clinic_id)
    ):
        raise NotFound("No such booking.")
    return booking


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
    hours = cancellation_window_hours(booking.slot.service)
    if timezone.now() > booking.slot.start_at - dt.timedelta(hours=hours):
        raise OutsideCancellationWindow(
            details={
                "cancellation_window_hours": hours,
                "start_at": booking.slot.start_at.isoformat(),
            }
        )


def _staff_note(note: str, *, booking: Booking, actor: Principal) -> str:
    """The internal note of a change by staff of the booking's clinic or support; an owner
    (also one whose token has the staff role for another clinic) writes none."""
    return note.strip() if actor.can_manage_clinic(booking.clinic_id) else ""


# --- confirm a hold into a booking -----------------------------------------------------------


def _booking_new(
    *,
    reservation: Reservation,
    slot: Slot,
    status: str,
    event_version: int,
    group_id: uuid.UUID | None = None,
) -> Booking:
    """A booking of `reservation`, not yet written, under a fresh reference (a clash runs the
    whole slot write again: `_reference_clash_retried`). `event_version`: how many events the
    caller appends for its creation. A new booking has no payment yet (`payment_status` "none"
    without a query)."""
    booking = Booking(
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
        event_version=event_version,
        group_id=group_id,
    )
    setattr(booking, "latest_payment_status", None)  # noqa: B010 - read by payment_status_of
    return booking


@contextlib.contextmanager
def _reference_clash_retried() -> Iterator[None]:
    """A booking INSERT whose reference is taken runs the whole slot write again with another
    draw (RetryTransaction: no savepoint and its two round trips on every confirm)."""
    try:
        yield
    except IntegrityError as exc:
        if "reference" not in str(exc):
            raise
        raise RetryTransaction("booking reference taken") from exc


def booking_confirm_reservation(*, actor: Principal, reservation_id: uuid.UUID | str) -> Booking:
    """Turn the caller's held, unexpired reservation into a booking: the held unit of the slot
    becomes a booked one. `pending_payment` when the service needs payment, else `confirmed`.

    409 reservation_expired past expiry, reservation_not_held when released or expired,
    invalid_transition when it is already confirmed.
    """
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    key = uuid_or_none(reservation_id)
    seen = (
        Reservation.objects.select_related("slot__clinic", "slot__service").filter(id=key).first()
        if key
        else None
    )
    if seen is None or seen.user_id != actor.sub:
        raise NotFound("No such reservation.")
    if seen.group_id is not None:
        return _booking_confirm_group(actor=actor, seen=seen)

    def decide(slot: Slot) -> Booking:
        # Fenced on the version, status and expiry read before the lock (a held hold's version
        # never changes): if the expiry job or another confirm took the hold first, this fails
        # and nothing below happens.
        status = (
            BookingStatus.PENDING_PAYMENT
            if slot.service.requires_payment
            else BookingStatus.CONFIRMED
        )
        appended: list[Event] = []
        reservation = _mark_confirmed(reservation=seen, slot=slot, actor=actor, events=appended)
        (booking,) = _bookings_of_holds(
            slot=slot, reservations=[reservation], status=status, actor=actor, appended=appended
        )
        transaction.on_commit(lambda: metrics.BOOKINGS.labels(change="created").inc())
        return booking

    # Fair use (issue 12): counted under the owner's lock, taken with the slot's.
    with fair_use_guard(actor.sub, seen.slot):
        if seen.status == ReservationStatus.HELD:  # else the write says why (e.g. confirmed)
            booking_limits_check(reservation=seen)
        booking = slot_write(seen.slot, name="booking_confirm", decide=decide)
    bind_log_context(bookingId=str(booking.id))  # the rest of the request's lines name it
    return booking


def _bookings_of_holds(
    *,
    slot: Slot,
    reservations: list[Reservation],
    status: str,
    actor: Principal,
    appended: list[Event],
    group_id: uuid.UUID | None = None,
) -> list[Booking]:
    """The bookings of holds just confirmed (`reservations`, their events in `appended`), in two
    statements whatever their number: the held units converted with the bookings and their
    history rows in one, then every event in one INSERT, the holds' first and each booking's in
    its order (the relay publishes by id; the INSERTs of the gated statement run in no set
    order, so the events are not among them)."""
    events = [BookingEvent("BookingCreated", "")]
    if status == BookingStatus.CONFIRMED:
        events.append(BookingEvent("BookingConfirmed", ""))
    bookings: list[Booking] = []
    rows: list[tuple[RowInserter[Any], Model]] = []
    for reservation in reservations:
        booking = _booking_new(
            reservation=reservation,
            slot=slot,
            status=status,
            event_version=len(events),
            group_id=group_id,
        )
        booking.slot, booking.reservation = slot, reservation
        bookings.append(booking)
        history = booking_history_new(booking=booking, from_status="", actor=actor, reason="")
        rows += [(_BOOKING_INSERT, booking), (_HISTORY_INSERT, history)]
    with _reference_clash_retried():
        slot_convert_hold(slot_id=slot.id, count=len(bookings), rows=rows)
    for booking in bookings:
        appended += booking_events_new(booking=booking, actor=actor, events=events, after=0)
    events_insert(appended)
    return bookings


def _mark_confirmed(
    *, reservation: Reservation, slot: Slot, actor: Principal, events: list[Event] | None = None
) -> Reservation:
    """The fenced confirm of one hold; a hold already confirmed is 409 invalid_transition
    naming its booking. `events`: see `reservation_mark_confirmed`."""
    try:
        return reservation_mark_confirmed(
            reservation=reservation, slot=slot, actor=actor, events=events
        )
    except ReservationNotHeld as exc:
        if exc.details.get("status") != ReservationStatus.CONFIRMED:
            raise
        made = Booking.objects.only("id", "reference").get(reservation_id=reservation.id)
        raise InvalidTransition(
            "This reservation is already confirmed into a booking.",
            details={
                "status": ReservationStatus.CONFIRMED,
                "requested": "confirmed",
                "booking_id": str(made.id),
                "reference": made.reference,
            },
        ) from None


def _booking_confirm_group(*, actor: Principal, seen: Reservation) -> Booking:
    """Confirm every hold of `seen`'s pet group at once (issue 15), all or nothing: one slot
    write converts the group's units and creates one booking per pet, sharing the group id.
    Holds the owner released one by one are left out; one expired (or past its expiry) is
    409 reservation_expired and nothing is booked. Returns the booking of `seen`."""

    def decide(slot: Slot) -> Booking:
        status = (
            BookingStatus.PENDING_PAYMENT
            if slot.service.requires_payment
            else BookingStatus.CONFIRMED
        )
        members = list(
            Reservation.objects.filter(group_id=seen.group_id)
            .exclude(~Q(id=seen.id), status=ReservationStatus.RELEASED)
            .order_by("created_at", "id")
        )
        # The named hold first: already confirmed (or released) says so before anything else.
        named = next(member for member in members if member.id == seen.id)
        appended: list[Event] = []
        confirmed = {
            seen.id: _mark_confirmed(reservation=named, slot=slot, actor=actor, events=appended)
        }
        for member in members:
            if member.id != seen.id:
                confirmed[member.id] = _mark_confirmed(
                    reservation=member, slot=slot, actor=actor, events=appended
                )
        bookings = _bookings_of_holds(
            slot=slot,
            reservations=[confirmed[member.id] for member in members],  # in the pets' order
            status=status,
            actor=actor,
            appended=appended,
            group_id=seen.group_id,
        )
        count = len(bookings)
        transaction.on_commit(lambda: metrics.BOOKINGS.labels(change="created").inc(count))
        return next(booking for booking in bookings if booking.reservation_id == seen.id)

    held = list(
        Reservation.objects.select_related("slot__clinic", "slot__service").filter(
            group_id=seen.group_id, status=ReservationStatus.HELD
        )
    )
    # Fair use (issue 12): counted under the owner's lock, taken with the slot's.
    with fair_use_guard(actor.sub, seen.slot):
        if held:  # none held: the write says why (already confirmed, expired, released)
            booking_group_limits_check(reservations=held)
        return slot_write(seen.slot, name="booking_confirm_group", decide=decide)


# --- cancel ----------------------------------------------------------------------------------


def booking_cancel(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    reason: str = "",
    expected_version: int | None = None,
    cancel_reason: str = CancelReason.REQUESTED,
    internal_note: str = "",
    scope: str = SCOPE_BOOKING,
) -> Booking:
    """Cancel and give the unit back to the slot. Owners within the cancellation window;
    staff of the clinic and support always, with a reason (shown to the owner) and, if they
    like, an internal note (never shown to the owner). `cancel_reason` records why where
    behaviour depends on it (the payment deadline job passes PAYMENT_DEADLINE).

    A booking of a pet group: `scope` "booking" cancels this pet only (the others stay),
    "group" every booking of the group that can still be cancelled, in one change."""
    seen = _booking_for_change(actor=actor, booking_id=booking_id)
    actor = actor.at_clinic(seen.clinic_id)
    reason = reason.strip()
    if scope in (SCOPE_GROUP, SCOPE_UNPAID_GROUP) and seen.group_id is not None:
        return _booking_cancel_group(
            actor=actor,
            seen=seen,
            reason=reason,
            expected_version=expected_version,
            cancel_reason=cancel_reason,
            internal_note=internal_note,
            unpaid_only=scope == SCOPE_UNPAID_GROUP,
        )

    def decide(slot: Slot) -> Booking:
        booking = _lock_booking(seen=seen, expected_version=expected_version, slot=slot)
        if not transition_allowed(
            from_status=booking.status, to_status=BookingStatus.CANCELLED, actor=actor
        ):
            raise InvalidTransition(
                gettext("A %(status)s booking cannot be cancelled.") % {"status": booking.status},
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
            changes={"cancel_reason": cancel_reason},
            internal_note=_staff_note(internal_note, booking=booking, actor=actor),
        )

    return slot_write(seen.slot, name="booking_cancel", decide=decide)


def _group_slots(seen: Booking, members: list[Booking], *extra: Slot) -> list[SlotRef | Slot]:
    """The slots the group's bookings sit on (a pet rescheduled alone has its own), plus
    `extra`: what a group change locks. The gateway sorts them."""
    refs: dict[object, SlotRef | Slot] = {
        member.slot_id: SlotRef(member.slot_id, member.clinic_id, member.service_id)
        for member in [seen, *members]
    }
    for slot in extra:
        refs[slot.id] = slot
    return list(refs.values())


def _lock_group(
    *, seen: Booking, expected_version: int | None, slots: tuple[Slot, ...]
) -> list[Booking]:
    """Row-lock every booking of `seen`'s group (after the slot rows, in id order), check the
    caller's `If-Match` on `seen`, and that none moved to a slot whose lock we do not hold."""
    by_id = {slot.id: slot for slot in slots}
    members = list(
        Booking.objects.select_for_update(of=("self",))
        .select_related("reservation")
        .filter(group_id=seen.group_id)
        .order_by("id")
    )
    for member in members:
        stale = expected_version is not None and member.version != expected_version
        if member.id == seen.id and stale:
            raise VersionConflict(details={"current_version": member.version})
        if member.slot_id not in by_id:  # moved meanwhile: our locks are for other slots
            raise VersionConflict(details={"current_version": member.version})
        member.slot = by_id[member.slot_id]
    members.sort(key=lambda member: (member.created_at, member.id))
    return members


def _booking_cancel_group(
    *,
    actor: Principal,
    seen: Booking,
    reason: str,
    expected_version: int | None,
    cancel_reason: str,
    internal_note: str,
    unpaid_only: bool = False,
) -> Booking:
    """Cancel every booking of `seen`'s group that can be cancelled (`unpaid_only`: every
    one still `pending_payment`), all or nothing (one outside the cancellation window refuses
    the whole change). The group's payment is refunded once, when no booking of the group
    uses it any more."""
    members = list(Booking.objects.filter(group_id=seen.group_id))

    def decide(*slots: Slot) -> Booking:
        group = _lock_group(seen=seen, expected_version=expected_version, slots=slots)
        cancelling = [
            booking
            for booking in group
            if transition_allowed(
                from_status=booking.status, to_status=BookingStatus.CANCELLED, actor=actor
            )
            and (booking.status == BookingStatus.PENDING_PAYMENT or not unpaid_only)
        ]
        named = next(booking for booking in group if booking.id == seen.id)
        if not cancelling:
            raise InvalidTransition(
                gettext("No booking of this group can be cancelled (this one is %(status)s).")
                % {"status": named.status},
                details={"status": named.status, "requested": BookingStatus.CANCELLED},
            )
        for booking in cancelling:
            _check_change_rights(booking=booking, actor=actor, reason=reason)
        leaving = [booking.id for booking in cancelling]
        refund_requested = payment_refund_schedule_if_paid(booking=cancelling[0], leaving=leaving)
        for booking in cancelling:
            slot_return_booking(slot_id=booking.slot_id)
            booking_transition(
                booking=booking,
                to_status=BookingStatus.CANCELLED,
                actor=actor,
                reason=reason,
                event_type="BookingCancelled",
                extra_data={"refund_requested": refund_requested, "scope": SCOPE_GROUP},
                changes={"cancel_reason": cancel_reason},
                internal_note=_staff_note(internal_note, booking=booking, actor=actor),
            )
        return named

    return slot_write(*_group_slots(seen, members), name="booking_cancel_group", decide=decide)


# --- reschedule ------------------------------------------------------------------------------


def booking_reschedule(
    *,
    actor: Principal,
    booking_id: uuid.UUID | str,
    slot_id: uuid.UUID | str,
    reason: str = "",
    expected_version: int | None = None,
    scope: str = SCOPE_BOOKING,
) -> Booking:
    """Move the booking to another slot of the same clinic and service, keeping its status
    and payment. Both slots are locked in one fixed order (Redis keys sorted, rows by id), so
    two reschedules crossing the same pair of slots queue instead of deadlocking.

    A booking of a pet group: `scope` "booking" moves this pet alone (it keeps its group for
    payment and group changes), "group" moves every booking of the group that can be
    rescheduled onto the target together, all or nothing (one unit each on the target)."""
    seen = _booking_for_change(actor=actor, booking_id=booking_id)
    actor = actor.at_clinic(seen.clinic_id)
    reason = reason.strip()
    target_id = uuid_or_none(slot_id)
    target = (
        Slot.objects.select_related("clinic", "service").filter(id=target_id).first()
        if target_id
        else None
    )
    if target is None:
        raise ValidationFailed(details={"slot_id": ["No such slot."]})
    if target.clinic_id != seen.clinic_id or target.service_id != seen.service_id:
        raise ValidationFailed(
            details={"slot_id": ["Must be a slot of the same clinic and service."]}
        )
    if target.id == seen.slot_id:
        raise ValidationFailed(details={"slot_id": ["The booking is already on this slot."]})
    now = timezone.now()
    if target.start_at <= now:
        raise SlotStarted(details={"reason": SLOT_STARTED, "start_at": target.start_at.isoformat()})
    move = functools.partial(
        _booking_reschedule,
        actor=actor,
        seen=seen,
        target=target,
        reason=reason,
        expected_version=expected_version,
        scope=scope,
    )
    if actor.can_manage_clinic(seen.clinic_id):
        return move()
    # The owner moves into a slot as a hold would take it: the booking rules (notice, horizon,
    # clinic and service active) and the pet's bookings per day, counted under the owner's
    # lock (fair use); staff and support may place a visit where the rules would not. What
    # the booking itself refuses comes first (checked again under the locks).
    group_move = scope == SCOPE_GROUP and seen.group_id is not None
    if expected_version is not None and seen.version != expected_version:
        raise VersionConflict(details={"current_version": seen.version})
    if not group_move and seen.status not in RESCHEDULABLE:
        raise InvalidTransition(
            gettext("A %(status)s booking cannot be rescheduled.") % {"status": seen.status},
            details={"status": seen.status, "requested": "reschedule"},
        )
    slot_hold_check(slot=target, now=now)
    members, moving = [seen], [seen]
    if group_move:
        members = list(Booking.objects.filter(group_id=seen.group_id))
        moving = [
            member
            for member in members
            if member.status in RESCHEDULABLE and member.slot_id != target.id
        ] or [seen]
    # Every slot the write below locks, taken with the owner's lock (it does not take them
    # again), so the count and the move see the same bookings.
    with fair_use_guard(actor.sub, *_group_slots(seen, members, target)):
        booking_move_limits_check(moving=moving, target=target)
        return move(members=members if group_move else None)


def _booking_reschedule(
    *,
    actor: Principal,
    seen: Booking,
    target: Slot,
    reason: str,
    expected_version: int | None,
    scope: str,
    members: list[Booking] | None = None,
) -> Booking:
    if scope == SCOPE_GROUP and seen.group_id is not None:
        return _booking_reschedule_group(
            actor=actor,
            seen=seen,
            target=target,
            reason=reason,
            expected_version=expected_version,
            members=members,
        )

    def decide(previous: Slot, new_slot: Slot) -> Booking:
        booking = _lock_booking(seen=seen, expected_version=expected_version, slot=previous)
        if booking.status not in RESCHEDULABLE:
            raise InvalidTransition(
                gettext("A %(status)s booking cannot be rescheduled.") % {"status": booking.status},
                details={"status": booking.status, "requested": "reschedule"},
            )
        _check_change_rights(booking=booking, actor=actor, reason=reason)
        # Holds past their expiry must not keep the booking out: they no longer count.
        reservation_expire_stale(slot=new_slot)
        if not slot_take_booking(slot_id=new_slot.id):
            raise SlotUnavailable()
        slot_return_booking(slot_id=previous.id)
        _booking_moved(
            booking=booking, previous=previous, new_slot=new_slot, actor=actor, reason=reason
        )
        transaction.on_commit(lambda: metrics.BOOKINGS.labels(change="rescheduled").inc())
        return booking

    # The gateway takes the Redis keys sorted and the rows by id, whatever the order here.
    return slot_write(seen.slot, target, name="booking_reschedule", decide=decide)


def _booking_moved(
    *, booking: Booking, previous: Slot, new_slot: Slot, actor: Principal, reason: str
) -> None:
    """Record a booking's move (its counters already moved): slot, history, event."""
    status = booking.status
    booking.slot = new_slot
    moved = BookingEvent(
        "BookingRescheduled",
        status,
        reason,
        {
            "previous_slot_id": str(previous.id),
            "previous_start_at": previous.start_at.isoformat(),
            "previous_start_local": previous.start_at.astimezone(
                ZoneInfo(previous.clinic.timezone)
            ).isoformat(),
        },
    )
    booking_change_record(
        booking=booking,
        to_status=status,
        actor=actor,
        reason=reason,
        events=[moved],
        changes={"slot_id": new_slot.id},
    )


def _booking_reschedule_group(
    *,
    actor: Principal,
    seen: Booking,
    target: Slot,
    reason: str,
    expected_version: int | None,
    members: list[Booking] | None = None,
) -> Booking:
    """Move every reschedulable booking of `seen`'s group onto `target`, all or nothing: the
    target must have a unit for each (one conditional UPDATE), or nothing moves. The group's
    slots and the target are locked together (the gateway sorts them). `members`: the group
    as the caller read it for the locks it already holds (an owner's, under fair use)."""
    if members is None:
        members = list(Booking.objects.filter(group_id=seen.group_id))

    def decide(*slots: Slot) -> Booking:
        group = _lock_group(seen=seen, expected_version=expected_version, slots=slots)
        new_slot = next(slot for slot in slots if slot.id == target.id)
        named = next(booking for booking in group if booking.id == seen.id)
        moving = [
            booking
            for booking in group
            if booking.status in RESCHEDULABLE and booking.slot_id != new_slot.id
        ]
        if not moving:
            raise InvalidTransition(
                gettext("No booking of this group can be rescheduled (this one is %(status)s).")
                % {"status": named.status},
                details={"status": named.status, "requested": "reschedule"},
            )
        for booking in moving:
            _check_change_rights(booking=booking, actor=actor, reason=reason)
        reservation_expire_stale(slot=new_slot)  # stale holds must not keep the group out
        if not slot_take_booking(slot_id=new_slot.id, count=len(moving)):
            raise SlotUnavailable(details={"slot_id": str(new_slot.id), "requested": len(moving)})
        for booking in moving:
            previous = booking.slot
            slot_return_booking(slot_id=previous.id)
            _booking_moved(
                booking=booking, previous=previous, new_slot=new_slot, actor=actor, reason=reason
            )
        count = len(moving)
        transaction.on_commit(lambda: metrics.BOOKINGS.labels(change="rescheduled").inc(count))
        return named

    return slot_write(
        *_group_slots(seen, members, target), name="booking_reschedule_group", decide=decide
    )


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

    def decide(slot: Slot) -> Booking:
        booking = _lock_booking(seen=seen, expected_version=expected_version, slot=slot)
        booking_close_check(booking=booking, slot=slot, to_status=to_status, now=timezone.now())
        return booking_transition(
            booking=booking,
            to_status=to_status,
            actor=actor,
            reason=reason.strip(),
            event_type=event_type,
        )

    return slot_write(seen.slot, name=f"booking_{to_status}", decide=decide)


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
