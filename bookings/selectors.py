"""Every read of the bookings app: scoped lists, one booking, its history (docs/security.md).

Visibility: owners see their own bookings, clinic staff their clinics', support (and services)
all. A booking the caller may not see is reported as not found, never as forbidden.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Case, Count, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from petpro_booking.core.errors import NotFound
from petpro_booking.core.http import uuid_or_not_found
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event

from .models import Booking, BookingStatus, PaymentRecord
from .services.history import BOOKING_AGGREGATE


def _visible_filter(principal: Principal) -> Q | None:
    """The rows `principal` may see; None means every row."""
    if principal.is_support or principal.is_service:
        return None
    visible = Q(pk__in=[])
    if principal.is_owner:
        visible |= Q(user_id=principal.sub)
    if principal.is_clinic_staff and principal.clinic_ids:
        visible |= Q(clinic_id__in=sorted(principal.clinic_ids))
    return visible


def booking_list_for(
    *,
    principal: Principal,
    status: str | None = None,
    clinic_id: str | None = None,
    reference: str | None = None,
) -> QuerySet[Booking]:
    latest_payment = PaymentRecord.objects.filter(booking_id=OuterRef("pk")).order_by("-created_at")
    # A booking of a pet group shows its group's payment (every record of a group carries the
    # group id): two plain index lookups rather than one OR.
    latest_group_payment = PaymentRecord.objects.filter(group_id=OuterRef("group_id")).order_by(
        "-created_at"
    )
    bookings = Booking.objects.select_related("slot__clinic", "slot__service").annotate(
        latest_payment_status=Case(
            When(group_id__isnull=True, then=Subquery(latest_payment.values("status")[:1])),
            default=Subquery(latest_group_payment.values("status")[:1]),
        )
    )
    if reference:
        bookings = bookings.filter(reference=reference.upper())
    visible = _visible_filter(principal)
    if visible is not None:
        bookings = bookings.filter(visible)
    if status:
        bookings = bookings.filter(status=status)
    if clinic_id:
        bookings = bookings.filter(clinic_id=clinic_id)
    return bookings.order_by("-created_at", "id")


def booking_get_for(*, principal: Principal, booking_id: uuid.UUID | str) -> Booking:
    key = uuid_or_not_found(booking_id, what="booking")
    booking = booking_list_for(principal=principal).filter(id=key).first()
    if booking is None:
        raise NotFound("No such booking.")
    return booking


def booking_events(
    *, principal: Principal, booking_id: uuid.UUID | str
) -> tuple[QuerySet[Event], bool]:
    """The booking's events, oldest first (404 when the booking is not visible), and whether
    the caller sees them whole: staff of the booking's clinic, support and services do; anyone
    else who sees the booking is its owner (`history_item`). Decided per booking, not per
    token: a token with the owner and the staff role is an owner at other clinics."""
    booking = booking_get_for(principal=principal, booking_id=booking_id)
    events = (
        Event.objects.filter(aggregate_type=BOOKING_AGGREGATE, aggregate_id=str(booking.id))
        .only("event_type", "created_at", "metadata", "payload", "aggregate_version")
        .order_by("aggregate_version")
    )
    return events, principal.can_manage_clinic(booking.clinic_id)


# What an owner never sees in their booking's history (issue 12): staff's internal notes.
OWNER_HIDDEN_DATA = frozenset({"internal_note"})


def history_item(event: Event, *, viewer: Principal, whole: bool) -> dict[str, Any]:
    """One history entry: `{event_type, occurred_at, actor, data}`. `whole` (staff of the
    booking's clinic, support, services: `booking_events`) shows everything; otherwise the
    viewer is the owner, the actor is only a role (`{"type": "staff"}`) unless it is the owner
    themselves, and internal notes are left out."""
    actor = dict(event.metadata.get("actor", {}))
    data = event.payload
    if not whole:
        if actor.get("id") != viewer.sub:
            actor = {"type": actor.get("type", "system")}
        data = {k: v for k, v in data.items() if k not in OWNER_HIDDEN_DATA}
    return {
        "event_type": event.event_type,
        "occurred_at": event.created_at,
        "actor": actor,
        "data": data,
    }


def owner_no_shows() -> Coalesce:
    """Per booking row: how many visits its owner missed, at any clinic (the no-show score
    support sees in the admin)."""
    missed = (
        Booking.objects.filter(user_id=OuterRef("user_id"), status=BookingStatus.NO_SHOW)
        .order_by()
        .values("user_id")
        .annotate(missed=Count("id"))
        .values("missed")[:1]
    )
    return Coalesce(Subquery(missed), Value(0))


def booking_payment_for(
    *, principal: Principal, booking_id: uuid.UUID | str
) -> tuple[PaymentRecord, bool]:
    """The latest payment of a booking the caller may see (404 before any payment; a
    booking of a pet group shows its group's payment), and whether the caller is the booking's
    owner: only they get the checkout link (it may name them at the provider)."""
    booking = booking_get_for(principal=principal, booking_id=booking_id)
    payment = payments_of(booking).order_by("-created_at").first()
    if payment is None:
        raise NotFound("This booking has no payment yet.")
    return payment, booking.user_id == principal.sub


def payments_of(booking: Booking) -> QuerySet[PaymentRecord]:
    """The booking's payment records; a booking of a pet group's are its group's (one record
    pays for the group, and every payment of a group carries the group id)."""
    if booking.group_id is None:
        return PaymentRecord.objects.filter(booking_id=booking.id)
    return PaymentRecord.objects.filter(group_id=booking.group_id)
