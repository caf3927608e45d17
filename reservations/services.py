"""Every write of holds: create, release, expire (job and lazy), and the fenced confirm step.

Every writer goes through the slot-write gateway (`slots.locking.slot_write`). Lock order,
followed by every writer of holds and by the expiry job: the slot row first, then the
reservation rows of that slot. Holding the slot row means no one else changes that slot's holds
meanwhile, and two writers never wait on each other in a circle.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections import Counter
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, F, Value, When
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext

from integrations.users import Pet, pet_get
from petpro_booking.core import metrics
from petpro_booking.core.db import RowInserter, RowReader
from petpro_booking.core.errors import ApplicationError, NotFound, ValidationFailed
from petpro_booking.core.logging import bind_log_context
from petpro_booking.core.principal import SYSTEM, Principal
from petpro_booking.events.models import Event
from petpro_booking.events.services import (
    EVENT_INSERTER,
    event_new,
    event_write,
    events_append,
    events_appended,
)
from slots.errors import SlotUnavailable
from slots.locking import slot_locked_now, slot_rows_lock, slot_write
from slots.models import Slot
from slots.rules import slot_hold_check, species_accepted
from slots.services import slot_return_hold, slot_return_holds, slot_take_hold

from .errors import InvalidPet, ReservationExpired, ReservationNotHeld
from .events import RESERVATION_AGGREGATE, reservation_event_data
from .limits import fair_use_guard, hold_limits_check
from .models import GROUP_MAX_PETS, Reservation, ReservationStatus
from .selectors import reservation_get_for, reservation_group_for

EXPIRY_BATCH_SIZE = 200


# The hold path's read and write, on every hold: SQL built once, not per request.
_SLOT_WITH_NAMES = RowReader(Slot, "clinic", "service")
_RESERVATION_INSERT = RowInserter(Reservation)


def _slot_with_names(slot_id: uuid.UUID | str) -> Slot:
    slot = _SLOT_WITH_NAMES.get(slot_id)
    if slot is None:
        raise NotFound("No such slot.")
    return slot


def _append(reservation: Reservation, *, slot: Slot, event_type: str, actor: Principal) -> None:
    """One event per change of a hold, and every change bumps its version: the event's
    aggregate version is the hold's new version (Created 1, then one of Released, Expired,
    Confirmed 2)."""
    event_write(_event(reservation, slot=slot, event_type=event_type, actor=actor))


def _event(reservation: Reservation, *, slot: Slot, event_type: str, actor: Principal) -> Event:
    """`_append`'s event, not yet written (the caller inserts it with its own)."""
    return event_new(
        aggregate_type=RESERVATION_AGGREGATE,
        aggregate_id=reservation.id,
        event_type=event_type,
        data=reservation_event_data(reservation, slot=slot),
        actor=actor,
        aggregate_version=reservation.version,
    )


def _expire_locked(
    reservations: list[Reservation], *, slots: dict[Any, Slot], now: dt.datetime, how: str
) -> int:
    """Expire holds (row-locked, held, past expiry) whose slot rows this transaction has
    locked; gives their units back. Set-wise: one UPDATE of the holds, one UPDATE per distinct
    count of the slots, one INSERT of the events, whatever the number of holds."""
    if not reservations:
        return 0
    Reservation.objects.filter(id__in=[r.id for r in reservations]).update(
        status=ReservationStatus.EXPIRED, version=F("version") + 1, updated_at=now
    )
    per_slot: Counter[Any] = Counter(r.slot_id for r in reservations)
    slot_return_holds(
        held_by_slot=dict(per_slot),
        clinic_ids={slots[slot_id].clinic_id for slot_id in per_slot},
    )
    for reservation in reservations:
        reservation.status = ReservationStatus.EXPIRED
        reservation.version += 1
    events_append(
        aggregate_type=RESERVATION_AGGREGATE,
        event_type="ReservationExpired",
        items=[(r.id, reservation_event_data(r, slot=slots[r.slot_id])) for r in reservations],
        versions=[r.version for r in reservations],
        actor=SYSTEM,
    )
    metrics.EXPIRED_HOLDS.labels(how=how).inc(len(reservations))
    return len(reservations)


