"""A person's data: export everything we hold about them (right of access) and erase it
(right to erasure), across holds, bookings, payments, history, events and idempotency records
(docs/security.md, "Personal data")."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.db.models import F, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from integrations.messaging.messages import NOTIFYING_EVENT_TYPES, notification_template
from integrations.models import LocalPet, LocalUser
from integrations.users.gateway import invalidate_user
from petpro_booking.core.crypto import owner_key
from petpro_booking.core.models import IdempotencyKey
from petpro_booking.core.principal import ROLE_SUPPORT, Principal
from petpro_booking.core.progress import progress
from petpro_booking.core.throttles import throttle_key_prefix
from petpro_booking.events.models import Event
from petpro_booking.events.services import event_append
from reservations.models import OwnerLimit, Reservation, ReservationStatus
from reservations.services import reservation_release

from .models import (
    ActorType,
    Booking,
    BookingHistory,
    BookingStatus,
    ErasureRequest,
    PaymentRecord,
    PersonErasure,
)
from .services import booking_cancel

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class PersonDataPart:
    """Rows an app above bookings keeps about a person (the waiting list registers one, in its
    AppConfig.ready; bookings never imports it): `export(user_id)` adds keys to the export,
    `release(user_id)` ends what is live through that app's services before the erasure's
    transaction, `erase(user_id, pseudonym, pet_pseudonyms)` pseudonymises its rows inside it
    (each pet under the pseudonym its events and the person's other rows get; the erasure
    finds the pets in the events that name the owner); `aggregates(user_id)` the ids of its
    aggregates of the person (the export lists the notifications sent about them: a
    waiting-list offer's aggregate is the entry)."""

    export: Callable[[str], dict[str, Any]]
    release: Callable[[str], int]
    erase: Callable[[str, str, dict[str, str]], int]
    aggregates: Callable[[str], list[str]]


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
    # Every notification sent to them: about their holds and bookings, and about the
    # aggregates of the other apps' rows (a waiting-list offer's aggregate is the entry). By
    # aggregate id, an index lookup: an owner's GET /me/data never scans the event store.
    notifications = (
        Event.objects.filter(
            aggregate_id__in=[str(booking_id) for booking_id in booking_ids]
            + [str(hold.id) for hold in holds]
            + [aggregate for part in _parts for aggregate in part.aggregates(user_id)],
            event_type__in=list(NOTIFYING_EVENT_TYPES),
            published_at__isnull=False,
        )
        .order_by("id")
        .values("event_id", "event_type", "aggregate_id", "published_at", "payload")
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
                # What the payment provider last told us and the page it sent them to (these
                # may name them: the customer id, a description with the pet's name).
                "checkout_url": payment.checkout_url,
                "last_payload": payment.last_payload,
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
                "template": template,
                "aggregate_id": row["aggregate_id"],
                "sent_at": _iso(row["published_at"]),
            }
            for row in notifications
            if (template := notification_template(row["event_type"], row["payload"] or {}))
        ],
        # Support's raise of their fair-use limits (Admin -> Owner limits), with its reason.
        "owner_limits": [
            {
                "max_live_holds": limit.max_live_holds,
                "max_unpaid_bookings": limit.max_unpaid_bookings,
                "max_bookings_per_pet_per_day": limit.max_bookings_per_pet_per_day,
                "reason": limit.reason,
                "updated_at": _iso(limit.updated_at),
            }
            for limit in OwnerLimit.objects.filter(user_id=user_id)
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


# Keys whose values are the owner's id (in our payloads, stored responses and the payment
# provider's answers), and those whose values are pet ids (a string, or a list of them).
USER_KEYS = frozenset({"user_id", "owner_id", "customer_id", "actor_id", "principal", "sub"})
PET_KEYS = frozenset({"pet_id", "pet_ids"})


class Replacements:
    """What an erasure replaces: the owner's id and each of their pets' ids by pseudonyms
    (whole values only), their pets' names by ERASED (also as words inside free text)."""

    def __init__(self, *, user: dict[str, str], pets: dict[str, str], names: set[str]) -> None:
        self.user, self.pets, self.names = user, pets, frozenset(names)
        # Under a key we do not know, a value equal to either id is theirs (the owner's first).
        self.any = {**pets, **user}
        words = sorted((name for name in names if _is_word_like(name)), key=len, reverse=True)
        self.in_text = (
            re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, words))})(?!\w)") if words else None
        )

    def ids_under(self, key: str | None) -> dict[str, str]:
        if key in USER_KEYS:
            return self.user
        if key in PET_KEYS:
            return self.pets
        return self.any

    def text(self, value: str, key: str | None) -> str:
        ids = self.ids_under(key)
        if value in ids:
            return ids[value]
        if value in self.names:
            return ERASED
        return self.in_text.sub(ERASED, value) if self.in_text is not None else value


