"""Input and output shapes of the reservations API."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from petpro_booking.core.clock import api_timestamp
from petpro_booking.core.fields import ShallowFieldsMixin

from .models import GROUP_MAX_PETS, ReservationStatus


class ReservationCreateInput(ShallowFieldsMixin, serializers.Serializer):
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField(max_length=64)


class ReservationGroupCreateInput(serializers.Serializer):
    """The group form of POST /reservations: several pets of the caller on one slot."""

    slot_id = serializers.UUIDField()
    pet_ids = serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        max_length=GROUP_MAX_PETS,
        help_text=f"1 to {GROUP_MAX_PETS} distinct pets of yours; one unit of the slot each.",
    )
    pet_id = serializers.CharField(required=False)

    def validate_pet_ids(self, value: list[str]) -> list[str]:
        repeated = sorted({pet_id for pet_id in value if value.count(pet_id) > 1})
        if repeated:
            raise serializers.ValidationError(f"Each pet once; repeated: {', '.join(repeated)}.")
        return value

    def validate(self, attrs: dict) -> dict:
        if "pet_id" in attrs:
            raise serializers.ValidationError(
                {"pet_id": ["Give pet_id (one pet) or pet_ids (several), not both."]}
            )
        return attrs


class ReservationCreateRequest(serializers.Serializer):
    """What POST /reservations accepts (documentation): `pet_id` or `pet_ids`, not both."""

    class Meta:
        ref_name = "ReservationCreateInput"  # the name generated clients already know

    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField(
        max_length=64, required=False, help_text="One pet: the answer is one hold."
    )
    pet_ids = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        min_length=1,
        max_length=GROUP_MAX_PETS,
        help_text=f"1 to {GROUP_MAX_PETS} distinct pets: the answer is a group of holds, all or "
        "nothing, with one expiry. Not together with `pet_id`.",
    )


class ReservationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField()
    status = serializers.ChoiceField(choices=ReservationStatus.choices)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    group_id = serializers.UUIDField(
        required=False, help_text="Only on a hold of a pet group: the group it belongs to."
    )


class ReservationGroupOutput(serializers.Serializer):
    group_id = serializers.UUIDField()
    slot_id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=ReservationStatus.choices,
        help_text="`held` while any hold of the group is held, else `confirmed` when any was "
        "confirmed, else `expired` when any expired, else `released`.",
    )
    expires_at = serializers.DateTimeField()
    reservations = ReservationOutput(many=True)


_GROUP_STATUS_ORDER = (
    ReservationStatus.HELD,
    ReservationStatus.CONFIRMED,
    ReservationStatus.EXPIRED,
    ReservationStatus.RELEASED,
)


def reservation_group_body(holds: list) -> dict:
    """The API shape of a group of holds (one slot, one expiry, one body per pet)."""
    bodies = [reservation_body(hold) for hold in holds]
    statuses = {body["status"] for body in bodies}
    return {
        "group_id": str(holds[0].group_id),
        "slot_id": str(holds[0].slot_id),
        "status": next(status for status in _GROUP_STATUS_ORDER if status in statuses),
        "expires_at": api_timestamp(holds[0].expires_at),
        "reservations": bodies,
    }


def reservation_body(reservation) -> dict:
    """The API shape of a hold (a plain function: faster than a serializer on the hot path).
    A hold past its expiry reads as `expired` even before the expiry job has recorded it."""
    status = reservation.status
    if status == ReservationStatus.HELD and reservation.expires_at <= timezone.now():
        status = ReservationStatus.EXPIRED
    body = {
        "id": str(reservation.id),
        "slot_id": str(reservation.slot_id),
        "pet_id": reservation.pet_id,
        "status": status,
        "expires_at": api_timestamp(reservation.expires_at),
        "created_at": api_timestamp(reservation.created_at),
    }
    group_id = getattr(reservation, "group_id", None)
    if group_id is not None:
        body["group_id"] = str(group_id)
    return body
