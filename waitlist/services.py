"""Every write of the waiting list (docs/bookings.md, Waiting list).

Joining, leaving and every offer run inside the slot-write gateway (`slots.locking`): under
the slot's lock, so a line and its offers change in one order. A unit given back to a slot
(a released or expired hold, a cancel, a reschedule away, more capacity) calls
`waitlist_units_freed` in that same transaction (registered in apps.py): the first owner in
line whose pet still fits gets a real hold on it at once, so nobody outside the line can take
the unit in between.

* FIFO by `joined_at` (database clock), ties by id.
* One live offer per owner, whichever the slot: a unique index says so; an owner who holds
  one is passed over (keeps the place) and gets the next unit after that offer ends.
* An offer is a hold of WAITLIST_OFFER_SECONDS; confirming it is the normal confirm. When it
  expires (expiry job or lazily) or its owner releases it, the unit goes back, which offers
  it to the next in line, in that transaction again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from bookings.models import Booking, BookingStatus
from integrations.users import pet_get
from petpro_booking.core.errors import NotFound, ValidationFailed
from petpro_booking.core.http import uuid_or_none
from petpro_booking.core.principal import SYSTEM, Principal
from petpro_booking.events.services import event_append, events_append
from reservations.errors import InvalidPet
from reservations.limits import limit_refuse, limits_for
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_hold_for, reservation_release_locked
from slots.locking import slot_write
from slots.models import Slot, SlotStatus, free_units
from slots.rules import SLOT_CLOSED, refusal_error, rules_of, slot_hold_check, species_accepted
from slots.selectors import slot_get

from .errors import AlreadyBooked, AlreadyWaiting, SlotHasRoom
from .events import WAITLIST_AGGREGATE, waitlist_event_data
from .models import LIVE_STATUSES, EntryStatus, WaitlistEntry

OFFER_SETTLED: dict[str, str] = {
    ReservationStatus.CONFIRMED: EntryStatus.BOOKED,
    ReservationStatus.EXPIRED: EntryStatus.OFFER_EXPIRED,
    ReservationStatus.RELEASED: EntryStatus.LEFT,
}


def _append(
    entry: WaitlistEntry, *, slot: Slot, event_type: str, actor: Principal, reason: str = ""
):
    event_append(
        aggregate_type=WAITLIST_AGGREGATE,
        aggregate_id=entry.id,
        event_type=event_type,
        data=waitlist_event_data(entry, slot=slot, reason=reason),
        actor=actor,
        aggregate_version=entry.version,
    )


def _change(entry: WaitlistEntry, **fields: Any) -> WaitlistEntry:
    """Fenced on the status and version read under the lock; the instance follows."""
    changed = WaitlistEntry.objects.filter(
        id=entry.id, status=entry.status, version=entry.version
    ).update(version=F("version") + 1, **fields)
    if not changed:  # pragma: no cover - every caller holds the row lock
        raise RuntimeError(f"waitlist entry {entry.id} changed under its lock")
    for name, value in fields.items():
        setattr(entry, name, value)
    entry.version += 1
    return entry


def _free_units(slot_id: uuid.UUID) -> int:
    row = Slot.objects.filter(id=slot_id).values("capacity", "booked_count", "held_count")[0]
    return free_units(**row)


# --- join and leave --------------------------------------------------------------------------


def waitlist_join(*, actor: Principal, slot_id: uuid.UUID | str, pet_id: str) -> WaitlistEntry:
    """Put the caller's pet in line for a full slot. The booking rules of a hold apply (the
    same 409 codes), and the pet must be the caller's and fit the service (400 invalid_pet).
    409 `slot_available` when the slot has room (hold it instead), `already_waiting`,
    `already_booked` when the caller holds or booked it."""
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    slot = slot_get(slot_id=slot_id)
    pet = pet_get(user_id=actor.sub, pet_id=pet_id)
    if pet is None:
        raise InvalidPet("This pet is not one of yours.", details={"pet_id": ["Not your pet."]})
    if not species_accepted(accepted=slot.service.species, species=pet.species):
        raise InvalidPet(
            f"{slot.service.name} does not accept a {pet.species}.",
            details={"pet_id": ["Species not accepted by this service."]},
        )
    slot_hold_check(slot=slot, now=timezone.now())

    def join(slot: Slot) -> WaitlistEntry:
        now = timezone.now()
        if slot.status != SlotStatus.OPEN:
            raise refusal_error(SLOT_CLOSED, slot=slot, rules=rules_of(slot.service))
        stale = Reservation.objects.filter(
            slot_id=slot.id, status=ReservationStatus.HELD, expires_at__lte=now
        ).count()
        if _free_units(slot.id) + stale > 0:
            raise SlotHasRoom(details={"slot_id": str(slot.id)})
        mine = (
            Reservation.objects.filter(
                slot_id=slot.id,
                user_id=actor.sub,
                status=ReservationStatus.HELD,
                expires_at__gt=now,
            ).exists()
            or Booking.objects.filter(
                slot_id=slot.id,
                user_id=actor.sub,
                status__in=[BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED],
            ).exists()
        )
        if mine:
            raise AlreadyBooked(details={"slot_id": str(slot.id)})
        _join_limits_check(owner_id=actor.sub, now=now)
        try:
            with transaction.atomic():
                entry = WaitlistEntry.objects.create(
                    slot=slot, user_id=actor.sub, pet_id=pet.id, pet_name=pet.name
                )
        except IntegrityError:
            raise AlreadyWaiting(details={"slot_id": str(slot.id)}) from None
        entry.refresh_from_db(fields=["joined_at"])
        _append(entry, slot=slot, event_type="WaitlistJoined", actor=actor)
        return entry

    return slot_write(slot, name="waitlist_join", decide=join)


def _join_limits_check(*, owner_id: str, now: dt.datetime) -> None:
    """Fair use (issue 12): a place in line is a hold to come, so live holds and waiting
    entries together stay within the owner's live-hold limit (409 limit_exceeded)."""
    maximum = limits_for(owner_id=owner_id).live_holds
    holds = Reservation.objects.filter(
        user_id=owner_id, status=ReservationStatus.HELD, expires_at__gt=now
    ).count()
    waiting = WaitlistEntry.objects.filter(user_id=owner_id, status=EntryStatus.WAITING).count()
    if holds + waiting >= maximum:
        raise limit_refuse(limit="live_holds_per_owner", maximum=maximum)