def _is_word_like(name: str) -> bool:
    """A name that may be looked for inside free text: three characters or more, a letter
    among them (a name of digits only, "2026", would match inside times and amounts)."""
    return len(name) >= 3 and any(c.isalpha() for c in name)


def scrub(value: Any, replacements: Replacements, key: str | None = None) -> Any:
    """A copy of a JSON value with the person taken out: a string (or, under an id key, a
    number) that *is* the owner's or a pet's id is replaced by its pseudonym; a pet's name is
    replaced where it is the whole value or a word of free text; every value under a personal
    key (pet_name, reason, contact data) is tombstoned. An id is never looked for inside
    another value: "2026" must not change "2026-12-10T02:00:00+00:00" or "20260.00"."""
    if isinstance(value, dict):
        return {
            k: (ERASED if k in PERSONAL_KEYS and item else scrub(item, replacements, k))
            for k, item in value.items()
        }
    if isinstance(value, list):
        return [scrub(item, replacements, key) for item in value]  # pet_ids: [...] keeps its key
    if isinstance(value, str):
        return replacements.text(value, key)
    if isinstance(value, int) and not isinstance(value, bool) and key in USER_KEYS | PET_KEYS:
        return replacements.ids_under(key).get(str(value), value)
    return value


# Where a command shows how far an erasure is (`core.progress`); None: nowhere. A context
# variable, so the steps' signatures stay those of the services they call.
_progress_to: ContextVar[Any] = ContextVar("erasure_progress_to", default=None)


def _steps(items: list[T], description: str) -> Iterable[T]:
    stream = _progress_to.get()
    return items if stream is None else progress(items, description=description, stream=stream)


def _cancel_future_bookings(*, actor: Principal, user_id: str) -> int:
    """Through the normal cancel service (capacity, refunds, events as for any cancel)."""
    future = Booking.objects.filter(
        user_id=user_id,
        status__in=[BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED],
        slot__start_at__gt=timezone.now(),
    ).values_list("id", flat=True)
    cancelled = 0
    for booking_id in _steps(list(future), "cancelling future bookings"):
        booking_cancel(actor=actor, booking_id=booking_id, reason=ERASURE_REASON)
        cancelled += 1
    return cancelled


def _release_live_holds(*, user_id: str) -> int:
    owner = Principal(sub=user_id, roles=frozenset({"pet_owner"}))
    live = Reservation.objects.filter(user_id=user_id, status=ReservationStatus.HELD)
    released = 0
    for reservation_id in _steps(list(live.values_list("id", flat=True)), "releasing holds"):
        reservation_release(actor=owner, reservation_id=reservation_id)
        released += 1
    return released


def _forget_cached(user_id: str) -> None:
    invalidate_user(user_id=user_id)
    delete_pattern = getattr(cache, "delete_pattern", None)  # django-redis; locmem expires
    if delete_pattern is not None:
        escaped = "".join(f"[{c}]" if c in "*?[]\\" else c for c in user_id)
        delete_pattern(f"{throttle_key_prefix('user', escaped)}*")