def reservation_expire_stale(*, slot: Slot) -> int:
    """Lazy expiry of one slot's holds past their expiry, so they never block anyone, even
    before the job runs. `slot` is row-locked in this transaction by the slot-write gateway
    (clinic and service loaded for the event payloads, its `db_now` the clock every expiry
    decision uses). Returns how many holds expired."""
    now = slot_locked_now(slot)
    stale = list(
        Reservation.objects.select_for_update().filter(
            slot_id=slot.id, status=ReservationStatus.HELD, expires_at__lte=now
        )
    )
    return _expire_locked(stale, slots={slot.id: slot}, now=now, how="lazy")


def _pet_for_hold(*, actor: Principal, slot: Slot, pet_id: str, field: str) -> Pet:
    """The caller's pet if the slot's service accepts its species (a network call: before any
    lock); 400 invalid_pet otherwise. A group's errors name the pet under `field`."""

    def refuse(message: str, reason: str) -> InvalidPet:
        if field == "pet_id":
            return InvalidPet(message, details={"pet_id": [reason]})
        return InvalidPet(message, details={field: {pet_id: [reason]}})

    pet = pet_get(user_id=actor.sub, pet_id=pet_id)
    if pet is None:
        raise refuse("This pet is not one of yours.", "Not your pet.")
    if not species_accepted(accepted=slot.service.species, species=pet.species):
        accepted = ", ".join(sorted({species.lower() for species in slot.service.species}))
        raise refuse(
            gettext("%(service)s does not accept a %(species)s.")
            % {"service": slot.service.name, "species": pet.species},
            gettext("Species accepted: %(species)s.") % {"species": accepted},
        )
    return pet


# `petpro_holds_total{outcome}` of a refused hold: its error code, but for the two kept from
# before the codes were counted (dashboards use them).
_REFUSED_AS = {"slot_busy": "busy", "slot_unavailable": "unavailable"}


def _count_refused(exc: ApplicationError) -> None:
    metrics.HOLDS.labels(outcome=_REFUSED_AS.get(exc.code, exc.code)).inc()


def _take_units(slot: Slot, holds: list[tuple[Reservation, Event]]) -> bool:
    """Inside the hold's slot write: one statement takes a unit per hold when there is room
    (the conditional UPDATE, which locks the slot row, hence lock_rows=False) and inserts the
    holds and their events, only if it took them (`slot_take_hold` with rows), and it travels
    with the transaction's BEGIN and COMMIT: the common hold writes in one round trip. Only a
    full slot pays for the row lock and the lazy expiry (holds past their expiry never block
    anyone), in a new transaction (the first one wrote nothing), then tries once more."""
    rows = _rows_of(holds)
    if not slot_take_hold(slot_id=slot.id, count=len(holds), rows=rows, commit=True):
        if not reservation_expire_stale(slot=slot_rows_lock(slot.id)[slot.id]):
            return False
        # closed: the expiries commit anyway
        if not slot_take_hold(slot_id=slot.id, count=len(holds), rows=rows):
            return False
    events_appended([event for _, event in holds])
    return True


def _rows_of(holds: list[tuple[Reservation, Event]]) -> list[tuple[RowInserter[Any], Any]]:
    """Each hold's row and its event's, as `slot_take_hold` inserts them."""
    return [
        row
        for reservation, event in holds
        for row in ((_RESERVATION_INSERT, reservation), (EVENT_INSERTER, event))
    ]


def _hold_expiry() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.RESERVATION_TTL_SECONDS)


def _hold_new(
    *,
    slot: Slot,
    user_id: str,
    pet_id: str,
    pet_name: str,
    actor: Principal,
    expires_at: dt.datetime,
    group_id: uuid.UUID | None = None,
) -> tuple[Reservation, Event]:
    """A hold not yet written and its ReservationCreated event (version 1)."""
    reservation = Reservation(
        slot=slot,
        user_id=user_id,
        pet_id=pet_id,
        pet_name=pet_name,
        status=ReservationStatus.HELD,
        expires_at=expires_at,
        group_id=group_id,
    )
    event = event_new(
        aggregate_type=RESERVATION_AGGREGATE,
        aggregate_id=reservation.id,
        event_type="ReservationCreated",
        data=reservation_event_data(reservation, slot=slot),
        actor=actor,
        aggregate_version=reservation.version,
    )
    return reservation, event


