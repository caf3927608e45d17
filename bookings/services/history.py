"""A booking's status machine and its record: the transition table, the fenced status move,
history rows and booking events (docs/bookings.md, docs/events.md).

Every status move goes through `booking_transition`: the transition table says which moves
exist, the UPDATE is fenced on the version and status the caller saw, and the history row and
the event are written in the same transaction. Facts without a status move (a refund, a second
payment) are `booking_history_note`s.

Event versions: `Booking.event_version` is the `aggregate_version` of the booking's last
event, read with the booking row (locked by the caller) and moved in the same statement that
changes the booking, so no `SELECT MAX(aggregate_version)` runs inside the SERIALIZABLE
transaction (its predicate locks on the shared index pages of `events` made holds and confirms
fail each other, issue 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from petpro_booking.core import metrics
from petpro_booking.core.errors import NotFound, VersionConflict
from petpro_booking.core.principal import SYSTEM, Principal
from petpro_booking.events.models import Event
from petpro_booking.events.services import event_new, event_write
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


@dataclass(frozen=True)
class BookingEvent:
    """One booking event to append: its type and what goes into its `data`."""

    event_type: str
    from_status: str
    reason: str = ""
    extra_data: dict[str, Any] = field(default_factory=dict)


def transition_allowed(*, from_status: str, to_status: str, actor: Principal) -> bool:
    if to_status not in TRANSITIONS.get(from_status, frozenset()):
        return False
    if (from_status, to_status) in SYSTEM_ONLY_TRANSITIONS:
        return actor.actor["type"] == "system"
    return True


def booking_event_data(
    *,
    booking: Booking,
    from_status: str,
    reason: str = "",
    extra_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `data` of a booking event (docs/events.md): booking fields + appointment.

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
    if booking.group_id is not None:
        data["group_id"] = str(booking.group_id)
    if reason:
        data["reason"] = reason
    if extra_data:
        data.update(extra_data)
    return data


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("booking changes must run inside the caller's transaction")


def booking_events_write(
    *, booking: Booking, actor: Principal, events: Sequence[BookingEvent], after: int
) -> int:
    """Append `events` numbered `after + 1, after + 2, ...`; returns the last number. The
    caller stores it in `Booking.event_version` in its own statement (insert or fenced
    UPDATE); `booking_events_append` does both for a change that moves no status."""
    for event in booking_events_new(booking=booking, actor=actor, events=events, after=after):
        event_write(event)
    return after + len(events)


def booking_events_new(
    *, booking: Booking, actor: Principal, events: Sequence[BookingEvent], after: int
) -> list[Event]:
    """`booking_events_write`'s events, not yet written: for a writer that inserts them with
    others in one INSERT (`events_insert`, the confirm)."""
    return [
        event_new(
            aggregate_type=BOOKING_AGGREGATE,
            aggregate_id=booking.id,
            event_type=event.event_type,
            data=booking_event_data(
                booking=booking,
                from_status=event.from_status,
                reason=event.reason,
                extra_data=event.extra_data,
            ),
            actor=actor,
            aggregate_version=after + number,
        )
        for number, event in enumerate(events, start=1)
    ]


def booking_events_append(
    *, booking: Booking, actor: Principal, events: Sequence[BookingEvent]
) -> None:
    """Append events of a change without a status move (a late payment refunded, a
    reminder). The booking row is locked by the caller; its `event_version` moves in one
    UPDATE, which also makes any SERIALIZABLE writer of the booking that waited on the lock
    retry on a fresh snapshot."""
    _require_transaction()
    last = booking_events_write(
        booking=booking, actor=actor, events=events, after=booking.event_version
    )
    Booking.objects.filter(id=booking.id).update(event_version=last)
    booking.event_version = last


def booking_history_write(
    *, booking: Booking, from_status: str, actor: Principal, reason: str, internal_note: str = ""
) -> None:
    """The history row of a change: from `from_status` to the booking's status now. `reason`
    is shown to the owner; `internal_note` only to staff and support."""
    booking_history_new(
        booking=booking,
        from_status=from_status,
        actor=actor,
        reason=reason,
        internal_note=internal_note,
    ).save(force_insert=True)


def booking_history_new(
    *, booking: Booking, from_status: str, actor: Principal, reason: str, internal_note: str = ""
) -> BookingHistory:
    """`booking_history_write`'s row, not yet written (the confirm inserts it in the statement
    that converts the held unit)."""
    who = actor.actor
    return BookingHistory(
        booking=booking,
        from_status=from_status,
        to_status=booking.status,
        actor_type=who["type"],
        actor_id=who["id"],
        reason=reason,
        internal_note=internal_note,
    )


def booking_history_note(*, booking: Booking, reason: str) -> None:
    """A history row that records a payment fact without a status move (from = to)."""
    booking_history_write(booking=booking, from_status=booking.status, actor=SYSTEM, reason=reason)


def booking_fenced_write(
    *, booking: Booking, to_status: str, events: int, changes: dict[str, Any] | None = None
) -> None:
    """UPDATE the booking only if it still has the version, status and event version the
    caller saw; moves `event_version` by `events` (the events the caller appends next)."""
    now = timezone.now()
    changes = {**(changes or {}), "event_version": booking.event_version + events}
    updated = Booking.objects.filter(
        id=booking.id,
        version=booking.version,
        status=booking.status,
        event_version=booking.event_version,
    ).update(status=to_status, version=F("version") + 1, updated_at=now, **changes)
    if updated != 1:
        current = Booking.objects.filter(id=booking.id).values("status", "version").first()
        if current is None:
            raise NotFound("No such booking.")
        if current["status"] != booking.status:
            raise InvalidTransition(
                gettext("The booking is %(status)s now.") % {"status": current["status"]},
                details={"status": current["status"], "requested": to_status},
            )
        raise VersionConflict(details={"current_version": current["version"]})
    booking.status = to_status
    booking.version += 1
    booking.updated_at = now
    for name, value in changes.items():
        setattr(booking, name, value)


def booking_change_record(
    *,
    booking: Booking,
    to_status: str,
    actor: Principal,
    reason: str,
    events: Sequence[BookingEvent],
    changes: dict[str, Any] | None = None,
    internal_note: str = "",
) -> Booking:
    """Write a change of the booking (fenced), its history row and its events, in the
    caller's transaction. No transition check: `booking_transition` is the status machine;
    reschedule (status kept, slot moved) calls this directly."""
    _require_transaction()
    from_status = booking.status
    after = booking.event_version
    booking_fenced_write(booking=booking, to_status=to_status, events=len(events), changes=changes)
    booking_history_write(
        booking=booking,
        from_status=from_status,
        actor=actor,
        reason=reason,
        internal_note=internal_note,
    )
    booking_events_write(booking=booking, actor=actor, events=events, after=after)
    return booking


def booking_transition(
    *,
    booking: Booking,
    to_status: str,
    actor: Principal,
    reason: str = "",
    event_type: str,
    extra_data: dict[str, Any] | None = None,
    then: Sequence[BookingEvent] = (),
    changes: dict[str, Any] | None = None,
    internal_note: str = "",
) -> Booking:
    """Move `booking` to `to_status` if the transition table allows it, fenced on the
    version and status the caller read (a stale caller gets 409 invalid_transition when the
    status moved, 412 version_conflict otherwise), and write the history row and the event
    (`event_type`, then the events of `then`, e.g. BookingPaid then BookingConfirmed).

    Must run inside the caller's transaction, which also makes any counter change that goes
    with the move (freeing or taking a unit of the slot) — this helper touches no slot.
    """
    from_status = booking.status
    if not transition_allowed(from_status=from_status, to_status=to_status, actor=actor):
        raise InvalidTransition(
            gettext("A %(status)s booking cannot become %(requested)s.")
            % {"status": from_status, "requested": to_status},
            details={"status": from_status, "requested": to_status},
        )
    if internal_note:  # staff and support read it in the history; owners never (selectors)
        extra_data = {**(extra_data or {}), "internal_note": internal_note}
    first = BookingEvent(event_type, from_status, reason, extra_data or {})
    booking_change_record(
        booking=booking,
        to_status=to_status,
        actor=actor,
        reason=reason,
        events=[first, *then],
        changes=changes,
        internal_note=internal_note,
    )
    transaction.on_commit(lambda: metrics.BOOKINGS.labels(change=to_status).inc())
    return booking
