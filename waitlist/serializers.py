"""Input and output shapes of the waiting list and of a slot's availability answer."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from petpro_booking.core.clock import api_timestamp
from slots.serializers import SlotOutput

from .models import EntryStatus, WaitlistEntry
from .selectors import waitlist_position


class WaitlistJoinInput(serializers.Serializer):
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField(max_length=64)


class WaitlistEntryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField()
    status = serializers.ChoiceField(choices=EntryStatus.choices)
    position = serializers.IntegerField(
        allow_null=True, help_text="1 = next in line; null once offered or ended."
    )
    joined_at = serializers.DateTimeField()
    reservation_id = serializers.UUIDField(
        allow_null=True, help_text="The offered hold: confirm it like any hold."
    )
    offer_expires_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)


def entry_body(entry: WaitlistEntry) -> dict[str, Any]:
    """An offered entry whose hold was confirmed reads `booked`, one whose hold expired reads
    `offer_expired`, even before the unit's next write settles the row."""
    status = entry.status
    if status == EntryStatus.OFFERED and entry.reservation is not None:
        status = {
            "confirmed": EntryStatus.BOOKED,
            "expired": EntryStatus.OFFER_EXPIRED,
            "released": EntryStatus.LEFT,
        }.get(entry.reservation.status, status)
    return {
        "id": str(entry.id),
        "slot_id": str(entry.slot_id),
        "pet_id": entry.pet_id,
        "status": status,
        "position": waitlist_position(entry),
        "joined_at": api_timestamp(entry.joined_at),
        "reservation_id": str(entry.reservation_id) if entry.reservation_id else None,
        "offer_expires_at": api_timestamp(entry.offer_expires_at)
        if entry.offer_expires_at
        else None,
        "ended_at": api_timestamp(entry.ended_at) if entry.ended_at else None,
    }


class AvailabilityQuery(serializers.Serializer):
    pet_id = serializers.CharField(max_length=64, required=False)


class AvailabilityReason(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=[
            "clinic_inactive",
            "service_inactive",
            "slot_started",
            "too_late_to_book",
            "beyond_booking_horizon",
            "slot_closed",
            "slot_full",
            "invalid_pet",
            "species_not_accepted",
            "limit_exceeded",
        ]
    )
    message = serializers.CharField()
    details = serializers.DictField()


class AvailabilityNote(serializers.Serializer):
    code = serializers.ChoiceField(choices=["already_booked", "already_held"])
    message = serializers.CharField()
    details = serializers.DictField()


class AvailabilityOutput(serializers.Serializer):
    slot_id = serializers.UUIDField()
    bookable = serializers.BooleanField()
    reasons = AvailabilityReason(
        many=True, help_text="Every rule that refuses a hold now; empty exactly when bookable."
    )
    notes = AvailabilityNote(
        many=True,
        help_text="What the caller already holds or booked on this slot (`already_held`, "
        "`already_booked`). Information only: it refuses no hold and never makes `bookable` "
        "false.",
    )
    waitlist_position = serializers.IntegerField(allow_null=True)
    waitlist_entry_id = serializers.UUIDField(allow_null=True)
    next_slots = SlotOutput(many=True)
