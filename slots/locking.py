"""The slot-write gateway: every write that changes a slot's counters, or a row that counts on
a slot, goes through `slot_write` (the Redis lock, the SERIALIZABLE transaction and the
row locks in id order, in one place: docs/architecture.md).

    booking = slot_write(seen.slot, name="booking_cancel", decide=cancel)

`slot_write` does the four steps every writer needs, in the one order all of them follow:

1. takes the slots' Redis locks (`slot_lock_key`), sorted, with a bounded wait — 409
   `slot_busy` when they are not free in time, database guard alone when Redis is down;
2. opens one durable SERIALIZABLE transaction, retried whole on 40001/40P01
   (`core.db.run_serializable`) — 409 `slot_busy` when the retries run out, never a 500;
3. row-locks the slots by id (`SELECT ... FOR UPDATE OF slots`, in id order), with their
   clinic and service loaded and the database clock as `slot.db_now`;
4. calls `decide(*slots)` (in the order the caller named them) and returns what it returns.

`decide` then reads "check, decide, write": re-read what it needs under the row locks, refuse
or change, append the events. It must not call the network and must only schedule side
effects with `transaction.on_commit` (a retried attempt runs it again).

The hold path passes `lock_rows=False`: its first statement, the conditional UPDATE that takes
a unit, locks the slot row itself, so the common hold costs no extra round trip; `decide` then
gets the slots as the caller read them (before the lock) and locks rows itself when it needs to
(`slot_rows_lock`).

Units freed: every counter that gives a unit back (`slots.services`: a released or expired
hold, a cancelled booking, a reschedule away, a raised capacity, a reopened slot) calls
`units_freed` inside that write's transaction, with the slot row locked. Apps above slots
register a hook with `on_unit_freed` (the waiting list, waitlist/apps.py) and act in the same
transaction, so nobody else can take the unit in between; slots never imports them.

Lock keys carry the slot id as a Redis Cluster hash tag (`...:{<slot_id>}`): python-redis-lock
keeps two keys per lock (`lock:<name>` and `lock-signal:<name>`), and the tag puts both on the
node that owns the slot, so one lock never spans two nodes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from django.db.models.functions import Now

from petpro_booking.core.db import run_serializable
from petpro_booking.core.errors import Contention
from petpro_booking.core.locking import lock_manager

from .models import Slot

T = TypeVar("T")


class SlotBusy(Contention):
    code = "slot_busy"
    default_message = "Someone else is changing this slot right now; retry in a moment."


class SlotKeyed(Protocol):
    """What a lock key is made of: a slot as read before the lock (a Slot, a SlotRef)."""

    @property
    def id(self) -> Any: ...

    @property
    def clinic_id(self) -> str: ...

    @property
    def service_id(self) -> str: ...


class SlotRef(NamedTuple):
    """A slot named by a row that points at it (a booking's slot_id, clinic_id, service_id)."""

    id: Any
    clinic_id: str
    service_id: str


UnitFreedHook = Callable[[list[uuid.UUID]], None]
_unit_freed_hooks: list[UnitFreedHook] = []


def on_unit_freed(hook: UnitFreedHook) -> None:
    """Register `hook(slot_ids)`, called in the transaction that gave units of those slots back
    (their rows locked by that transaction; one slot, or the expiry job's batch in lock order).
    Registering twice is a no-op."""
    if hook not in _unit_freed_hooks:
        _unit_freed_hooks.append(hook)


def units_freed(*slot_ids: uuid.UUID | str) -> None:
    """Tell the registered hooks that these slots have units back (called by slots.services)."""
    if not slot_ids:
        return
    freed = [uuid.UUID(str(slot_id)) for slot_id in slot_ids]
    for hook in _unit_freed_hooks:
        hook(freed)


def slot_lock_key(*, clinic_id: str, service_id: str, slot_id: object) -> str:
    """`slot:<clinic>:<service>:{<slot>}`; the braces are the Redis Cluster hash tag."""
    return f"slot:{clinic_id}:{service_id}:{{{slot_id}}}"


def slot_lock_keys(*slots: SlotKeyed) -> list[str]:
    """The Redis lock keys of these slots (what `slot_write` takes), for a caller that takes
    them together with a lock of its own (the owner's, `reservations.limits.fair_use_guard`):
    `slot_write` inside that block does not take them again."""
    return [
        slot_lock_key(clinic_id=slot.clinic_id, service_id=slot.service_id, slot_id=slot.id)
        for slot in slots
    ]


def slot_rows_lock(*slot_ids: uuid.UUID | str) -> dict[Any, Slot]:
    """Row-lock the slots in id order (the one order every writer of two slots follows), with
    clinic and service loaded and the database clock (transaction start) as `db_now`.

    `of=("self",)`: the slot rows only, not their clinic and service rows (which would queue
    every booking write of a clinic behind one another)."""
    return {
        slot.id: slot
        for slot in Slot.objects.select_for_update(of=("self",))
        .select_related("clinic", "service")
        .annotate(db_now=Now())
        .filter(id__in=slot_ids)
        .order_by("id")
    }


def slot_locked_now(slot: Slot) -> dt.datetime:
    """The database clock (transaction start) of the transaction that row-locked `slot` with
    `slot_rows_lock`: the one clock every expiry decision and fence uses."""
    now = getattr(slot, "db_now", None)
    if now is None:
        raise RuntimeError("the slot row is not locked in this transaction (slot_rows_lock)")
    return now


def slot_write(
    *slots: SlotKeyed,
    name: str,
    decide: Callable[..., T],
    lock_rows: bool = True,
    operation: str = "slot_lock",
) -> T:
    """Run `decide(*slots)` under the slots' Redis locks in one SERIALIZABLE transaction with
    the slot rows locked (see the module docstring). `name` labels the retry metrics;
    `operation` the Redis-down fallback metric. Raises SlotBusy (409, retryable) when the locks
    are not free in time or the transaction keeps failing to serialize."""
    keys = slot_lock_keys(*slots)

    def transaction_body() -> T:
        if not lock_rows:
            return decide(*slots)
        locked = slot_rows_lock(*(slot.id for slot in slots))
        return decide(*(locked[slot.id] for slot in slots))  # slot rows are never deleted

    try:
        with lock_manager().acquire(*keys, operation=operation):
            return run_serializable(transaction_body, name=name)
    except SlotBusy:
        raise
    except Contention as exc:  # lock wait or serialization retries ran out
        raise SlotBusy(details=exc.details) from exc
