"""Every read of the waiting list, and the "why can't I book this?" answer of a slot."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from bookings.models import Booking, BookingStatus
from integrations.users import pet_get
from petpro_booking.core.clock import api_timestamp
from petpro_booking.core.errors import NotFound
from petpro_booking.core.http import uuid_or_none, uuid_or_not_found
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.limits import live_holds_of
from reservations.models import Reservation, ReservationStatus
from slots import rules as booking_rules
from slots.models import Slot, free_units
from slots.selectors import slot_search

from .models import EntryStatus, WaitlistEntry

NEXT_SLOTS = 5


def waitlist_list_for(*, actor: Principal) -> QuerySet[WaitlistEntry]:
    """The caller's entries, newest first."""
    return (
        WaitlistEntry.objects.filter(user_id=actor.sub)
        .select_related("reservation")
        .order_by("-joined_at", "-id")
    )


def waitlist_get_for(*, actor: Principal, entry_id: uuid.UUID | str) -> WaitlistEntry:
    key = uuid_or_none(entry_id)
    entry = (
        WaitlistEntry.objects.select_related("reservation").filter(id=key).first() if key else None
    )
    if entry is None or entry.user_id != actor.sub:
        raise NotFound("No such waiting-list entry.")
    return entry


def waitlist_position(entry: WaitlistEntry) -> int | None:
    """1 for the first in line; None once the entry is not waiting (offered or ended)."""
    if entry.status != EntryStatus.WAITING:
        return None
    ahead = WaitlistEntry.objects.filter(
        Q(joined_at__lt=entry.joined_at) | Q(joined_at=entry.joined_at, id__lt=entry.id),
        slot_id=entry.slot_id,
        status=EntryStatus.WAITING,
    ).count()
    return ahead + 1


def waitlist_of_slot(*, slot_id: uuid.UUID | str) -> QuerySet[WaitlistEntry]:
    """A slot's line and its offers, oldest first (the admin's view)."""
    return (
        WaitlistEntry.objects.filter(slot_id=slot_id)
        .select_related("reservation")
        .order_by("joined_at", "id")
    )


# --- "why can't I book this?" ----------------------------------------------------------------


