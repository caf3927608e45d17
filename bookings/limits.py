"""Fair use at confirm time (issue 12), and when an owner moves a booking: unpaid bookings per
owner and future bookings per pet on one day (the clinic's day). Counted under the owner's lock
before the write's transaction (`reservations.limits.fair_use_guard` says why not inside it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from petpro_booking.core.db import prepared_cursor
from reservations.limits import limit_refuse, limits_for
from reservations.models import Reservation
from slots.models import Slot

from .models import Booking, BookingStatus

ACTIVE = (BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED)


# The confirm's check in one statement with no ORM compilation (it runs on every confirm): the
# owner's unpaid bookings (counted only when the service takes payment), the pet's live
# bookings on the slot's clinic day, and support's override of both limits, if any. What
# booking_group_limits_check counts, for one pet.
_CONFIRM_LIMITS_SQL = (
    "SELECT (SELECT count(*) FROM bookings"
    " WHERE %s AND user_id = %s AND status = 'pending_payment'),"
    " (SELECT count(*) FROM bookings b JOIN slots s ON s.id = b.slot_id"
    " WHERE b.user_id = %s AND b.pet_id = %s AND b.status IN ('pending_payment', 'confirmed')"
    " AND s.start_at >= %s AND s.start_at < %s),"
    " (SELECT max_unpaid_bookings FROM owner_limits WHERE user_id = %s),"
    " (SELECT max_bookings_per_pet_per_day FROM owner_limits WHERE user_id = %s)"
)


def booking_limits_check(*, reservation: Reservation) -> None:
    """Refuse a booking of `reservation` (its slot, clinic and service loaded) that would pass
    the owner's unpaid-booking limit or the pet's bookings-per-day limit."""
    owner_id, slot = reservation.user_id, reservation.slot
    requires_payment = bool(slot.service.requires_payment)
    day_from, day_to = _clinic_day(slot)
    with prepared_cursor() as cursor:
        cursor.execute(
            _CONFIRM_LIMITS_SQL,
            [
                requires_payment,
                owner_id,
                owner_id,
                reservation.pet_id,
                day_from,
                day_to,
                owner_id,
                owner_id,
            ],
        )
        unpaid, same_day, max_unpaid, max_per_day = cursor.fetchone()
    max_unpaid = settings.FAIR_USE_MAX_UNPAID_BOOKINGS if max_unpaid is None else max_unpaid
    if requires_payment and unpaid + 1 > max_unpaid:
        raise limit_refuse(limit="unpaid_bookings_per_owner", maximum=max_unpaid)
    if max_per_day is None:
        max_per_day = settings.FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY
    if same_day >= max_per_day:
        raise limit_refuse(limit="bookings_per_pet_per_day", maximum=max_per_day)


def _clinic_day(slot: Slot) -> tuple[dt.datetime, dt.datetime]:
    """[from, to) of the slot's clinic-local day that still lies ahead (past bookings of the
    day do not count)."""
    zone = ZoneInfo(slot.clinic.timezone)
    day = slot.start_at.astimezone(zone).date()
    day_start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return max(day_start, timezone.now()), day_end


def booking_group_limits_check(*, reservations: Sequence[Reservation]) -> None:
    """The same for the bookings of a pet group made at once (issue 15), their slot, clinic
    and service loaded: the unpaid limit counts every booking of the group; the per-day limit
    is checked for each pet."""
    owner_id = reservations[0].user_id
    slot = reservations[0].slot
    limits = limits_for(owner_id=owner_id)
    if slot.service.requires_payment:
        unpaid = Booking.objects.filter(
            user_id=owner_id, status=BookingStatus.PENDING_PAYMENT
        ).count()
        if unpaid + len(reservations) > limits.unpaid_bookings:
            raise limit_refuse(limit="unpaid_bookings_per_owner", maximum=limits.unpaid_bookings)
    _per_day_check(
        owner_id=owner_id,
        pet_ids=[reservation.pet_id for reservation in reservations],
        day=_clinic_day(slot),
        maximum=limits.bookings_per_pet_per_day,
    )


def booking_move_limits_check(*, moving: Sequence[Booking], target: Slot) -> None:
    """Under `fair_use_guard`: an owner's reschedule of `moving` (one booking, or a group's)
    onto `target` (its clinic loaded) must not take a pet past its bookings-per-day limit on
    the target's clinic day. The moving bookings themselves do not count there (a move within
    one day adds nothing); the unpaid limit does not change with a move."""
    owner_id = moving[0].user_id
    _per_day_check(
        owner_id=owner_id,
        pet_ids=[booking.pet_id for booking in moving],
        day=_clinic_day(target),
        maximum=limits_for(owner_id=owner_id).bookings_per_pet_per_day,
        leaving=[booking.id for booking in moving],
    )


def _per_day_check(
    *,
    owner_id: str,
    pet_ids: list[str],
    day: tuple[dt.datetime, dt.datetime],
    maximum: int,
    leaving: Sequence[object] = (),
) -> None:
    """Refuse when one of `pet_ids` already has `maximum` live bookings in `day` ([from, to)),
    `leaving` (bookings that move) not counted; with several pets, the refusal names the pet."""
    day_from, day_to = day
    for pet_id in pet_ids:
        same_day = (
            Booking.objects.filter(
                user_id=owner_id,
                pet_id=pet_id,
                status__in=ACTIVE,
                slot__start_at__gte=day_from,
                slot__start_at__lt=day_to,
            )
            .exclude(id__in=list(leaving))
            .count()
        )
        if same_day >= maximum:
            refusal = limit_refuse(limit="bookings_per_pet_per_day", maximum=maximum)
            if len(pet_ids) > 1:
                refusal.details["pet_id"] = pet_id
            raise refusal
