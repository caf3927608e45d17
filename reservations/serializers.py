"""Input and output shapes of the reservations API."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from petpro_booking.core.clock import api_timestamp

from .models import ReservationStatus


class ReservationCreateInput(serializers.Serializer):
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField(max_length=64)


class ReservationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField()
    status = serializers.ChoiceField(choices=ReservationStatus.choices)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


def reservation_body(reservation) -> dict:
    """The API shape of a hold (a plain function: faster than a serializer on the hot path).
    A hold past its expiry reads as `expired` even before the expiry job has recorded it."""
    status = reservation.status
    if status == ReservationStatus.HELD and reservation.expires_at <= timezone.now():
        status = ReservationStatus.EXPIRED
    return {
        "id": str(reservation.id),
        "slot_id": str(reservation.slot_id),
        "pet_id": reservation.pet_id,
        "status": status,
        "expires_at": api_timestamp(reservation.expires_at),
        "created_at": api_timestamp(reservation.created_at),
    }
