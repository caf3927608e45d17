"""Serializer fields shared by the apps."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from rest_framework import serializers


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset; a time without one is a 400 (DESIGN.md §8)."""

    default_error_messages = {
        "naive": "Give the time with an offset, like 2026-12-01T09:00:00+01:00.",
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
        return result

    def enforce_timezone(self, value):
        # Keep the caller's offset for validation; the database stores UTC either way.
        return value
