"""The waiting list's part of a person's data (bookings/personal_data.py): its entries in the
export, live entries left before an erasure, then pseudonymised (events are scrubbed by the
erasure itself: they carry the owner's id)."""

from __future__ import annotations

from typing import Any

from petpro_booking.core.principal import SYSTEM

from .models import LIVE_STATUSES, EntryStatus, WaitlistEntry

ERASURE_REASON = "personal data erased at the owner's request"


def waitlist_export(user_id: str) -> dict[str, Any]:
    from petpro_booking.events.models import Event

    entries = list(WaitlistEntry.objects.filter(user_id=user_id).order_by("joined_at", "id"))
    events: dict[str, list[str]] = {}
    for aggregate_id, event_id in Event.objects.filter(
        aggregate_id__in=[str(e.id) for e in entries]
    ).values_list("aggregate_id", "event_id"):
        events.setdefault(aggregate_id, []).append(str(event_id))
    return {
        "waitlist": [
            {
                "id": str(entry.id),
                "slot_id": str(entry.slot_id),
                "pet_id": entry.pet_id,
                "pet_name": entry.pet_name,
                "status": entry.status,
                "joined_at": entry.joined_at.isoformat(),
                "reservation_id": str(entry.reservation_id) if entry.reservation_id else None,
                "ended_at": entry.ended_at.isoformat() if entry.ended_at else None,
                "event_ids": events.get(str(entry.id), []),
            }
            for entry in entries
        ]
    }


def waitlist_aggregates(user_id: str) -> list[str]:
    """The person's entries, as the event store names their aggregates."""
    return [
        str(i) for i in WaitlistEntry.objects.filter(user_id=user_id).values_list("id", flat=True)
    ]


def waitlist_release(user_id: str) -> int:
    """Leave every live entry through the service (an offer's hold goes to the next in line)."""
    from .services import waitlist_end

    live = WaitlistEntry.objects.filter(user_id=user_id, status__in=LIVE_STATUSES)
    ids = list(live.values_list("id", flat=True))
    for entry_id in ids:
        waitlist_end(
            entry_id=entry_id, to_status=EntryStatus.LEFT, actor=SYSTEM, reason=ERASURE_REASON
        )
    return len(ids)


def waitlist_erase(user_id: str, pseudonym: str, pet_pseudonyms: dict[str, str]) -> int:
    """Each pet under the pseudonym the erasure gave it (the one its events now carry); a pet
    the erasure did not know (its events gone with retention) under one of its own."""
    rows = WaitlistEntry.objects.filter(user_id=user_id)
    pets = sorted(set(rows.values_list("pet_id", flat=True)))
    for n, pet_id in enumerate(pets, 1):
        rows.filter(pet_id=pet_id).update(pet_id=pet_pseudonyms.get(pet_id) or f"{pseudonym}-w{n}")
    return WaitlistEntry.objects.filter(user_id=user_id).update(
        user_id=pseudonym, pet_name="", end_reason=""
    )
