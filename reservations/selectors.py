"""Reads of holds for the API and admin."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone

from petpro_booking.core.errors import NotFound
from petpro_booking.core.http import uuid_or_none
from petpro_booking.core.principal import Principal

from .models import Reservation, ReservationStatus


def reservation_get_for(*, actor: Principal, reservation_id: uuid.UUID | str) -> Reservation:
    """The caller's own hold; anyone else's is 404, as if it did not exist."""
    key = uuid_or_none(reservation_id)
    reservation = Reservation.objects.filter(id=key, user_id=actor.sub).first() if key else None
    if reservation is None:
        raise NotFound("No such reservation.")
    return reservation


def reservation_list_live_for(*, actor: Principal) -> QuerySet[Reservation]:
    """The caller's holds that still hold a unit (held and not past expiry), soonest expiry
    first."""
    return Reservation.objects.filter(
        user_id=actor.sub, status=ReservationStatus.HELD, expires_at__gt=timezone.now()
    ).order_by("expires_at", "id")


def reservation_list_admin() -> QuerySet[Reservation]:
    return Reservation.objects.select_related("slot", "slot__clinic", "slot__service")


def reservation_group_for(*, actor: Principal, group_id: uuid.UUID | str) -> list[Reservation]:
    """The holds of one of the caller's groups, in the order the pets were named; another
    owner's group is 404, as if it did not exist."""
    key = uuid_or_none(group_id)
    holds = (
        list(
            Reservation.objects.filter(group_id=key, user_id=actor.sub).order_by("created_at", "id")
        )
        if key
        else []
    )
    if not holds:
        raise NotFound("No such reservation group.")
    return holds
