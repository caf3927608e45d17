"""Fair use of capacity (issue 12): how many live holds one owner may have, and the limits
the bookings app checks at confirm time. Checked inside the hold's SERIALIZABLE transaction,
so parallel requests of one owner cannot get past a limit (one of them is retried and then
sees the other's hold)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from .errors import LimitExceeded
from .models import OwnerLimit, Reservation, ReservationStatus


@dataclass(frozen=True)
class FairUseLimits:
    live_holds: int
    unpaid_bookings: int
    bookings_per_pet_per_day: int


def limits_for(*, owner_id: str) -> FairUseLimits:
    """The settings' defaults, raised (or lowered) by support's override for this owner."""
    override = OwnerLimit.objects.filter(user_id=owner_id).first()

    def pick(field: str, default: int) -> int:
        value = getattr(override, field, None) if override else None
        return default if value is None else value

    return FairUseLimits(
        live_holds=pick("max_live_holds", settings.FAIR_USE_MAX_LIVE_HOLDS),
        unpaid_bookings=pick("max_unpaid_bookings", settings.FAIR_USE_MAX_UNPAID_BOOKINGS),
        bookings_per_pet_per_day=pick(
            "max_bookings_per_pet_per_day", settings.FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY
        ),
    )


def limit_refuse(*, limit: str, maximum: int) -> LimitExceeded:
    return LimitExceeded(
        f"Fair-use limit reached: at most {maximum} ({limit.replace('_', ' ')}).",
        details={"limit": limit, "max": maximum},
    )


def hold_limits_check(*, owner_id: str, adding: int = 1) -> None:
    """Inside the hold transaction: refuse `adding` holds (one per pet of a group) that would
    take the owner past their live-hold limit."""
    maximum = limits_for(owner_id=owner_id).live_holds
    live = Reservation.objects.filter(
        user_id=owner_id, status=ReservationStatus.HELD, expires_at__gt=timezone.now()
    ).count()
    if live + adding > maximum:
        raise limit_refuse(limit="live_holds_per_owner", maximum=maximum)