def reservation_create(*, actor: Principal, slot_id: uuid.UUID | str, pet_id: str) -> Reservation:
    """Hold one unit of a slot for RESERVATION_TTL_SECONDS (docs/holds.md: the Redis lock, the
    SERIALIZABLE write, the fence and the constraints).

    The pet is checked before the lock (no network call under a lock); then the Redis lock
    lines contenders up, and one SERIALIZABLE transaction takes a unit with one conditional
    UPDATE (which locks the slot row), expiring the slot's stale holds first when it is full,
    and inserts the hold and its event. The expiry instant is set by the application clock;
    every later comparison with it (fences, expiry) is made by the database clock. Every
    outcome is counted (`petpro_holds_total{outcome}`: created, or the refusal's reason).
    """
    try:
        reservation = _reservation_create(actor=actor, slot_id=slot_id, pet_id=pet_id)
    except ApplicationError as exc:
        _count_refused(exc)
        raise
    metrics.HOLDS.labels(outcome="created").inc()
    bind_log_context(reservationId=str(reservation.id))
    return reservation


def _reservation_create(*, actor: Principal, slot_id: uuid.UUID | str, pet_id: str) -> Reservation:
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    slot = _slot_with_names(slot_id)
    pet = _pet_for_hold(actor=actor, slot=slot, pet_id=pet_id, field="pet_id")
    slot_hold_check(slot=slot, now=timezone.now())

    def hold(slot: Slot) -> Reservation | None:
        reservation, event = _hold_new(
            slot=slot,
            user_id=actor.sub,
            pet_id=pet.id,
            pet_name=pet.name,
            actor=actor,
            expires_at=_hold_expiry(),
        )
        return reservation if _take_units(slot, [(reservation, event)]) else None

    # Fair use (issue 12): counted under the owner's lock, taken with the slot's.
    with fair_use_guard(actor.sub, slot):
        hold_limits_check(owner_id=actor.sub)
        reservation = slot_write(slot, name="reservation_create", decide=hold, lock_rows=False)
    if reservation is None:
        raise SlotUnavailable(details={"slot_id": str(slot.id)})
    return reservation


def reservation_create_group(
    *, actor: Principal, slot_id: uuid.UUID | str, pet_ids: list[str]
) -> list[Reservation]:
    """Hold one unit of the slot per pet (issue 15), all or nothing: one conditional UPDATE
    takes len(pet_ids) units, then one hold and one ReservationCreated per pet, sharing a
    `group_id` and one expiry. Every pet is checked (ownership, species) before the lock;
    the fair-use limit counts every hold of the group. Full: 409 slot_unavailable and nothing
    is written. 1 to GROUP_MAX_PETS distinct pets, else 400. Counted as `reservation_create`
    counts: each hold created, or the refusal's reason once."""
    try:
        holds = _reservation_create_group(actor=actor, slot_id=slot_id, pet_ids=pet_ids)
    except ApplicationError as exc:
        _count_refused(exc)
        raise
    metrics.HOLDS.labels(outcome="created").inc(len(holds))
    return holds


def _reservation_create_group(
    *, actor: Principal, slot_id: uuid.UUID | str, pet_ids: list[str]
) -> list[Reservation]:
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    if not 1 <= len(pet_ids) <= GROUP_MAX_PETS or len(set(pet_ids)) != len(pet_ids):
        raise ValidationFailed(
            details={"pet_ids": [f"1 to {GROUP_MAX_PETS} distinct pets of yours."]}
        )
    slot = _slot_with_names(slot_id)
    pets = [
        _pet_for_hold(actor=actor, slot=slot, pet_id=pet_id, field="pet_ids") for pet_id in pet_ids
    ]
    slot_hold_check(slot=slot, now=timezone.now())
    group_id = uuid.uuid4()

    def hold(slot: Slot) -> list[Reservation] | None:
        expires_at = _hold_expiry()
        holds = [
            _hold_new(
                slot=slot,
                user_id=actor.sub,
                pet_id=pet.id,
                pet_name=pet.name,
                actor=actor,
                expires_at=expires_at,
                group_id=group_id,
            )
            for pet in pets
        ]
        return [reservation for reservation, _ in holds] if _take_units(slot, holds) else None

    # Fair use (issue 12): counted under the owner's lock, taken with the slot's.
    with fair_use_guard(actor.sub, slot):
        hold_limits_check(owner_id=actor.sub, adding=len(pets))
        holds = slot_write(slot, name="reservation_create_group", decide=hold, lock_rows=False)
    if holds is None:
        raise SlotUnavailable(details={"slot_id": str(slot.id), "requested": len(pets)})
    return holds


