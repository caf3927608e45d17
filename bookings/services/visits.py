"""Staff cancel every visit of one slot (a vet falls ill) through the normal cancel service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from petpro_booking.core.errors import ApplicationError, ValidationFailed
from petpro_booking.core.principal import Principal
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_release_locked
from slots.errors import NotClinicStaff
from slots.locking import slot_write
from slots.models import Slot, SlotStatus
from slots.selectors import slot_get
from slots.services import slot_close

from ..models import Booking
from .history import HOLDS_A_UNIT
from .lifecycle import booking_cancel


@dataclass
class SlotVisitsCancelled:
    """What `booking_cancel_slot_visits` did: live holds released (waiting-list offers
    among them), bookings cancelled, and those it could not cancel with the reason (e.g.
    changed meanwhile), which staff should look at."""

    slot_id: uuid.UUID
    cancelled: list[Booking] = field(default_factory=list)
    failed: list[tuple[Booking, ApplicationError]] = field(default_factory=list)
    released: list[Reservation] = field(default_factory=list)


def _release_live_holds(*, actor: Principal, slot: Slot, reason: str) -> list[Reservation]:
    """Release every hold of the (closed) slot in one slot write, as staff: each one's
    ReservationReleased carries the staff actor and the reason, its unit goes back. A hold
    already past its expiry is recorded as expired instead (and not counted). Waiting-list
    offers are holds too: the waiting list settles them in the same transaction (the unit
    freed hook), and a closed slot offers nothing more."""

    def release(slot: Slot) -> list[Reservation]:
        held = Reservation.objects.filter(slot_id=slot.id, status=ReservationStatus.HELD)
        done = [
            reservation_release_locked(
                actor=actor, reservation_id=reservation_id, slot=slot, reason=reason
            )
            for reservation_id in held.order_by("created_at", "id").values_list("id", flat=True)
        ]
        return [hold for hold in done if hold.status == ReservationStatus.RELEASED]

    return slot_write(slot, name="booking_cancel_slot_visits", decide=release)


def booking_cancel_slot_visits(
    *, actor: Principal, slot_id: uuid.UUID | str, reason: str
) -> SlotVisitsCancelled:
    """Close the slot to new holds, release its live holds (waiting-list offers included: a
    hold on a closed slot can no longer be confirmed either way), then cancel each of its live
    bookings (pending payment or confirmed) with `booking_cancel`, one transaction each: the
    unit goes back, a paid booking is refunded, history, event and the owner's notification
    follow as for any cancel.

    Staff of the slot's clinic and support, with a reason. A booking that cannot be cancelled
    (changed meanwhile) is reported in `failed`, the others go on. Running it again releases
    and cancels what is left: the second run finds nothing to do."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(details={"reason": ["Say why the visits are cancelled."]})
    slot = slot_get(slot_id=slot_id)
    if not actor.can_manage_clinic(slot.clinic_id):
        raise NotClinicStaff()
    if slot.status == SlotStatus.OPEN:
        slot_close(actor=actor, slot_id=slot.id)
    outcome = SlotVisitsCancelled(
        slot_id=slot.id, released=_release_live_holds(actor=actor, slot=slot, reason=reason)
    )
    for booking in Booking.objects.filter(slot_id=slot.id, status__in=HOLDS_A_UNIT).order_by(
        "created_at", "id"
    ):
        try:
            outcome.cancelled.append(
                booking_cancel(actor=actor, booking_id=booking.id, reason=reason)
            )
        except ApplicationError as exc:
            outcome.failed.append((booking, exc))
    return outcome
