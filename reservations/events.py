"""Event payloads of holds and the "appointment" fields every reservation and booking event
carries (docs/events.md: consumers never query our tables)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from slots.models import Slot

RESERVATION_AGGREGATE = "reservation"


def appointment_data(*, slot: Slot, user_id: str, pet_id: str, pet_name: str) -> dict[str, Any]:
    """Clinic, service, times (UTC and clinic-local) and who comes with which pet.

    `slot` must have `clinic` and `service` loaded (select_related) to avoid two queries.
    """
    clinic, service = slot.clinic, slot.service
    return {
        "clinic_id": clinic.id,
        "clinic_name": clinic.name,
        "clinic_timezone": clinic.timezone,
        "clinic_language": clinic.language,
        "service_id": service.id,
        "service_name": service.name,
        "slot_id": str(slot.id),
        "start_at": slot.start_at.isoformat(),
        "end_at": slot.end_at.isoformat(),
        "start_local": slot.start_at.astimezone(ZoneInfo(clinic.timezone)).isoformat(),
        "user_id": str(user_id),
        "pet_id": str(pet_id),
        "pet_name": pet_name,
    }


def reservation_event_data(reservation, *, slot: Slot) -> dict[str, Any]:
    """Payload of ReservationCreated/Released/Expired/Confirmed; a hold of a pet group also
    carries its `group_id`."""
    data = {
        "reservation_id": str(reservation.id),
        "status": reservation.status,
        "expires_at": reservation.expires_at.isoformat(),
        **appointment_data(
            slot=slot,
            user_id=reservation.user_id,
            pet_id=reservation.pet_id,
            pet_name=reservation.pet_name,
        ),
    }
    if reservation.group_id is not None:
        data["group_id"] = str(reservation.group_id)
    return data
