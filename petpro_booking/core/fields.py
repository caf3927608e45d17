"""Serializer fields shared by the apps."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from rest_framework import serializers


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset; a time without one is a 400 (validation_error)."""

    default_error_messages = {
        "naive": "Give the time with an offset, like 2026-12-01T09:00:00+01:00.",
        "out_of_range": "Give a time between the years 1970 and 2999.",
        "bad_offset": "Give an offset between -14:00 and +14:00.",
    }
    # No appointment lies outside these years; far dates overflow on every later conversion
    # (UTC, the clinic's zone, "+ duration"), so they are refused at the door.
    MIN_YEAR, MAX_YEAR = 1970, 2999

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
        if offset is None or abs(offset) > dt.timedelta(hours=14):
            # Python takes up to +-23:59, PostgreSQL only +-15:59: the real world's +-14:00.
            self.fail("bad_offset")
        try:
            in_utc = result.astimezone(dt.UTC)
        except OverflowError:
            self.fail("out_of_range")
        if not self.MIN_YEAR <= in_utc.year <= self.MAX_YEAR:
            self.fail("out_of_range")
        return result

    def enforce_timezone(self, value):
        # Keep the caller's offset for validation; the database stores UTC either way.
        return value


class BoundedDateField(serializers.DateField):
    """A calendar date between the years 1970 and 2999 (see AwareDateTimeField)."""

    default_error_messages = {
        "out_of_range": AwareDateTimeField.default_error_messages["out_of_range"].replace(
            "time", "date"
        )
    }

    def to_internal_value(self, value):
        result = super().to_internal_value(value)
        if not AwareDateTimeField.MIN_YEAR <= result.year <= AwareDateTimeField.MAX_YEAR:
            self.fail("out_of_range")
        return result
