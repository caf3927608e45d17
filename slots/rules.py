"""Booking rules of a service, as pure functions: may a slot be held now, and if not, why.

One source of truth for the hold (`reservation_create` calls `slot_hold_check`), for search
(`selectors.slot_search` applies the same rules in SQL; a test holds them together) and for a
later "why can't I book this?" endpoint (`slot_refusal` returns the reason code).

Times: the notice is elapsed time (1440 minutes is 24 hours, also across a DST change); the
horizon counts calendar days in the clinic's time zone (horizon 30: the last bookable slot
starts on the clinic-local date today + 30, at any hour).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from petpro_booking.core.errors import Conflict

from .errors import SlotUnavailable

# Reasons a slot cannot be held, in the order they are checked. Each is also the error code of
# the refused hold, except `slot_closed` and `slot_full`, which answer `slot_unavailable`.
CLINIC_INACTIVE = "clinic_inactive"
SERVICE_INACTIVE = "service_inactive"
SLOT_STARTED = "slot_started"
TOO_LATE_TO_BOOK = "too_late_to_book"
BEYOND_BOOKING_HORIZON = "beyond_booking_horizon"
SLOT_CLOSED = "slot_closed"
SLOT_FULL = "slot_full"
REASONS = (
    CLINIC_INACTIVE,
    SERVICE_INACTIVE,
    SLOT_STARTED,
    TOO_LATE_TO_BOOK,
    BEYOND_BOOKING_HORIZON,
    SLOT_CLOSED,
    SLOT_FULL,
)


@dataclass(frozen=True)
class BookingRules:
    min_notice_minutes: int
    booking_horizon_days: int
    buffer_before_minutes: int
    buffer_after_minutes: int


# A clinic (admin) or the Clinic Service may send any whole number, and the calendar (Python's
# dates run from year 1 to 9999) cannot hold every sum: a horizon longer than a century is no
# horizon; a notice or buffer longer than a century leaves nothing bookable or no room.
HORIZON_DAYS_MAX = 36_500
NOTICE_MINUTES_MAX = 36_500 * 24 * 60
CANCELLATION_WINDOW_HOURS_MAX = 36_500 * 24


def cancellation_window_hours(service: Any) -> int:
    """How many hours before the start an owner may still cancel or reschedule: the service's
    window, at most a century (longer is "never", and the calendar cannot hold every sum)."""
    return min(service.cancellation_window_hours, CANCELLATION_WINDOW_HOURS_MAX)


def rules_of(service: Any) -> BookingRules:
    """The service's rules, each unset one taken from settings (BOOKING_*), each at most a
    century (HORIZON_DAYS_MAX, NOTICE_MINUTES_MAX)."""

    def pick(value: int | None, default: int, most: int = NOTICE_MINUTES_MAX) -> int:
        return min(default if value is None else value, most)

    return BookingRules(
        min_notice_minutes=pick(service.min_notice_minutes, settings.BOOKING_MIN_NOTICE_MINUTES),
        booking_horizon_days=pick(
            service.booking_horizon_days, settings.BOOKING_HORIZON_DAYS, HORIZON_DAYS_MAX
        ),
        buffer_before_minutes=pick(
            service.buffer_before_minutes, settings.BOOKING_BUFFER_BEFORE_MINUTES
        ),
        buffer_after_minutes=pick(
            service.buffer_after_minutes, settings.BOOKING_BUFFER_AFTER_MINUTES
        ),
    )


def notice_edge(*, start_at: dt.datetime, rules: BookingRules) -> dt.datetime:
    """The last instant a hold on a slot starting at `start_at` is allowed (inclusive)."""
    return start_at - dt.timedelta(minutes=rules.min_notice_minutes)


def last_bookable_date(*, now: dt.datetime, zone: ZoneInfo, rules: BookingRules) -> dt.date:
    """The last clinic-local date whose slots may be held at `now`."""
    return now.astimezone(zone).date() + dt.timedelta(days=rules.booking_horizon_days)


def slot_refusals(
    *,
    start_at: dt.datetime,
    status: str,
    available: int,
    clinic_active: bool,
    service_active: bool,
    zone: ZoneInfo,
    rules: BookingRules,
    now: dt.datetime,
) -> list[str]:
    """Every reason a hold at `now` would be refused, in the order of REASONS (empty: it
    would get a unit). `available` is the free capacity, expired holds counted free."""
    found = []
    if not clinic_active:
        found.append(CLINIC_INACTIVE)
    if not service_active:
        found.append(SERVICE_INACTIVE)
    if start_at <= now:
        found.append(SLOT_STARTED)
    elif now > notice_edge(start_at=start_at, rules=rules):
        found.append(TOO_LATE_TO_BOOK)
    if start_at.astimezone(zone).date() > last_bookable_date(now=now, zone=zone, rules=rules):
        found.append(BEYOND_BOOKING_HORIZON)
    if status != "open":
        found.append(SLOT_CLOSED)
    if available <= 0:
        found.append(SLOT_FULL)
    return found


def slot_refusal(
    *,
    start_at: dt.datetime,
    status: str,
    available: int,
    clinic_active: bool,
    service_active: bool,
    zone: ZoneInfo,
    rules: BookingRules,
    now: dt.datetime,
) -> str | None:
    """Why a hold at `now` would be refused (one of REASONS, the first that applies), or None
    when it would get a unit. `available` is the free capacity, expired holds counted free."""
    found = slot_refusals(
        start_at=start_at,
        status=status,
        available=available,
        clinic_active=clinic_active,
        service_active=service_active,
        zone=zone,
        rules=rules,
        now=now,
    )
    return found[0] if found else None


class TooLateToBook(Conflict):
    code = TOO_LATE_TO_BOOK
    default_message = "This slot starts too soon to book; the service needs more notice."


class BeyondBookingHorizon(Conflict):
    code = BEYOND_BOOKING_HORIZON
    default_message = "This slot is too far ahead to book yet."


class ClinicInactive(Conflict):
    code = CLINIC_INACTIVE
    default_message = "The clinic does not take bookings."


class ServiceInactive(Conflict):
    code = SERVICE_INACTIVE
    default_message = "The clinic no longer offers this service."


class SlotStarted(Conflict):
    code = SLOT_STARTED
    default_message = "This slot has already started."


REFUSAL_ERRORS: dict[str, type[Conflict]] = {
    CLINIC_INACTIVE: ClinicInactive,
    SERVICE_INACTIVE: ServiceInactive,
    SLOT_STARTED: SlotStarted,
    TOO_LATE_TO_BOOK: TooLateToBook,
    BEYOND_BOOKING_HORIZON: BeyondBookingHorizon,
    SLOT_CLOSED: SlotUnavailable,
    SLOT_FULL: SlotUnavailable,
}

# The error codes of a refused hold, for the OpenAPI schema.
HOLD_REFUSAL_CODES = sorted({error.code for error in REFUSAL_ERRORS.values()})


def refusal_error(reason: str, *, slot: Any, rules: BookingRules) -> Conflict:
    """The 409 a refused hold answers with; details say which rule and its value."""
    details: dict[str, Any] = {"reason": reason, "start_at": slot.start_at.isoformat()}
    if reason == TOO_LATE_TO_BOOK:
        details["min_notice_minutes"] = rules.min_notice_minutes
    elif reason == BEYOND_BOOKING_HORIZON:
        details["booking_horizon_days"] = rules.booking_horizon_days
    return REFUSAL_ERRORS[reason](details=details)


def slot_hold_check(*, slot: Any, now: dt.datetime) -> BookingRules:
    """Raise the refusal a hold at `now` gets from the rules (everything but capacity, which
    the hold's transaction decides); `slot` has `clinic` and `service` loaded."""
    rules = rules_of(slot.service)
    reason = slot_refusal(
        start_at=slot.start_at,
        status="open",  # closed and full are decided under the lock, by the conditional UPDATE
        available=1,
        clinic_active=slot.clinic.active,
        service_active=slot.service.active,
        zone=ZoneInfo(slot.clinic.timezone),
        rules=rules,
        now=now,
    )
    if reason is not None:
        raise refusal_error(reason, slot=slot, rules=rules)
    return rules


def species_accepted(*, accepted: list[str], species: str) -> bool:
    """An empty list takes every species; comparison ignores case."""
    allowed = {value.lower() for value in accepted}
    return not allowed or species.lower() in allowed


def buffered_window(
    *, start_at: dt.datetime, end_at: dt.datetime, rules: BookingRules
) -> tuple[dt.datetime, dt.datetime]:
    """The time a slot keeps to itself: its own time plus the service's buffers."""
    return (
        start_at - dt.timedelta(minutes=rules.buffer_before_minutes),
        end_at + dt.timedelta(minutes=rules.buffer_after_minutes),
    )
