"""How people read times and slots: in the clinic's time zone, with the zone named."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from petpro_booking.core.clock import local_label

__all__ = ["clinic_zone", "local_label", "local_moment"]


@lru_cache(maxsize=256)
def clinic_zone(zone_name: str) -> dt.tzinfo:
    """The clinic's zone; UTC when the stored name is unknown (the page still renders)."""
    try:
        return ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_moment(moment: dt.datetime, zone_name: str) -> dt.datetime:
    return timezone.localtime(moment, clinic_zone(zone_name))
