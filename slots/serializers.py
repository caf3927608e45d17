"""Input and output shapes of the slots API."""

from __future__ import annotations

import datetime as dt

from rest_framework import serializers

from petpro_booking.core.fields import AwareDateTimeField, BoundedDateField, ShallowFieldsMixin

from .models import CAPACITY_MAX, Clinic, ClinicService, SlotStatus
from .rules import REASONS


class ClinicOutput(serializers.ModelSerializer):
    class Meta:
        model = Clinic
        fields = ["id", "name", "timezone", "active"]


class ClinicServiceOutput(serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=True)

    class Meta:
        model = ClinicService
        fields = [
            "id",
            "clinic_id",
            "name",
            "duration_minutes",
            "price",
            "currency",
            "species",
            "requires_payment",
            "cancellation_window_hours",
        ]


class SlotOutput(serializers.Serializer):
    """Documents the slot's shape; `selectors.slot_row` renders it (one output style for
    search and detail, a plain function on the hot path)."""

    id = serializers.UUIDField()
    clinic_id = serializers.CharField()
    service_id = serializers.CharField()
    start_at = serializers.DateTimeField()
    end_at = serializers.DateTimeField()
    capacity = serializers.IntegerField()
    available_capacity = serializers.IntegerField()
    status = serializers.ChoiceField(choices=SlotStatus.choices)
    version = serializers.IntegerField()
    bookable = serializers.BooleanField(help_text="A hold now would get a unit.")
    reason = serializers.ChoiceField(
        choices=REASONS,
        allow_null=True,
        help_text="Why not bookable (null when bookable): a hold answers 409 with this code, "
        "`slot_unavailable` for `slot_closed` and `slot_full`.",
    )
    timezone = serializers.CharField(help_text="The clinic's IANA time zone")
    start_local = serializers.CharField(help_text="start_at in the clinic's time, with offset")
    end_local = serializers.CharField(help_text="end_at in the clinic's time, with offset")
    clinic_name = serializers.CharField()
    service_name = serializers.CharField()


class SlotSearchQuery(ShallowFieldsMixin, serializers.Serializer):
    clinic_id = serializers.CharField(required=False, max_length=64)
    service_id = serializers.CharField(required=False, max_length=64)
    start_from = AwareDateTimeField(required=False, help_text="ISO 8601 with offset")
    start_to = AwareDateTimeField(required=False, help_text="ISO 8601 with offset; exclusive")
    available = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only slots a hold would get now; false: only those it would not.",
    )
    pet_id = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Only slots this pet (one of the caller's) could book; 400 `invalid_pet` "
        "for a pet that is not the caller's.",
    )
    species = serializers.CharField(
        required=False, max_length=32, help_text="Only slots of services taking this species."
    )
    include_unbookable = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Staff of `clinic_id` and support: also list slots no one can book now "
        "(closed, inactive clinic or service, started, inside the notice, beyond the horizon), "
        "each with `bookable` false and its `reason`. 403 for anyone else.",
    )
    # Bounded so "(page - 1) * page_size" stays a number PostgreSQL takes as an OFFSET.
    page = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    def validate(self, attrs):
        start_from, start_to = attrs.get("start_from"), attrs.get("start_to")
        if start_from and start_to and start_to <= start_from:
            raise serializers.ValidationError({"start_to": ["Must be after start_from."]})
        return attrs


class SlotCreateInput(serializers.Serializer):
    clinic_id = serializers.CharField(max_length=64)
    service_id = serializers.CharField(max_length=64)
    start_at = AwareDateTimeField()
    end_at = AwareDateTimeField()
    capacity = serializers.IntegerField(min_value=1, max_value=CAPACITY_MAX, default=1)

    def validate(self, attrs):
        if attrs["end_at"] - attrs["start_at"] > dt.timedelta(days=1):
            raise serializers.ValidationError({"end_at": ["A slot lasts at most a day."]})
        return attrs


# One call's weekly schedule: a handful of windows per weekday is plenty.
MAX_WEEKLY_WINDOWS = 50


class WeeklyWindowInput(serializers.Serializer):
    weekday = serializers.IntegerField(min_value=1, max_value=7, help_text="1 = Monday ... 7")
    start = serializers.TimeField(format="%H:%M", input_formats=["%H:%M"])
    end = serializers.TimeField(format="%H:%M", input_formats=["%H:%M"])


class SlotGenerateInput(serializers.Serializer):
    clinic_id = serializers.CharField(max_length=64)
    service_id = serializers.CharField(max_length=64)
    date_from = BoundedDateField(help_text="clinic-local date, inclusive")
    date_to = BoundedDateField(help_text="clinic-local date, inclusive")
    capacity = serializers.IntegerField(min_value=1, max_value=CAPACITY_MAX, default=1)
    weekly = WeeklyWindowInput(
        many=True,
        allow_empty=False,
        max_length=MAX_WEEKLY_WINDOWS,  # type: ignore[call-arg]  # ListSerializer takes it
    )


class SlotGenerateOutput(serializers.Serializer):
    created = serializers.IntegerField()


class SlotUpdateInput(serializers.Serializer):
    capacity = serializers.IntegerField(min_value=1, max_value=CAPACITY_MAX, required=False)
    status = serializers.ChoiceField(choices=SlotStatus.choices, required=False)