def reservation_hold_for(
    *, slot: Slot, user_id: str, pet_id: str, pet_name: str, expires_at: dt.datetime
) -> Reservation | None:
    """A hold made by the service for an owner (a waiting-list offer), inside a slot write
    that has the slot row locked: one unit taken by the same conditional UPDATE as any hold,
    None when the slot is full or closed. Confirming it is the normal confirm."""
    reservation, event = _hold_new(
        slot=slot,
        user_id=user_id,
        pet_id=pet_id,
        pet_name=pet_name,
        actor=SYSTEM,
        expires_at=expires_at,
    )
    if not slot_take_hold(slot_id=slot.id, rows=_rows_of([(reservation, event)])):
        return None
    events_appended([event])
    return reservation


def reservation_release_locked(
    *, actor: Principal, reservation_id: uuid.UUID, slot: Slot, reason: str = ""
) -> Reservation:
    """Release a hold inside a slot write that has its slot row locked (`reservation_release`,
    the waiting list when an owner leaves with an offer, staff cancelling a slot's visits,
    whose `reason` the ReservationReleased event carries). A released or expired hold is
    returned unchanged; a confirmed one is 409 reservation_not_held."""
    now = slot_locked_now(slot)
    current = Reservation.objects.select_for_update().get(id=reservation_id)
    if current.status in (ReservationStatus.RELEASED, ReservationStatus.EXPIRED):
        return current
    if current.status != ReservationStatus.HELD:
        raise ReservationNotHeld(
            "A confirmed reservation is a booking now; cancel the booking instead.",
            details={"status": current.status},
        )
    if current.expires_at <= now:
        _expire_locked([current], slots={slot.id: slot}, now=now, how="lazy")
        return current
    # The row is locked and held at this version: found by its key alone (a status condition
    # would let a young table's plan walk a partial index of held holds, see
    # reservation_mark_confirmed).
    Reservation.objects.filter(id=current.id, version=current.version).update(
        status=ReservationStatus.RELEASED, version=F("version") + 1, updated_at=now
    )
    current.status = ReservationStatus.RELEASED
    current.version += 1
    released = _event(current, slot=slot, event_type="ReservationReleased", actor=actor)
    if reason:
        released.payload["reason"] = reason
    event_write(released)
    slot_return_hold(slot_id=slot.id)
    return current


def reservation_release(*, actor: Principal, reservation_id: uuid.UUID | str) -> Reservation:
    """The owner gives the hold back (DELETE). Releasing a hold that is already released or
    expired changes nothing; a hold past its expiry is recorded as expired, not released."""
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    seen = reservation_get_for(actor=actor, reservation_id=reservation_id)

    def release(slot: Slot) -> Reservation:
        return reservation_release_locked(actor=actor, reservation_id=seen.id, slot=slot)

    return slot_write(_slot_with_names(seen.slot_id), name="reservation_release", decide=release)


def reservation_group_release(*, actor: Principal, group_id: uuid.UUID | str) -> list[Reservation]:
    """The owner gives every hold of a group back (DELETE of the group), in one slot write.
    Holds already released, expired or confirmed are left as they are (a confirmed group is a
    booking now: cancel that instead)."""
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    seen = reservation_group_for(actor=actor, group_id=group_id)

    def release(slot: Slot) -> list[Reservation]:
        return [
            reservation_release_locked(actor=actor, reservation_id=member.id, slot=slot)
            if member.status == ReservationStatus.HELD
            else member
            for member in Reservation.objects.filter(id__in=[m.id for m in seen]).order_by(
                "created_at", "id"
            )
        ]

    return slot_write(
        _slot_with_names(seen[0].slot_id), name="reservation_group_release", decide=release
    )