def _entry_for(*, actor: Principal, entry_id: uuid.UUID | str) -> WaitlistEntry:
    key = uuid_or_none(entry_id)
    entry = WaitlistEntry.objects.select_related("slot").filter(id=key).first() if key else None
    if entry is None or entry.user_id != actor.sub:
        raise NotFound("No such waiting-list entry.")
    return entry


def waitlist_end(
    *, entry_id: uuid.UUID, to_status: str, actor: Principal, reason: str
) -> WaitlistEntry:
    """End a live entry under its slot's lock. Leaving or removed with a live offer, its hold
    is released in the same transaction, which offers the unit to the next in line."""
    seen = WaitlistEntry.objects.select_related("slot").get(id=entry_id)

    def end(slot: Slot) -> WaitlistEntry:
        entry = WaitlistEntry.objects.select_for_update().get(id=entry_id)
        offered = entry.status == EntryStatus.OFFERED
        if entry.status != EntryStatus.WAITING and not (
            offered and to_status in (EntryStatus.LEFT, EntryStatus.REMOVED)
        ):
            return entry
        _change(entry, status=to_status, ended_at=timezone.now(), end_reason=reason)
        _append(entry, slot=slot, event_type="WaitlistLeft", actor=actor, reason=reason)
        if offered and entry.reservation_id is not None:
            reservation_release_locked(actor=actor, reservation_id=entry.reservation_id, slot=slot)
        return entry

    return slot_write(seen.slot, name="waitlist_leave", decide=end)


def waitlist_leave(*, actor: Principal, entry_id: uuid.UUID | str) -> WaitlistEntry:
    """The owner leaves the line (DELETE). Leaving with an offer releases its hold, which goes
    to the next in line. Leaving an ended entry changes nothing."""
    actor = actor.as_owner()  # their own pet: written as "user" whatever else the token is
    entry = _entry_for(actor=actor, entry_id=entry_id)
    return waitlist_end(entry_id=entry.id, to_status=EntryStatus.LEFT, actor=actor, reason="left")