def _local(value: dt.datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _closed_by(slot: Slot) -> dict[str, Any]:
    """When and by whom the slot was closed: its last SlotUpdated event that changed the
    status (the event store; no column keeps it)."""
    events = Event.objects.filter(
        aggregate_type="slot", aggregate_id=str(slot.id), event_type="SlotUpdated"
    ).order_by("-aggregate_version", "-id")
    for event in events[:20]:
        if "status" in (event.payload or {}).get("changed", []):
            actor = (event.metadata or {}).get("actor") or {}
            return {"closed_at": api_timestamp(event.created_at), "closed_by": actor.get("type")}
    return {}


def slot_availability(
    *, actor: Principal, slot_id: uuid.UUID | str, pet_id: str | None = None
) -> dict[str, Any]:
    """`{bookable, reasons: [{code, message, details}], notes, waitlist_position,
    next_slots}` for the caller (and one of their pets), from the current rows and the event
    store, with the same rules as a hold (slots/rules.py), the same free count (a hold past
    its expiry is free only beyond the owners waiting, who get it first: `waitlist_stale_free`)
    and the same live-hold limit. `bookable` is true exactly when a hold would be made;
    `notes` say what the caller already holds or booked there, which refuses no hold."""
    try:
        slot = Slot.objects.select_related("clinic", "service").get(
            id=uuid_or_not_found(slot_id, what="slot")
        )
    except Slot.DoesNotExist:
        raise NotFound("No such slot.") from None
    now = timezone.now()
    zone = ZoneInfo(slot.clinic.timezone)
    rules = booking_rules.rules_of(slot.service)
    holds = Reservation.objects.filter(slot_id=slot.id, status=ReservationStatus.HELD).aggregate(
        live=Count("id", filter=Q(expires_at__gt=now)),
        stale=Count("id", filter=Q(expires_at__lte=now)),
        earliest=Min("expires_at", filter=Q(expires_at__gt=now)),
    )
    waiting = (
        WaitlistEntry.objects.filter(slot_id=slot.id, status=EntryStatus.WAITING).count()
        if holds["stale"]
        else 0
    )
    stale_free = waitlist_stale_free(stale=holds["stale"], waiting=waiting)
    holds["for_the_line"] = holds["stale"] - stale_free
    free = free_units(
        capacity=slot.capacity,
        booked_count=slot.booked_count,
        held_count=slot.held_count,
        expired_holds=stale_free,
    )
    codes = booking_rules.slot_refusals(
        start_at=slot.start_at,
        status=slot.status,
        available=free,
        clinic_active=slot.clinic.active,
        service_active=slot.service.active,
        zone=zone,
        rules=rules,
        now=now,
    )
    reasons = [_rule_reason(code, slot=slot, rules=rules, zone=zone, holds=holds) for code in codes]
    species = None
    if pet_id:
        pet = pet_get(user_id=actor.sub, pet_id=pet_id)
        if pet is None:
            reasons.append(
                {
                    "code": "invalid_pet",
                    "message": gettext("This pet is not one of yours."),
                    "details": {},
                }
            )
        elif not booking_rules.species_accepted(accepted=slot.service.species, species=pet.species):
            reasons.append(
                {
                    "code": "species_not_accepted",
                    "message": gettext("%(service)s does not accept a %(species)s.")
                    % {"service": slot.service.name, "species": pet.species},
                    "details": {"accepted": sorted(s.lower() for s in slot.service.species)},
                }
            )
        else:
            species = pet.species
    limit = _limit_reason(actor=actor)
    if limit is not None:
        reasons.append(limit)
    entry = WaitlistEntry.objects.filter(
        slot_id=slot.id, user_id=actor.sub, status__in=[EntryStatus.WAITING]
    ).first()
    next_filters: dict[str, Any] = {
        "clinic_id": slot.clinic_id,
        "service_id": slot.service_id,
        "start_from": now,
        "available": True,
    }
    if species:
        next_filters["species"] = species
    found = slot_search(filters=next_filters, page=1, page_size=NEXT_SLOTS + 1, now=now)
    return {
        "slot_id": str(slot.id),
        "bookable": not reasons,
        "reasons": reasons,
        "notes": _own_notes(actor=actor, slot=slot, now=now, zone=zone),
        "waitlist_position": waitlist_position(entry) if entry else None,
        "waitlist_entry_id": str(entry.id) if entry else None,
        "next_slots": [row for row in found["results"] if row["id"] != str(slot.id)][:NEXT_SLOTS],
    }


def _rule_reason(
    code: str, *, slot: Slot, rules: booking_rules.BookingRules, zone: ZoneInfo, holds: dict
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if code == booking_rules.SLOT_FULL:
        earliest = holds["earliest"]
        details = {
            "capacity": slot.capacity,
            "booked": slot.booked_count,
            "held": holds["live"],
            "earliest_hold_expires_at": api_timestamp(earliest) if earliest else None,
        }
        message = gettext(
            "All %(capacity)s places are taken: %(booked)s booked, %(held)s held."
        ) % {
            "capacity": slot.capacity,
            "booked": slot.booked_count,
            "held": holds["live"],
        }
        if holds["for_the_line"]:
            details["expired_for_the_line"] = holds["for_the_line"]
            message += " " + gettext(
                "%(expired)s more expired and go to the owners waiting first."
            ) % {"expired": holds["for_the_line"]}
        if earliest:
            message += " " + gettext("The earliest hold expires at %(time)s.") % {
                "time": _local(earliest, zone)
            }
    elif code == booking_rules.SLOT_CLOSED:
        details = _closed_by(slot)
        message = gettext("The clinic has closed this slot.")
    elif code == booking_rules.TOO_LATE_TO_BOOK:
        edge = booking_rules.notice_edge(start_at=slot.start_at, rules=rules)
        details = {
            "min_notice_minutes": rules.min_notice_minutes,
            "last_hold_at": api_timestamp(edge),
        }
        message = gettext(
            "Too soon: this service is booked at least %(minutes)s minutes ahead (until %(time)s)."
        ) % {"minutes": rules.min_notice_minutes, "time": _local(edge, zone)}
    elif code == booking_rules.BEYOND_BOOKING_HORIZON:
        opens = slot.start_at.astimezone(zone).date() - dt.timedelta(
            days=rules.booking_horizon_days
        )
        details = {
            "booking_horizon_days": rules.booking_horizon_days,
            "opens_on": opens.isoformat(),
        }
        message = gettext("Too far ahead: bookings open %(days)s days before, on %(date)s.") % {
            "days": rules.booking_horizon_days,
            "date": opens.isoformat(),
        }
    elif code == booking_rules.SLOT_STARTED:
        message = gettext("This slot has already started.")
    elif code == booking_rules.CLINIC_INACTIVE:
        message = gettext("The clinic does not take bookings.")
    else:
        message = gettext("The clinic no longer offers this service.")
    return {"code": code, "message": message, "details": details}


def waitlist_stale_free(*, stale: int, waiting: int) -> int:
    """Of `stale` holds past their expiry (not yet expired by the job) on a slot with `waiting`
    owners in line, how many units a hold from outside the line would get: the hold's lazy
    expiry gives them back through the waiting list's hook, which offers them to the line
    first. No line: all of them."""
    return max(0, stale - waiting)


def _own_notes(
    *, actor: Principal, slot: Slot, now: dt.datetime, zone: ZoneInfo
) -> list[dict[str, Any]]:
    """What the caller already has on this slot: `already_booked` (with the reference) and
    `already_held` (until when). Information only: no hold is refused for it (a second pet, or
    the same pet again, may be held; the bookings-per-pet-per-day limit is checked at
    confirm), so it never makes `bookable` false."""
    found = []
    booking = (
        Booking.objects.filter(
            slot_id=slot.id,
            user_id=actor.sub,
            status__in=[BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED],
        )
        .only("id", "reference")
        .first()
    )
    if booking is not None:
        found.append(
            {
                "code": "already_booked",
                "message": gettext("You already booked this slot (%(reference)s).")
                % {"reference": booking.reference},
                "details": {"booking_id": str(booking.id), "reference": booking.reference},
            }
        )
    hold = (
        Reservation.objects.filter(
            slot_id=slot.id, user_id=actor.sub, status=ReservationStatus.HELD, expires_at__gt=now
        )
        .only("id", "expires_at")
        .first()
    )
    if hold is not None:
        found.append(
            {
                "code": "already_held",
                "message": gettext("You hold this slot until %(time)s; confirm the hold.")
                % {"time": _local(hold.expires_at, zone)},
                "details": {
                    "reservation_id": str(hold.id),
                    "expires_at": api_timestamp(hold.expires_at),
                },
            }
        )
    return found


def _limit_reason(*, actor: Principal) -> dict[str, Any] | None:
    """`limit_exceeded` when a hold would pass the caller's live-hold limit: the hold's own
    count (`reservations.limits.live_holds_of`), live holds plus waiting entries."""
    live, waiting, maximum = live_holds_of(owner_id=actor.sub)
    if live + waiting + 1 <= maximum:
        return None
    return {
        "code": "limit_exceeded",
        "message": gettext(
            "You already hold %(live)s slots and wait for %(waiting)s, together the most one "
            "owner may have at once (%(max)s); confirm, release or leave one first."
        )
        % {"live": live, "waiting": waiting, "max": maximum},
        "details": {"limit": "live_holds_per_owner", "max": maximum},
    }
