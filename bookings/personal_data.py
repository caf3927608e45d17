"""A person's data: export everything we hold about them (right of access) and erase it
(right to erasure), across holds, bookings, payments, history, events and idempotency records
(docs/security.md, "Personal data")."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.messaging.messages import NOTIFICATION_TEMPLATES
from integrations.models import LocalUser
from integrations.users.gateway import invalidate_user
from petpro_booking.core.crypto import owner_key
from petpro_booking.core.models import IdempotencyKey
from petpro_booking.core.principal import Principal
from petpro_booking.core.throttles import throttle_key_prefix
from petpro_booking.events.models import Event
from petpro_booking.events.services import event_append
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_release

from .models import (
    ActorType,
    Booking,
    BookingHistory,
    BookingStatus,
    PaymentRecord,
    PersonErasure,
)
from .services import booking_cancel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonDataPart:
    """Rows an app above bookings keeps about a person (the waiting list registers one, in its
    AppConfig.ready; bookings never imports it): `export(user_id)` adds keys to the export,
    `release(user_id)` ends what is live through that app's services before the erasure's
    transaction, `erase(user_id, pseudonym)` pseudonymises its rows inside it."""

    export: Callable[[str], dict[str, Any]]
    release: Callable[[str], int]
    erase: Callable[[str, str], int]


_parts: list[PersonDataPart] = []


def on_person_data(part: PersonDataPart) -> None:
    if part not in _parts:
        _parts.append(part)


ERASURE_REASON = "personal data erased at the owner's request"
ERASED = "[erased]"
PERSON_AGGREGATE = "person"
# Keys whose values inside events and stored responses are personal whatever they hold.
PERSONAL_KEYS = frozenset({"pet_name", "reason", "email", "phone", "name", "internal_note"})


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _event_ids_by_aggregate(aggregate_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    rows = (
        Event.objects.filter(aggregate_id__in=aggregate_ids)
        .order_by("id")
        .values_list("aggregate_id", "event_id")
    )
    for aggregate_id, event_id in rows:
        found[aggregate_id].append(str(event_id))
    return found


def person_data_export(*, user_id: str) -> dict[str, Any]:
    """Everything we hold about `user_id` as one JSON document, with the ids of the events
    that recorded it (to check against the event store). Empty lists for an unknown or
    erased person."""
    user_id = str(user_id)
    holds = list(Reservation.objects.filter(user_id=user_id).order_by("created_at", "id"))
    bookings = list(Booking.objects.filter(user_id=user_id).order_by("created_at", "id"))
    booking_ids = [booking.id for booking in bookings]
    events = _event_ids_by_aggregate(
        [str(hold.id) for hold in holds] + [str(booking_id) for booking_id in booking_ids]
    )
    payments = PaymentRecord.objects.filter(booking_id__in=booking_ids).order_by("created_at")
    history = BookingHistory.objects.filter(booking_id__in=booking_ids).order_by("at", "id")
    notifications = (
        Event.objects.filter(
            aggregate_id__in=[str(booking_id) for booking_id in booking_ids]
            + [str(hold.id) for hold in holds],
            event_type__in=list(NOTIFICATION_TEMPLATES),
            published_at__isnull=False,
        )
        .order_by("id")
        .values("event_id", "event_type", "aggregate_id", "published_at")
    )
    profile = LocalUser.objects.filter(id=user_id).prefetch_related("pets").first()
    document = {
        "user_id": user_id,
        "generated_at": timezone.now().isoformat(),
        "profile": None
        if profile is None
        else {
            "name": profile.name,
            "email": profile.email,
            "phone": profile.phone,
            "channels": profile.channels,
            "locale": profile.locale,
            "pets": [
                {"id": pet.id, "name": pet.name, "species": pet.species}
                for pet in profile.pets.all()
            ],
        },
        "holds": [
            {
                "id": str(hold.id),
                "slot_id": str(hold.slot_id),
                "pet_id": hold.pet_id,
                "pet_name": hold.pet_name,
                "status": hold.status,
                "expires_at": _iso(hold.expires_at),
                "created_at": _iso(hold.created_at),
                "event_ids": events.get(str(hold.id), []),
            }
            for hold in holds
        ],
        "bookings": [
            {
                "id": str(booking.id),
                "reference": booking.reference,
                "slot_id": str(booking.slot_id),
                "reservation_id": str(booking.reservation_id),
                "clinic_id": booking.clinic_id,
                "service_id": booking.service_id,
                "pet_id": booking.pet_id,
                "status": booking.status,
                "amount": str(booking.amount),
                "currency": booking.currency,
                "created_at": _iso(booking.created_at),
                "updated_at": _iso(booking.updated_at),
                "event_ids": events.get(str(booking.id), []),
            }
            for booking in bookings
        ],
        "payments": [
            {
                "id": str(payment.id),
                "booking_id": str(payment.booking_id),
                "payment_id": payment.payment_id,
                "amount": str(payment.amount),
                "currency": payment.currency,
                "status": payment.status,
                "refund_requested_at": _iso(payment.refund_requested_at),
                "created_at": _iso(payment.created_at),
            }
            for payment in payments
        ],
        "history": [
            {
                "booking_id": str(item.booking_id),
                "from_status": item.from_status,
                "to_status": item.to_status,
                "actor": _actor_shown_to(user_id, item),
                "reason": item.reason,
                "at": _iso(item.at),
            }
            for item in history
        ],
        "notifications": [
            {
                "event_id": str(row["event_id"]),
                "template": NOTIFICATION_TEMPLATES[row["event_type"]],
                "aggregate_id": row["aggregate_id"],
                "sent_at": _iso(row["published_at"]),
            }
            for row in notifications
        ],
    }
    for part in _parts:
        document.update(part.export(user_id))
    return document


def _actor_shown_to(user_id: str, item: BookingHistory) -> dict[str, str]:
    """Who changed a booking, as its owner may see it (the owner's history does the same):
    their own id, anyone else only by role (a staff member's or admin user's id is internal)."""
    if item.actor_id == user_id:
        return {"type": item.actor_type, "id": item.actor_id}
    return {"type": item.actor_type}


# --- erasure ---------------------------------------------------------------------------------


def scrub(value: Any, replacements: dict[str, str]) -> Any:
    """A copy of a JSON value where every occurrence of a key of `replacements` (ids, names) in
    a string is replaced and every value under a personal key (pet_name, reason, contact data)
    is tombstoned."""
    if isinstance(value, dict):
        return {
            key: (ERASED if key in PERSONAL_KEYS and item else scrub(item, replacements))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub(item, replacements) for item in value]
    if isinstance(value, str):
        if value in replacements:
            return replacements[value]
        for personal, replacement in replacements.items():  # inside free text too
            if len(personal) >= 3 and personal in value:
                value = value.replace(personal, replacement)
        return value
    return value


def _cancel_future_bookings(*, actor: Principal, user_id: str) -> int:
    """Through the normal cancel service (capacity, refunds, events as for any cancel)."""
    future = Booking.objects.filter(
        user_id=user_id,
        status__in=[BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED],
        slot__start_at__gt=timezone.now(),
    ).values_list("id", flat=True)
    cancelled = 0
    for booking_id in list(future):
        booking_cancel(actor=actor, booking_id=booking_id, reason=ERASURE_REASON)
        cancelled += 1
    return cancelled


def _release_live_holds(*, user_id: str) -> int:
    owner = Principal(sub=user_id, roles=frozenset({"pet_owner"}))
    live = Reservation.objects.filter(user_id=user_id, status=ReservationStatus.HELD)
    released = 0
    for reservation_id in list(live.values_list("id", flat=True)):
        reservation_release(actor=owner, reservation_id=reservation_id)
        released += 1
    return released


def _forget_cached(user_id: str) -> None:
    invalidate_user(user_id=user_id)
    delete_pattern = getattr(cache, "delete_pattern", None)  # django-redis; locmem expires
    if delete_pattern is not None:
        escaped = "".join(f"[{c}]" if c in "*?[]\\" else c for c in user_id)
        delete_pattern(f"{throttle_key_prefix('user', escaped)}*")


def person_erase(*, actor: Principal, user_id: str) -> PersonErasure:
    """Erase a person: cancel their future bookings and release their live holds through the
    normal services (capacity, refunds and events stay right), then, in one transaction,
    replace their ids by a pseudonym and tombstone names, reasons and contact data in
    bookings, holds, history, payment records, events and idempotency records (amounts,
    times, statuses and slot counters are kept), publish `PersonErased` and write the audit
    row. Running it again for the same id finds nothing left and erases nothing more."""
    user_id = str(user_id)
    subject_key = owner_key(user_id)
    cancelled = _cancel_future_bookings(actor=actor, user_id=user_id)
    released = _release_live_holds(user_id=user_id)
    for part in _parts:
        released += part.release(user_id)
    pseudonym = f"erased-{secrets.token_hex(8)}"
    with transaction.atomic():
        holds = list(
            Reservation.objects.select_for_update()
            .filter(user_id=user_id)
            .values_list("id", "pet_id", "pet_name")
        )
        bookings = Booking.objects.filter(user_id=user_id)
        booking_ids = list(bookings.values_list("id", flat=True))
        pet_ids = sorted(
            {pet_id for _, pet_id, _ in holds} | set(bookings.values_list("pet_id", flat=True))
        )
        pet_pseudonyms = {pet_id: f"{pseudonym}-p{n}" for n, pet_id in enumerate(pet_ids, 1)}
        replacements = {user_id: pseudonym, **pet_pseudonyms}
        replacements.update({name: ERASED for _, _, name in holds if name})
        for pet_id, pet_pseudonym in pet_pseudonyms.items():
            Reservation.objects.filter(user_id=user_id, pet_id=pet_id).update(pet_id=pet_pseudonym)
            Booking.objects.filter(user_id=user_id, pet_id=pet_id).update(pet_id=pet_pseudonym)
        Reservation.objects.filter(user_id=user_id).update(
            user_id=pseudonym, pet_name="", pet_name_lookup=""
        )
        Booking.objects.filter(id__in=booking_ids).update(user_id=pseudonym)
        history = BookingHistory.objects.filter(booking_id__in=booking_ids)
        history.exclude(actor_type=ActorType.SYSTEM).update(reason="", internal_note="")
        history.filter(actor_id=user_id).update(actor_id=pseudonym)
        payments = 0
        for payment in PaymentRecord.objects.filter(booking_id__in=booking_ids):
            PaymentRecord.objects.filter(id=payment.id).update(
                last_payload=scrub(payment.last_payload, replacements), checkout_url=""
            )
            payments += 1
        aggregate_ids = [str(i) for i in booking_ids] + [str(i) for i, _, _ in holds]
        events = Event.objects.filter(
            Q(aggregate_id__in=aggregate_ids)
            | Q(payload__contains={"user_id": user_id})
            | Q(metadata__actor__id=user_id)
        )
        tombstoned = 0
        for event_pk, payload, metadata in events.values_list("id", "payload", "metadata"):
            Event.objects.filter(id=event_pk).update(
                payload=scrub(payload, replacements), metadata=scrub(metadata, replacements)
            )
            tombstoned += 1
        idempotency = 0
        for record in IdempotencyKey.objects.filter(principal=user_id):
            IdempotencyKey.objects.filter(id=record.id).update(
                principal=pseudonym, response_body=scrub(record.response_body, replacements)
            )
            idempotency += 1
        for part in _parts:
            part.erase(user_id, pseudonym)
        LocalUser.objects.filter(id=user_id).delete()  # embedded mode's copy of the profile
        counts = {
            "bookings_cancelled": cancelled,
            "holds_released": released,
            "bookings": len(booking_ids),
            "holds": len(holds),
            "payments": payments,
            "events": tombstoned,
            "idempotency_records": idempotency,
        }
        who = actor.actor
        audit = PersonErasure.objects.create(
            subject_key=subject_key,
            pseudonym=pseudonym,
            erased_by_type=who["type"],
            erased_by_id=who["id"],
            counts=counts,
        )
        event_append(
            aggregate_type=PERSON_AGGREGATE,
            aggregate_id=pseudonym,
            event_type="PersonErased",
            data={
                "owner_key": subject_key,
                "erased_at": audit.erased_at.isoformat(),
                **counts,
            },
            actor=actor,
        )
        transaction.on_commit(lambda: _forget_cached(user_id))
    logger.info("person erased: %s as %s by %s", subject_key, pseudonym, who["id"])
    return audit
