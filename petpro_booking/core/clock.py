"""One timestamp format for the API (UTC, ISO 8601, `Z`), clinic-local wall-clock times, and
how people read a moment (admin, back office): in the clinic's zone, the zone written."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The years of every time and date the service takes in (API fields, admin forms and filters,
# the daily tool): no appointment lies outside them, and far dates overflow on every later
# conversion (UTC, the clinic's zone, "+ a day"), so they are refused at the door.
SERVICE_YEARS = (1970, 2999)


def in_service_years(value: dt.date) -> bool:
    return SERVICE_YEARS[0] <= value.year <= SERVICE_YEARS[1]


def api_timestamp(value: dt.datetime) -> str:
    """The API's one format for instants, as DRF's DateTimeField renders them: UTC with `Z`."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def clinic_zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_time(value: dt.datetime, zone_name: str) -> str:
    """The clinic's wall-clock time with its offset, e.g. `2026-12-09T09:00:00+07:00`."""
    return value.astimezone(clinic_zone(zone_name)).isoformat()


def wall_clock_instant(wall: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
    """The instant (UTC) at which a clock in `zone` shows the naive `wall` time; None when it
    never does (the time the clocks skip when they go forward). A time the clocks show twice
    (when they go back) is its first occurrence, the one a clock read forward from midnight
    reaches first."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return None
    return instant


def local_label(moment: dt.datetime | None, zone_name: str, *, with_zone: bool = True) -> str:
    """`2026-12-09 10:00 (Europe/Berlin)`, `2026-12-09 09:00 (UTC)`; empty for no moment."""
    if moment is None:
        return ""
    text = f"{moment.astimezone(clinic_zone(zone_name)):%Y-%m-%d %H:%M}"
    return f"{text} ({zone_name})" if with_zone else text


def local_fields(
    *,
    start_at: dt.datetime,
    end_at: dt.datetime,
    zone_name: str,
    clinic_name: str,
    service_name: str,
) -> dict[str, str]:
    """What slots and bookings carry so an app can show them without another call."""
    return {
        "timezone": zone_name,
        "start_local": local_time(start_at, zone_name),
        "end_local": local_time(end_at, zone_name),
        "clinic_name": clinic_name,
        "service_name": service_name,
    }