def _pets_and_names(user_id: str, *, pets: set[str], names: set[str]) -> tuple[list[str], set[str]]:
    """Every pet id and pet name of the person we can find: those of their holds and bookings
    (given), of every event that names them as the owner (a pet only ever on a waiting list or
    in a group hold is there), and of the embedded mode's profile."""
    for pet_id, name in Event.objects.filter(payload__contains={"user_id": user_id}).values_list(
        "payload__pet_id", "payload__pet_name"
    ):
        if isinstance(pet_id, str) and pet_id:
            pets.add(pet_id)
        if isinstance(name, str) and name and name != ERASED:
            names.add(name)
    for pet_id, name in LocalPet.objects.filter(owner_id=user_id).values_list("id", "name"):
        pets.add(pet_id)
        names.add(name)
    return sorted(pets), names


def _idempotency_records_scrub(user_id: str, pseudonym: str, replacements: Replacements) -> int:
    """The person's own records (principal = their id) and those of anyone else whose stored
    response names them or their pets (staff's cancel of their booking): ids replaced by
    pseudonyms, names and reasons tombstoned. The records stay so a replay within their 24 h
    still answers what the first request did (now with pseudonyms) instead of running again."""
    needles = Q(principal=user_id)
    for value in [user_id, *replacements.pets]:
        # The stored JSON as text holds a string value with its quotes, escaped one way or
        # the other (PostgreSQL keeps non-ASCII as is, SQLite's JSON escapes it).
        for quoted in {json.dumps(value), json.dumps(value, ensure_ascii=False)}:
            needles |= Q(body_text__contains=quoted)
    candidates = IdempotencyKey.objects.annotate(
        body_text=Cast("response_body", TextField())
    ).filter(needles)
    changed = 0
    for record_id, principal, body in candidates.values_list("id", "principal", "response_body"):
        scrubbed = scrub(body, replacements)
        if principal != user_id and scrubbed == body:
            continue  # the value matched under a key where it is someone else's (a pet id)
        IdempotencyKey.objects.filter(id=record_id).update(
            principal=pseudonym if principal == user_id else principal, response_body=scrubbed
        )
        changed += 1
    return changed


def _owner_limits_erase(user_id: str, pseudonym: str) -> int:
    """Support's fair-use override of the person (a free-text reason about them): deleted, it
    has no use once they are gone; the admin's log of it keeps the change, under the
    pseudonym (its `object_repr` was the owner's id)."""
    deleted = OwnerLimit.objects.filter(user_id=user_id).delete()[0]
    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(OwnerLimit), object_repr=user_id
    ).update(object_repr=pseudonym)
    return deleted


def person_erase(*, actor: Principal, user_id: str, progress_to: Any = None) -> PersonErasure:
    """Erase a person: cancel their future bookings and release their live holds through the
    normal services (capacity, refunds and events stay right), then, in one transaction,
    replace their ids by a pseudonym and tombstone names, reasons and contact data in
    bookings, holds, history, payment records, events and idempotency records (amounts,
    times, statuses and slot counters are kept), publish `PersonErased` and write the audit
    row. Running it again for the same id finds nothing left and erases nothing more.

    The request is written down (`ErasureRequest`, committed) before anything changes and
    deleted by the last transaction: an erasure that stops between its cancellations and that
    transaction (a crash, a slot another change keeps busy) is finished by `erasures_resume`.
    Two runs for one person at once make one audit row: the second finds the request gone and
    returns the first's. `progress_to`: a stream shown how far the cancellations are."""
    user_id = str(user_id)
    ErasureRequest.objects.get_or_create(user_id=user_id, defaults={"requested_by_id": actor.sub})
    shown = _progress_to.set(progress_to)
    try:
        return _erase(actor=actor, user_id=user_id)
    except Exception as exc:
        _erasure_stopped(user_id, exc)
        raise
    finally:
        _progress_to.reset(shown)