def waitlist_remove(*, actor: Principal, entry_id: uuid.UUID | str, reason: str) -> WaitlistEntry:
    """Staff of the slot's clinic or support take an entry off the line, with a reason."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(details={"reason": ["Say why the entry is removed."]})
    key = uuid_or_none(entry_id)
    entry = WaitlistEntry.objects.select_related("slot").filter(id=key).first() if key else None
    if entry is None or not actor.can_manage_clinic(entry.slot.clinic_id):
        raise NotFound("No such waiting-list entry.")
    return waitlist_end(
        entry_id=entry.id, to_status=EntryStatus.REMOVED, actor=actor, reason=reason
    )


# --- offers: the "unit freed" hook -----------------------------------------------------------


def _settle_offers(slot: Slot) -> None:
    """Offered entries of the slot whose hold is no longer held end as booked, offer expired
    or left (the owner released the hold)."""
    for entry in (
        WaitlistEntry.objects.select_for_update(of=("self",))
        .select_related("reservation")
        .filter(slot_id=slot.id, status=EntryStatus.OFFERED)
    ):
        settled = OFFER_SETTLED.get(entry.reservation.status) if entry.reservation else None
        if settled is None:
            continue
        # A released offer is the owner declining it: the entry says so, as its event does.
        reason = "declined" if settled == EntryStatus.LEFT else ""
        _change(entry, status=settled, ended_at=timezone.now(), end_reason=reason)
        if settled == EntryStatus.OFFER_EXPIRED:
            _append(entry, slot=slot, event_type="WaitlistOfferExpired", actor=SYSTEM)
        elif settled == EntryStatus.LEFT:
            _append(entry, slot=slot, event_type="WaitlistLeft", actor=SYSTEM, reason="declined")


def _offer_one(slot: Slot, *, now: dt.datetime) -> bool:
    """Offer one free unit to the first waiting owner without another live offer. False when
    nobody in line can take it (or the slot cannot give a unit)."""
    expires_at = now + dt.timedelta(seconds=settings.WAITLIST_OFFER_SECONDS)
    line = (
        WaitlistEntry.objects.select_for_update(of=("self",))
        .filter(slot_id=slot.id, status=EntryStatus.WAITING)
        .order_by("joined_at", "id")
    )
    for entry in line:
        try:
            with transaction.atomic():  # savepoint: the owner's one-offer index may refuse
                hold = reservation_hold_for(
                    slot=slot,
                    user_id=entry.user_id,
                    pet_id=entry.pet_id,
                    pet_name=entry.pet_name,
                    expires_at=expires_at,
                )
                if hold is None:
                    return False
                _change(
                    entry,
                    status=EntryStatus.OFFERED,
                    reservation_id=hold.id,
                    offered_at=now,
                    offer_expires_at=expires_at,
                )
        except IntegrityError:
            entry.refresh_from_db()
            continue  # a live offer elsewhere: keeps the place, passed over this time
        _append(entry, slot=slot, event_type="WaitlistOffered", actor=SYSTEM)
        return True
    return False


def waitlist_offer_free_units(slot: Slot) -> int:
    """Settle the slot's ended offers and offer every free unit to the line, in this
    transaction (the slot row locked by it). Returns how many offers were made."""
    now = timezone.now()
    _settle_offers(slot)
    if slot.status != SlotStatus.OPEN or slot.start_at <= now:
        return 0
    made = 0
    while _free_units(slot.id) > 0 and _offer_one(slot, now=now):
        made += 1
    return made


def waitlist_units_freed(slot_ids: list[uuid.UUID]) -> None:
    """The hook (slots.locking.on_unit_freed): units of these slots came back in the current
    transaction, which has their rows locked (the expiry job gives back a batch of slots at
    once). One indexed read finds the slots with a line, whatever their number; each of those
    offers its free units, in the order given (the lock order)."""
    lined_up = set(
        WaitlistEntry.objects.filter(slot_id__in=slot_ids, status__in=LIVE_STATUSES)
        .values_list("slot_id", flat=True)
        .order_by()  # the model's ordering would make DISTINCT one row per entry
        .distinct()
    )
    for slot_id in slot_ids:
        if slot_id not in lined_up:
            continue
        slot = (
            Slot.objects.select_for_update(of=("self",))
            .select_related("clinic", "service")
            .get(id=slot_id)
        )
        waitlist_offer_free_units(slot)


# --- the sweep (celery beat) -----------------------------------------------------------------


# Started slots whose lines the sweep ends per run, and slots with work it visits per run (the
# rest next minute; a visited slot's work is done, so the next run picks others).
STARTED_SLOTS_PER_SWEEP = 200
DUE_SLOTS_PER_SWEEP = 500


def _end_started_line(slot: Slot) -> int:
    """Inside the slot write of a slot that has started: its waiting entries end (`ended`,
    reason `slot_started`) in one UPDATE, their WaitlistLeft events in one INSERT. Offered
    entries keep their hold, which ends as any hold does. Returns how many ended."""
    entries = list(
        WaitlistEntry.objects.select_for_update(of=("self",))
        .filter(slot_id=slot.id, status=EntryStatus.WAITING)
        .order_by("id")
    )
    if not entries:
        return 0
    ended_at = timezone.now()
    WaitlistEntry.objects.filter(id__in=[entry.id for entry in entries]).update(
        status=EntryStatus.ENDED,
        ended_at=ended_at,
        end_reason="slot_started",
        version=F("version") + 1,
    )
    for entry in entries:
        entry.status, entry.ended_at, entry.end_reason = EntryStatus.ENDED, ended_at, "slot_started"
        entry.version += 1
    events_append(
        aggregate_type=WAITLIST_AGGREGATE,
        event_type="WaitlistLeft",
        items=[
            (entry.id, waitlist_event_data(entry, slot=slot, reason="slot_started"))
            for entry in entries
        ],
        versions=[entry.version for entry in entries],
        actor=SYSTEM,
    )
    return len(entries)


def _slots_due(now: dt.datetime) -> QuerySet[WaitlistEntry, uuid.UUID]:
    """The slots whose slot write has work to do: an offer whose hold ended (confirmed, expired
    or released: the entry is settled, also once the slot has started, so an offer confirmed
    in its last minutes does not keep the owner's one live offer), or, before the start, a
    free unit with someone waiting (an owner passed over while holding another offer, whose
    offer has ended since). Read in one statement, so a full slot with a line costs the sweep
    nothing: no lock taken every minute on the slots owners queue for (a unit that frees
    reaches the line in its own transaction, `waitlist_units_freed`; the slot write checks
    everything again under the lock)."""
    return (
        WaitlistEntry.objects.filter(
            Q(status=EntryStatus.OFFERED, reservation__status__in=list(OFFER_SETTLED))
            | Q(
                status=EntryStatus.WAITING,
                slot__start_at__gt=now,
                slot__status=SlotStatus.OPEN,
                slot__held_count__lt=F("slot__capacity") - F("slot__booked_count"),
            )
        )
        .values_list("slot_id", flat=True)
        .order_by("slot_id")  # not the model's ordering, which would make DISTINCT per entry
        .distinct()
    )


def waitlist_sweep() -> dict[str, int]:
    """Every minute: entries of slots that started end (one slot write per slot, whatever the
    length of its line); offers whose hold was confirmed are marked booked; a slot with free
    units and a line (an owner passed over while holding another offer, whose offer has ended
    since) offers them; an offer settles even after its slot started. Safe to run twice."""
    now = timezone.now()
    counts = {"ended": 0, "offered": 0}
    started = (
        WaitlistEntry.objects.filter(status=EntryStatus.WAITING, slot__start_at__lte=now)
        .values_list("slot_id", flat=True)
        .order_by("slot_id")
        .distinct()
    )
    for slot in Slot.objects.select_related("clinic", "service").filter(
        id__in=list(started[:STARTED_SLOTS_PER_SWEEP])
    ):
        counts["ended"] += slot_write(slot, name="waitlist_sweep", decide=_end_started_line)
    for slot in Slot.objects.select_related("clinic", "service").filter(
        id__in=list(_slots_due(now)[:DUE_SLOTS_PER_SWEEP])
    ):
        counts["offered"] += slot_write(
            slot, name="waitlist_sweep", decide=waitlist_offer_free_units
        )
    return counts
