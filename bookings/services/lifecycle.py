"""A booking's life: confirm a hold into a booking, cancel, reschedule, complete, no-show.

Every status move goes through `booking_transition`: the transition table says which moves
exist, the UPDATE is fenced on the version and status the caller saw, and the history row and
the event are written in the same transaction (DESIGN.md §3, §4, §5).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from petpro_booking.core import metrics
from petpro_booking.core.errors import NotFound, VersionConflict
from petpro_booking.core.principal import Principal
from petpro_booking.events.services import event_append
from reservations.events import appointment_data

from ..errors import InvalidTransition
from ..models import Booking, BookingHistory, BookingStatus

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


def _history_write(*, booking: Booking, from_status: str, actor: Principal, reason: str) -> None:
    who = actor.actor
    BookingHistory.objects.create(
        booking=booking,
        from_status=from_status,
        to_status=booking.status,
        actor_type=who["type"],
        actor_id=who["id"],
        reason=reason,
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
    _history_write(booking=booking, from_status=from_status, actor=actor, reason=reason)
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
