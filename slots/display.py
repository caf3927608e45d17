"""How people read times and slots: in the clinic's time zone, with the zone named."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone


@lru_cache(maxsize=256)
def clinic_zone(zone_name: str) -> dt.tzinfo:
    """The clinic's zone; UTC when the stored name is unknown (the page still renders)."""
    try:
        return ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_moment(moment: dt.datetime, zone_name: str) -> dt.datetime:
    return timezone.localtime(moment, clinic_zone(zone_name))


def local_label(moment: dt.datetime | None, zone_name: str, *, with_zone: bool = True) -> str:
    """`2026-12-09 10:00 (Europe/Berlin)`; empty for no moment."""
    if moment is None:
        return ""
    text = f"{local_moment(moment, zone_name):%Y-%m-%d %H:%M}"
    return f"{text} ({zone_name})" if with_zone else text
