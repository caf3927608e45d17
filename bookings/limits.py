"""Fair use at confirm time (issue 12): unpaid bookings per owner and future bookings per pet
on one day (the clinic's day). Counted under the owner's lock before the confirm's transaction
(`reservations.limits.fair_use_guard` says why not inside it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from django.utils import timezone

from reservations.limits import limit_refuse, limits_for
from reservations.models import Reservation

from .models import Booking, BookingStatus

ACTIVE = (BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED)


def booking_limits_check(*, reservation: Reservation) -> None:
    """Refuse a booking of `reservation` (its slot, clinic and service loaded) that would pass
    the owner's unpaid-booking limit or the pet's bookings-per-day limit."""
    booking_group_limits_check(reservations=[reservation])


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
    zone = ZoneInfo(slot.clinic.timezone)
    day = slot.start_at.astimezone(zone).date()
    day_start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    for reservation in reservations:
        same_day = Booking.objects.filter(
            user_id=owner_id,
            pet_id=reservation.pet_id,
            status__in=ACTIVE,
            slot__start_at__gte=max(day_start, timezone.now()),
            slot__start_at__lt=day_end,
        ).count()
        if same_day >= limits.bookings_per_pet_per_day:
            refusal = limit_refuse(
                limit="bookings_per_pet_per_day", maximum=limits.bookings_per_pet_per_day
            )
            if len(reservations) > 1:
                refusal.details["pet_id"] = reservation.pet_id
            raise refusal
