"""Event payloads of waiting-list entries (docs/events.md): the appointment fields of holds
plus the entry and, once offered, the hold and its expiry in UTC and clinic-local time."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from reservations.events import appointment_data
from slots.models import Slot

WAITLIST_AGGREGATE = "waitlist_entry"


def waitlist_event_data(entry, *, slot: Slot, reason: str = "") -> dict[str, Any]:
    expires = entry.offer_expires_at
    return {
        "entry_id": str(entry.id),
        "status": entry.status,
        "joined_at": entry.joined_at.isoformat() if entry.joined_at else None,
        "reservation_id": str(entry.reservation_id) if entry.reservation_id else None,
        "expires_at": expires.isoformat() if expires else None,
        "expires_local": (
            expires.astimezone(ZoneInfo(slot.clinic.timezone)).isoformat() if expires else None
        ),
        "reason": reason,
        **appointment_data(
            slot=slot, user_id=entry.user_id, pet_id=entry.pet_id, pet_name=entry.pet_name
        ),
    }