def reservation_mark_confirmed(
    *,
    reservation: Reservation,
    actor: Principal,
    slot: Slot,
    seen_version: int | None = None,
    events: list[Event] | None = None,
) -> Reservation:
    """The fenced step of confirm-into-booking; call it INSIDE the booking's slot write, with
    `slot` the hold's slot as the gateway row-locked it (the lock order of every hold writer).

    Moves the hold to `confirmed` only if it is still the version the caller saw
    (`seen_version`, default `reservation.version`), still held and not past its expiry by the
    database clock — so a stale or paused caller's write fails instead of landing (the fence of
    docs/holds.md). Appends ReservationConfirmed. It does NOT touch the slot counters: the caller
    converts the held unit with `slots.services.slot_convert_hold` in the same transaction.
    One UPDATE and one INSERT when it succeeds (the row is read again only to say why not);
    with `events` given, the ReservationConfirmed event is added to it unwritten instead, for
    the caller to insert with its own (`events_insert`: the confirm's events in one INSERT).

    Raises 409 `reservation_expired` (past expiry, or expired) or `reservation_not_held`
    (released, confirmed, or changed since `seen_version`; `details.status` says which).
    """
    if not transaction.get_connection(Reservation.objects.db).in_atomic_block:
        raise RuntimeError("reservation_mark_confirmed must run inside the booking transaction")
    if seen_version is None:
        seen_version = reservation.version
    if slot.id != reservation.slot_id:
        raise ValueError("reservation_mark_confirmed needs the hold's own slot")
    now = slot_locked_now(slot)
    # Still held and not past its expiry, tested in one CASE so that only the primary key can
    # find the row: as two plain conditions they let PostgreSQL walk the partial index of held
    # holds by expiry instead, which it does while the table is young (its statistics say
    # "tiny"), reading every live hold; SERIALIZABLE then keeps a predicate lock on each of
    # their heap pages, and every hold inserted meanwhile made the confirm fail to serialize
    # (issue 11: ~1.5 retries per confirm on a fresh database).
    still_held = Case(
        When(status=ReservationStatus.HELD, expires_at__gt=now, then=Value(True)),
        default=Value(False),
        output_field=BooleanField(),
    )
    changed = Reservation.objects.filter(
        still_held, id=reservation.id, version=seen_version
    ).update(status=ReservationStatus.CONFIRMED, version=F("version") + 1, updated_at=now)
    if not changed:
        current = Reservation.objects.get(id=reservation.id)
        if current.status == ReservationStatus.EXPIRED or (
            current.status == ReservationStatus.HELD and current.expires_at <= now
        ):
            raise ReservationExpired(details={"expires_at": current.expires_at.isoformat()})
        raise ReservationNotHeld(details={"status": current.status, "version": current.version})
    # A copy: the caller's instance stays as it saw it, for a retried attempt of its decision.
    confirmed = copy.copy(reservation)
    confirmed.status = ReservationStatus.CONFIRMED
    confirmed.version = seen_version + 1
    confirmed.updated_at = now
    if events is None:
        _append(confirmed, slot=slot, event_type="ReservationConfirmed", actor=actor)
    else:
        events.append(_event(confirmed, slot=slot, event_type="ReservationConfirmed", actor=actor))
    return confirmed


def _expire_batch(*, batch_size: int) -> tuple[int, int]:
    """One batch of the expiry job: (holds expired, due holds claimed).

    The due holds are claimed with FOR UPDATE SKIP LOCKED, so concurrent workers take
    different batches; then their slots, with SKIP LOCKED too: the job never waits on anyone,
    so it cannot deadlock with the hold path (slot first, then holds), and a hold whose slot is
    busy is left for the next run (or expired lazily by that slot's writer). READ COMMITTED is
    enough: every change is made under these row locks."""
    with transaction.atomic(durable=True):
        due = list(
            Reservation.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=ReservationStatus.HELD, expires_at__lte=Now())
            .order_by("expires_at")[:batch_size]
        )
        if not due:
            return 0, 0
        slots: dict[Any, Slot] = {
            slot.id: slot
            for slot in Slot.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("clinic", "service")
            .annotate(db_now=Now())
            .filter(id__in={r.slot_id for r in due})
            .order_by("id")
        }
        if not slots:
            return 0, len(due)
        now = next(iter(slots.values())).db_now  # type: ignore[attr-defined]
        expirable = [r for r in due if r.slot_id in slots]
        return _expire_locked(expirable, slots=slots, now=now, how="job"), len(due)


def reservation_expire_due(*, batch_size: int = EXPIRY_BATCH_SIZE) -> int:
    """Expire every held reservation past its expiry, batch by batch; returns how many.

    Safe to run in several workers at once: each batch locks its slots with SKIP LOCKED, so a
    slot being handled elsewhere (another worker, a hold, a confirm) is left for later."""
    total = 0
    while True:
        expired, seen = _expire_batch(batch_size=batch_size)
        total += expired
        if seen < batch_size or expired == 0:
            return total
