"""Input and output shapes of the bookings API (documented in the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from petpro_booking.core.clock import local_fields

from .models import Booking, BookingStatus, PaymentRecord, PaymentStatus


def payment_status_of(booking: Booking) -> str:
    """The latest payment's status: annotated by the list selector, one query otherwise."""
    if hasattr(booking, "latest_payment_status"):
        return booking.latest_payment_status or "none"
    payments = booking.payments.all()
    if booking.group_id is not None:  # a pet group's one payment is attached to one booking
        payments = PaymentRecord.objects.filter(group_id=booking.group_id)
    latest = payments.order_by("-created_at").values_list("status", flat=True).first()
    return latest or "none"


class GroupMemberOutput(serializers.Serializer):
    id = serializers.UUIDField()
    pet_id = serializers.CharField()
    status = serializers.ChoiceField(choices=BookingStatus.choices)


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
    timezone = serializers.CharField(help_text="The clinic's IANA time zone")
    start_local = serializers.CharField(help_text="start_at in the clinic's time, with offset")
    end_local = serializers.CharField(help_text="end_at in the clinic's time, with offset")
    clinic_name = serializers.CharField()
    service_name = serializers.CharField()
    payment_status = serializers.ChoiceField(
        choices=[*PaymentStatus.values, "none"],
        help_text="Status of the booking's latest payment; `none` before any payment.",
    )
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    group_id = serializers.UUIDField(
        required=False,
        help_text="Only on a booking of a pet group (several pets held and confirmed "
        "together): the group.",
    )
    group_bookings = GroupMemberOutput(
        many=True,
        required=False,
        help_text="Only on a booking of a pet group: the group's other bookings.",
    )


def group_members_of(booking: Booking) -> list[dict[str, Any]]:
    """The other bookings of `booking`'s pet group (one query), oldest first."""
    return [
        {"id": str(member["id"]), "pet_id": member["pet_id"], "status": member["status"]}
        for member in Booking.objects.filter(group_id=booking.group_id)
        .exclude(id=booking.id)
        .order_by("created_at", "id")
        .values("id", "pet_id", "status")
    ]


def booking_body(booking: Booking) -> dict[str, Any]:
    """The API shape of one booking (its slot must be loaded; selectors also load the slot's
    clinic and service and annotate `latest_payment_status`). A booking of a pet group also
    carries `group_id` and its siblings (`group_bookings`)."""
    slot = booking.slot
    body = BookingOutput(
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
            **local_fields(
                start_at=slot.start_at,
                end_at=slot.end_at,
                zone_name=slot.clinic.timezone,
                clinic_name=slot.clinic.name,
                service_name=slot.service.name,
            ),
            "payment_status": payment_status_of(booking),
            "version": booking.version,
            "created_at": booking.created_at,
            "updated_at": booking.updated_at,
        }
    ).data
    if booking.group_id is not None:
        body["group_id"] = str(booking.group_id)
        body["group_bookings"] = group_members_of(booking)
    return body


class BookingListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=BookingStatus.choices, required=False)
    reference = serializers.RegexField(
        r"^[Pp][Pp]-[0-9A-Za-z]{6}$", required=False, help_text="e.g. PP-7K3F9Q (case-insensitive)"
    )
    clinic_id = serializers.CharField(max_length=64, required=False)


SCOPE_HELP = (
    "On a booking of a pet group: `booking` (default) acts on this pet only, `group` on every "
    "booking of the group. Ignored for a single pet's booking."
)


class BookingCancelInput(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=["booking", "group"], required=False, default="booking", help_text=SCOPE_HELP
    )
    reason = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required for clinic staff and support. Shown to the owner.",
    )
    internal_note = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Staff and support only; never shown to the owner.",
    )


class BookingRescheduleInput(serializers.Serializer):
    slot_id = serializers.UUIDField(help_text="A slot of the same clinic and service.")
    scope = serializers.ChoiceField(
        choices=["booking", "group"], required=False, default="booking", help_text=SCOPE_HELP
    )
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
