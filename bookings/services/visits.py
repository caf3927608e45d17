"""Staff cancel every visit of one slot (a vet falls ill) through the normal cancel service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from petpro_booking.core.errors import ApplicationError, ValidationFailed
from petpro_booking.core.principal import Principal
from slots.errors import NotClinicStaff
from slots.models import SlotStatus
from slots.selectors import slot_get
from slots.services import slot_close

from ..models import Booking
from .history import HOLDS_A_UNIT
from .lifecycle import booking_cancel


@dataclass
class SlotVisitsCancelled:
    """What `booking_cancel_slot_visits` did: bookings cancelled, and those it could not
    cancel with the reason (e.g. changed meanwhile), which staff should look at."""

    slot_id: uuid.UUID
    cancelled: list[Booking] = field(default_factory=list)
    failed: list[tuple[Booking, ApplicationError]] = field(default_factory=list)


def booking_cancel_slot_visits(
    *, actor: Principal, slot_id: uuid.UUID | str, reason: str
) -> SlotVisitsCancelled:
    """Close the slot to new holds, then cancel each of its live bookings (pending payment or
    confirmed) with `booking_cancel`, one transaction each: the unit goes back, a paid booking
    is refunded, history, event and the owner's notification follow as for any cancel.

    Staff of the slot's clinic and support, with a reason. A booking that cannot be cancelled
    (changed meanwhile) is reported in `failed`, the others go on. Running it again cancels
    what is left: the second run finds nothing to do."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(details={"reason": ["Say why the visits are cancelled."]})
    slot = slot_get(slot_id=slot_id)
    if not actor.can_manage_clinic(slot.clinic_id):
        raise NotClinicStaff()
    if slot.status == SlotStatus.OPEN:
        slot_close(actor=actor, slot_id=slot.id)
    outcome = SlotVisitsCancelled(slot_id=slot.id)
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