def _erasure_stopped(user_id: str, exc: Exception) -> None:
    """Note on the request that an attempt stopped (the job tries again). Never hides `exc`:
    with the database gone the note is skipped."""
    code = str(getattr(exc, "code", "") or type(exc).__name__)[:64]
    with contextlib.suppress(DatabaseError):
        ErasureRequest.objects.filter(user_id=user_id).update(
            attempts=F("attempts") + 1, last_error=code
        )


def erasures_resume(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Finish the erasures asked for more than ERASURE_RESUME_AFTER_SECONDS ago that have not
    finished (the beat job): each as its support agent asked it, so the audit row and the
    cancellations name them. One that stops again stays for the next run; those that stopped
    least often go first, so a few that keep failing cannot hold the rest back."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=settings.ERASURE_RESUME_AFTER_SECONDS)
    report = {"finished": 0, "stopped": 0}
    asked_before = ErasureRequest.objects.filter(requested_at__lt=cutoff)
    for asked in asked_before.order_by("attempts", "requested_at")[:100]:
        try:
            finished = erasure_resume_one(asked)
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: the rest wait for the next run
        except Exception:
            logger.exception("erasure asked by %s stopped again", asked.requested_by_id)
            report["stopped"] += 1
            continue
        report["finished"] += finished
    return report


def erasure_resume_one(asked: ErasureRequest) -> bool:
    """Finish one written-down erasure; False when another run finished it meanwhile. Never
    writes the request again (`person_erase` would: a request finished since it was read
    must not be asked for a second time)."""
    if not ErasureRequest.objects.filter(pk=asked.pk).exists():
        return False
    actor = Principal(sub=asked.requested_by_id, roles=frozenset({ROLE_SUPPORT}))
    try:
        _erase(actor=actor, user_id=asked.user_id)
    except Exception as exc:
        _erasure_stopped(asked.user_id, exc)
        raise
    return True


def _erase(*, actor: Principal, user_id: str) -> PersonErasure:
    subject_key = owner_key(user_id)
    cancelled = _cancel_future_bookings(actor=actor, user_id=user_id)
    released = _release_live_holds(user_id=user_id)
    for part in _parts:
        released += part.release(user_id)
    pseudonym = f"erased-{secrets.token_hex(8)}"
    with transaction.atomic():
        asked = ErasureRequest.objects.select_for_update().filter(user_id=user_id)
        if not list(asked.values_list("pk", flat=True)):
            finished = PersonErasure.objects.filter(subject_key=subject_key).first()
            if finished is not None:  # another run finished it while this one cancelled
                return finished
        holds = list(
            Reservation.objects.select_for_update()
            .filter(user_id=user_id)
            .values_list("id", "pet_id", "pet_name")
        )
        bookings = Booking.objects.filter(user_id=user_id)
        booking_ids = list(bookings.values_list("id", flat=True))
        pet_ids, names = _pets_and_names(
            user_id,
            pets={pet_id for _, pet_id, _ in holds}
            | set(bookings.values_list("pet_id", flat=True)),
            names={name for _, _, name in holds if name},
        )
        pet_pseudonyms = {pet_id: f"{pseudonym}-p{n}" for n, pet_id in enumerate(pet_ids, 1)}
        replacements = Replacements(user={user_id: pseudonym}, pets=pet_pseudonyms, names=names)
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
        idempotency = _idempotency_records_scrub(user_id, pseudonym, replacements)
        owner_limits = _owner_limits_erase(user_id, pseudonym)
        for part in _parts:
            part.erase(user_id, pseudonym, pet_pseudonyms)
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
            counts={**counts, "owner_limits": owner_limits},
            pet_keys={owner_key(pet_id): alias for pet_id, alias in pet_pseudonyms.items()},
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
        ErasureRequest.objects.filter(user_id=user_id).delete()
        # After the commit, and never its failure: with Redis down the entries expire anyway.
        transaction.on_commit(lambda: _forget_cached(user_id), robust=True)
    logger.info("person erased: %s as %s by %s", subject_key, pseudonym, who["id"])
    return audit
