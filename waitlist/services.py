"""Every write of the waiting list (docs/bookings.md, Waiting list).

Joining, leaving and every offer run inside the slot-write gateway (`slots.locking`): under
the slot's lock, so a line and its offers change in one order. A unit given back to a slot
(a released or expired hold, a cancel, a reschedule away, more capacity) calls
`waitlist_units_freed` in that same transaction (registered in apps.py): the first owner in
line whose pet still fits gets a real hold on it at once, so nobody outside the line can take
the unit in between.

* FIFO by `joined_at` (database clock), ties by id.
* One live offer per owner, whichever the slot: a unique index says so; an owner who holds
  a live one is passed over (keeps the place) and gets the next unit after that offer ends.
  An offered entry whose hold is over (confirmed, or past its expiry before the job) is
  settled when it stands in the way, so nobody is passed over for an offer that is over.
* No offer where the booking rules refuse a hold (slots/rules.py); inside the notice the line
  ends. No offer to an owner who already holds or booked the slot for that pet: that entry
  ends. A hold past its expiry goes to the line before anyone outside it.
* An offer is a hold of WAITLIST_OFFER_SECONDS; confirming it is the normal confirm. When it
  expires (expiry job or lazily) or its owner releases it, the unit goes back, which offers
  it to the next in line, in that transaction again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Least, Now
from django.utils import timezone
from django.utils.translation import gettext

from bookings.models import Booking, BookingStatus
from integrations.users import pet_get
from petpro_booking.core.errors import NotFound, ValidationFailed
from petpro_booking.core.http import uuid_or_none
from petpro_booking.core.principal import SYSTEM, Principal
from petpro_booking.events.services import event_append, events_append
from reservations.errors import InvalidPet
from reservations.limits import hold_limits_check
from reservations.models import Reservation, ReservationStatus
from reservations.services import (
    reservation_hold_for,
    reservation_release_locked,
)
from slots.invalidation import invalidate_slot_search
from slots.locking import slot_write
from slots.models import Slot, SlotStatus, free_units
from slots.rules import (
    NOTICE_MINUTES_MAX,
    SLOT_CLOSED,
    SLOT_STARTED,
    TOO_LATE_TO_BOOK,
    notice_edge,
    refusal_error,
    rules_of,
    slot_hold_check,
    slot_refusals,
    species_accepted,
)
from slots.selectors import slot_get

from .errors import AlreadyBooked, AlreadyWaiting, SlotHasRoom
from .events import WAITLIST_AGGREGATE, waitlist_event_data
from .models import LIVE_STATUSES, EntryStatus, WaitlistEntry
from .selectors import waitlist_stale_free

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
            gettext("%(service)s does not accept a %(species)s.")
            % {"service": slot.service.name, "species": pet.species},
            details={"pet_id": ["Species not accepted by this service."]},
        )
    slot_hold_check(slot=slot, now=timezone.now())

    def join(slot: Slot) -> WaitlistEntry:
        now = timezone.now()
        if slot.status != SlotStatus.OPEN:
            raise refusal_error(SLOT_CLOSED, slot=slot, rules=rules_of(slot.service))
        if _free_units(slot.id) + _stale_free(slot.id, now=now) > 0:
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


def _stale_free(slot_id: uuid.UUID, *, now: dt.datetime) -> int:
    """Units of holds past their expiry (not yet expired by the job) that a hold at `now` would
    get: the hold's lazy expiry gives them back through the hook, which offers them to the
    owners waiting first, so only those beyond the line's length are free for anyone else
    (`waitlist_stale_free`, the rule availability shares)."""
    stale = Reservation.objects.filter(
        slot_id=slot_id, status=ReservationStatus.HELD, expires_at__lte=now
    ).count()
    if not stale:
        return 0
    waiting = WaitlistEntry.objects.filter(slot_id=slot_id, status=EntryStatus.WAITING).count()
    return waitlist_stale_free(stale=stale, waiting=waiting)


def _join_limits_check(*, owner_id: str, now: dt.datetime) -> None:
    """Fair use (issue 12): a place in line is a hold to come, so live holds and waiting
    entries together stay within the owner's live-hold limit (409 limit_exceeded): the hold's
    own count (`hold_limits_check`), which counts both."""
    hold_limits_check(owner_id=owner_id)


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
        # One fewer waiting: a hold past its expiry may now be free for anyone (search counts
        # such units free only beyond the line), with no counter changed to say so.
        invalidate_slot_search(clinic_id=slot.clinic_id)
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
        if settled is not None:
            _settle(entry, slot=slot, settled=settled, now=timezone.now())


def _settle(entry: WaitlistEntry, *, slot: Slot, settled: str, now: dt.datetime) -> None:
    """An offered entry (row-locked) whose offer is over ends `settled`: booked, offer expired
    or left. A released offer is the owner declining it: the entry says so, as its event does.

    On a closed slot an offer could not be confirmed (staff closed it, or cancelled its
    visits, which releases its holds): one that ends unconfirmed is withdrawn, not declined or
    lapsed, and the entry goes back in line with its place (its `joined_at`), for the next
    unit if staff reopen the slot (WaitlistOfferExpired, reason `slot_closed`)."""
    if settled != EntryStatus.BOOKED and slot.status != SlotStatus.OPEN:
        _change(
            entry,
            status=EntryStatus.WAITING,
            reservation_id=None,
            offered_at=None,
            offer_expires_at=None,
        )
        _append(
            entry, slot=slot, event_type="WaitlistOfferExpired", actor=SYSTEM, reason="slot_closed"
        )
        return
    reason = "declined" if settled == EntryStatus.LEFT else ""
    _change(entry, status=settled, ended_at=now, end_reason=reason)
    if settled == EntryStatus.OFFER_EXPIRED:
        _append(entry, slot=slot, event_type="WaitlistOfferExpired", actor=SYSTEM)
    elif settled == EntryStatus.LEFT:
        _append(entry, slot=slot, event_type="WaitlistLeft", actor=SYSTEM, reason=reason)


def _end_entry(entry: WaitlistEntry, *, slot: Slot, reason: str, now: dt.datetime) -> None:
    """A waiting entry (row-locked) ends `ended` with `reason` (WaitlistLeft says it)."""
    _change(entry, status=EntryStatus.ENDED, ended_at=now, end_reason=reason)
    _append(entry, slot=slot, event_type="WaitlistLeft", actor=SYSTEM, reason=reason)


def _already_theirs(slot: Slot, *, owners: set[str], now: dt.datetime) -> dict[tuple, str]:
    """(owner, pet) of the line that already hold a live hold on the slot ("already_held") or
    have a live booking of it ("already_booked"): an offer would give them a second unit."""
    found: dict[tuple, str] = {}
    for key in Reservation.objects.filter(
        slot_id=slot.id, user_id__in=owners, status=ReservationStatus.HELD, expires_at__gt=now
    ).values_list("user_id", "pet_id"):
        found[key] = "already_held"
    for key in Booking.objects.filter(
        slot_id=slot.id,
        user_id__in=owners,
        status__in=[BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED],
    ).values_list("user_id", "pet_id"):
        found[key] = "already_booked"
    return found


def _free_dead_offer(owner_id: str, *, now: dt.datetime) -> bool:
    """One live offer per owner: the owner's offered entry on another slot keeps them from a
    second offer (the unique index). When that offer is over — its hold was confirmed, or is
    past its expiry before the expiry job ran — the entry is settled now, as its own slot's
    next write or the sweep would settle it (booked, or offer expired), so the owner is not
    passed over for an offer that is over. Only the entry row changes, locked without waiting
    (being settled by its slot's writer, the owner is passed over as before); that slot's
    counters are left to its own slot write (a hold past expiry gives its unit back to that
    slot's line when it is expired). True when the owner holds no offer any more."""
    try:
        with transaction.atomic():  # savepoint: NOWAIT may refuse
            other = (
                WaitlistEntry.objects.select_for_update(nowait=True, of=("self",))
                .select_related("reservation", "slot__clinic", "slot__service")
                .annotate(db_now=Now())  # the confirm's fence reads the database clock too
                .filter(user_id=owner_id, status=EntryStatus.OFFERED)
                .first()
            )
            if other is None or other.reservation is None:
                return False  # an offer committed by a write this snapshot does not see: live
            hold = other.reservation
            settled: str | None
            if hold.status == ReservationStatus.HELD:
                if hold.expires_at > other.db_now:
                    return False  # a live offer: passed over, keeps the place
                settled = EntryStatus.OFFER_EXPIRED
            else:
                settled = OFFER_SETTLED.get(hold.status)
                if settled is None:
                    return False
            _settle(other, slot=other.slot, settled=settled, now=now)
    except OperationalError:  # its slot's writer holds the entry: that write settles it
        return False
    return True


def _offer_to(
    entry: WaitlistEntry, *, slot: Slot, now: dt.datetime, expires_at: dt.datetime
) -> str:
    """Try to offer the unit to `entry`: "offered", "full" (no unit to give), or "has_offer"
    (the owner holds an offer elsewhere: the one-offer index refused, nothing written)."""
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
                return "full"
            _change(
                entry,
                status=EntryStatus.OFFERED,
                reservation_id=hold.id,
                offered_at=now,
                offer_expires_at=expires_at,
            )
    except IntegrityError:
        entry.refresh_from_db()
        return "has_offer"
    return "offered"


def _offer_one(slot: Slot, *, now: dt.datetime) -> bool:
    """Offer one free unit to the first waiting owner without another live offer. False when
    nobody in line can take it (or the slot cannot give a unit).

    An entry whose owner already holds or booked this slot for that pet ends (`ended`,
    reason `already_held` / `already_booked`) instead: an offer would give them a second unit
    of one visit. An owner whose other offer is over is not passed over (`_free_dead_offer`)."""
    expires_at = now + dt.timedelta(seconds=settings.WAITLIST_OFFER_SECONDS)
    line = list(
        WaitlistEntry.objects.select_for_update(of=("self",))
        .filter(slot_id=slot.id, status=EntryStatus.WAITING)
        .order_by("joined_at", "id")
    )
    theirs = _already_theirs(slot, owners={entry.user_id for entry in line}, now=now)
    for entry in line:
        reason = theirs.get((entry.user_id, entry.pet_id))
        if reason is not None:
            _end_entry(entry, slot=slot, reason=reason, now=now)
            continue
        outcome = _offer_to(entry, slot=slot, now=now, expires_at=expires_at)
        if outcome == "has_offer" and _free_dead_offer(entry.user_id, now=now):
            outcome = _offer_to(entry, slot=slot, now=now, expires_at=expires_at)
        if outcome == "full":
            return False
        if outcome == "has_offer":
            continue  # a live offer elsewhere: keeps the place, passed over this time
        _append(entry, slot=slot, event_type="WaitlistOffered", actor=SYSTEM)
        return True
    return False


def _line_end_reason(slot: Slot, *, now: dt.datetime) -> str | None:
    """Why the slot's line can never get an offer any more: `slot_started`, or
    `too_late_to_book` once the service's notice has begun (no hold is allowed from then on,
    for the line as for anyone). None while it still may."""
    if slot.start_at <= now:
        return SLOT_STARTED
    if now > notice_edge(start_at=slot.start_at, rules=rules_of(slot.service)):
        return TOO_LATE_TO_BOOK
    return None


def _offer_refused(slot: Slot, *, now: dt.datetime) -> bool:
    """The booking rules of a hold (slots/rules.py) refuse an offer as they refuse anyone's
    hold: an inactive clinic or service, a closed or started slot, inside the notice, beyond
    the horizon. The capacity is not asked here (the conditional UPDATE says it)."""
    return bool(
        slot_refusals(
            start_at=slot.start_at,
            status=slot.status,
            available=1,
            clinic_active=slot.clinic.active,
            service_active=slot.service.active,
            zone=ZoneInfo(slot.clinic.timezone),
            rules=rules_of(slot.service),
            now=now,
        )
    )


def waitlist_offer_free_units(slot: Slot) -> int:
    """Settle the slot's ended offers and offer every free unit to the line, in this
    transaction (the slot row locked by it). Returns how many offers were made.

    No offer when the booking rules refuse a hold (`_offer_refused`): the unit stays free,
    for anyone the rules let hold it (nobody, until the rule changes). Inside the notice (or
    once started) the waiting entries end, with that reason; an inactive clinic or service,
    a closed slot or a slot beyond the horizon keeps its line, offered again by the sweep once
    a hold would be allowed."""
    now = timezone.now()
    _settle_offers(slot)
    ending = _line_end_reason(slot, now=now)
    if ending is not None:
        _end_line(slot, reason=ending)
        return 0
    if _offer_refused(slot, now=now):
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


def _end_line(slot: Slot, *, reason: str) -> int:
    """Inside the slot write: the slot's waiting entries end (`ended`, with `reason`) in one
    UPDATE, their WaitlistLeft events in one INSERT. Offered entries keep their hold, which
    ends as any hold does. Returns how many ended."""
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
        end_reason=reason,
        version=F("version") + 1,
    )
    for entry in entries:
        entry.status, entry.ended_at, entry.end_reason = EntryStatus.ENDED, ended_at, reason
        entry.version += 1
    events_append(
        aggregate_type=WAITLIST_AGGREGATE,
        event_type="WaitlistLeft",
        items=[
            (entry.id, waitlist_event_data(entry, slot=slot, reason=reason)) for entry in entries
        ],
        versions=[entry.version for entry in entries],
        actor=SYSTEM,
    )
    return len(entries)


def _end_started_line(slot: Slot) -> int:
    """Inside the slot write of a slot that has started, or whose service's notice has begun:
    its waiting entries end (`slot_started` / `too_late_to_book`). Returns how many ended."""
    reason = _line_end_reason(slot, now=timezone.now())
    return 0 if reason is None else _end_line(slot, reason=reason)


def _notice_edge_expression() -> ExpressionWrapper:
    """`notice_edge` of an entry's slot in SQL: its start less its service's notice (the
    setting when unset, at most NOTICE_MINUTES_MAX), as slots/rules.py computes it."""
    minutes = Least(
        Coalesce(
            F("slot__service__min_notice_minutes"), Value(settings.BOOKING_MIN_NOTICE_MINUTES)
        ),
        Value(NOTICE_MINUTES_MAX),
    )
    notice = ExpressionWrapper(
        minutes * Value(dt.timedelta(minutes=1)), output_field=DurationField()
    )
    return ExpressionWrapper(F("slot__start_at") - notice, output_field=DateTimeField())


def _slots_due(now: dt.datetime) -> QuerySet[WaitlistEntry, uuid.UUID]:
    """The slots whose slot write has work to do: an offer whose hold ended (confirmed, expired
    or released: the entry is settled, also once the slot has started, so an offer confirmed
    in its last minutes does not keep the owner's one live offer), or, before the start, a
    free unit with someone waiting (an owner passed over while holding another offer, whose
    offer has ended since; a service or clinic active again) at an active clinic and service.
    Read in one statement, so a full slot with a line costs the sweep nothing: no lock taken
    every minute on the slots owners queue for (a unit that frees reaches the line in its own
    transaction, `waitlist_units_freed`; the slot write checks everything again under the
    lock)."""
    return (
        WaitlistEntry.objects.filter(
            Q(status=EntryStatus.OFFERED, reservation__status__in=list(OFFER_SETTLED))
            | Q(
                status=EntryStatus.WAITING,
                slot__start_at__gt=now,
                slot__status=SlotStatus.OPEN,
                slot__clinic__active=True,
                slot__service__active=True,
                slot__held_count__lt=F("slot__capacity") - F("slot__booked_count"),
            )
        )
        .values_list("slot_id", flat=True)
        .order_by("slot_id")  # not the model's ordering, which would make DISTINCT per entry
        .distinct()
    )


def waitlist_sweep() -> dict[str, int]:
    """Every minute: entries of slots that started, or whose service's notice has begun, end
    (one slot write per slot, whatever the length of its line); offers whose hold was
    confirmed are marked booked; a slot with free units and a line (an owner passed over while
    holding another offer, whose offer has ended since) offers them; an offer settles even
    after its slot started. Safe to run twice."""
    now = timezone.now()
    counts = {"ended": 0, "offered": 0}
    ending = (
        WaitlistEntry.objects.annotate(notice_edge=_notice_edge_expression())
        .filter(Q(slot__start_at__lte=now) | Q(notice_edge__lt=now), status=EntryStatus.WAITING)
        .values_list("slot_id", flat=True)
        .order_by("slot_id")
        .distinct()
    )
    for slot in Slot.objects.select_related("clinic", "service").filter(
        id__in=list(ending[:STARTED_SLOTS_PER_SWEEP])
    ):
        counts["ended"] += slot_write(slot, name="waitlist_sweep", decide=_end_started_line)
    for slot in Slot.objects.select_related("clinic", "service").filter(
        id__in=list(_slots_due(now)[:DUE_SLOTS_PER_SWEEP])
    ):
        counts["offered"] += slot_write(
            slot, name="waitlist_sweep", decide=waitlist_offer_free_units
        )
    return counts
