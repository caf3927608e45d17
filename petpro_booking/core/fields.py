"""Serializer fields shared by the apps."""

from __future__ import annotations

import copy
import datetime as dt

from django.utils import timezone
from rest_framework import serializers

from .clock import SERVICE_YEARS, in_service_years


class ShallowFieldsMixin:
    """For the input serializers of the hot paths (the search's query, the hold's body), made on
    every request: DRF deep-copies every declared field per serializer instance, running each
    field's __init__ again (~0.1-0.3 ms a search); a field of these keeps no state but its
    binding (name, parent), so a shallow copy per instance is enough. Fields that carry a
    child field or serializer (bound to its parent once, at __init__) are deep-copied as DRF
    does."""

    _declared_fields: dict[str, serializers.Field]

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            name: copy.deepcopy(field)
            if hasattr(field, "child") or isinstance(field, serializers.BaseSerializer)
            else copy.copy(field)
            for name, field in self._declared_fields.items()
        }


_MINUTE = dt.timedelta(minutes=1)


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset; a time without one is a 400 (validation_error)."""

    default_error_messages = {
        "naive": "Give the time with an offset, like 2026-12-01T09:00:00+01:00.",
        "out_of_range": f"Give a time between the years {SERVICE_YEARS[0]} and {SERVICE_YEARS[1]}.",
        "bad_offset": "Give an offset in whole minutes between -14:00 and +14:00.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                parsed = None
            if parsed is not None and timezone.is_naive(parsed):
                self.fail("naive")
        result = super().to_internal_value(value)
        if timezone.is_naive(result):
            self.fail("naive")
        offset = result.utcoffset()
        if offset is None or abs(offset) > dt.timedelta(hours=14) or offset % _MINUTE:
            # Python takes up to +-23:59 and seconds (fractions too), PostgreSQL only +-15:59
            # and no fraction: the real world's +-14:00, in whole minutes.
            self.fail("bad_offset")
        try:
            in_utc = result.astimezone(dt.UTC)
        except OverflowError:
            self.fail("out_of_range")
        if not in_service_years(in_utc):
            self.fail("out_of_range")
        return result

    def enforce_timezone(self, value):
        # Keep the caller's offset for validation; the database stores UTC either way.
        return value


class BoundedDateField(serializers.DateField):
    """A calendar date of SERVICE_YEARS (see AwareDateTimeField)."""

    default_error_messages = {
        "out_of_range": AwareDateTimeField.default_error_messages["out_of_range"].replace(
            "time", "date"
        )
    }

    def to_internal_value(self, value):
        result = super().to_internal_value(value)
        if not in_service_years(result):
            self.fail("out_of_range")
        return result
