"""Input and output shapes of the bookings API (DESIGN.md §8)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Booking, BookingStatus


class BookingOutput(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    slot_id = serializers.UUIDField()
    reservation_id = serializers.UUIDField()
    clinic_id = serializers.CharField()
    service_id = serializers.CharField()
    user_id = serializers.CharField()
    pet_id = serializers.CharField()
    status = serializers.ChoiceField(choices=BookingStatus.choices)
    amount = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=True)
    currency = serializers.CharField()
    start_at = serializers.DateTimeField()
    end_at = serializers.DateTimeField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def booking_body(booking: Booking) -> dict[str, Any]:
    """The API shape of one booking (its slot must be loaded)."""
    return BookingOutput(
        {
            "id": booking.id,
            "reference": booking.reference,
            "slot_id": booking.slot_id,
            "reservation_id": booking.reservation_id,
            "clinic_id": booking.clinic_id,
            "service_id": booking.service_id,
            "user_id": booking.user_id,
            "pet_id": booking.pet_id,
            "status": booking.status,
            "amount": booking.amount,
            "currency": booking.currency,
            "start_at": booking.slot.start_at,
            "end_at": booking.slot.end_at,
            "version": booking.version,
            "created_at": booking.created_at,
            "updated_at": booking.updated_at,
        }
    ).data


class BookingListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=BookingStatus.choices, required=False)
    clinic_id = serializers.CharField(max_length=64, required=False)


class BookingCancelInput(serializers.Serializer):
    reason = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required for clinic staff and support.",
    )


class BookingRescheduleInput(serializers.Serializer):
    slot_id = serializers.UUIDField(help_text="A slot of the same clinic and service.")
    reason = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required for clinic staff and support.",
    )


class BookingCloseInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class HistoryItemOutput(serializers.Serializer):
    event_type = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    actor = serializers.DictField()
    # The contract names this field `data`; DRF pops declared fields off the class, so it
    # does not shadow Serializer.data at run time.
    data = serializers.DictField()  # type: ignore[assignment]
