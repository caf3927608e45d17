"""Fair use of capacity (issue 12): how many live holds one owner may have, and the limits
the bookings app checks at confirm time.

Parallel requests of one owner cannot get past a limit: the hold, the confirm and an owner's
reschedule take the owner's lock (`fair_use_guard`) before their slot write and keep it until
that write has committed, and count under it. The counts run before the SERIALIZABLE
transaction, on purpose: inside it, a count over one owner's rows takes page-level predicate
locks on the shared index pages that every other owner's hold inserts into, and most concurrent
holds then failed to serialize (1.8 retries per hold measured under the production benchmark).
Lock order: the owner, then the slots. While Redis is down the lock falls back to none (as the
slot locks do): then one owner's simultaneous requests may pass a limit by their number, and the
database still refuses every overbooking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext

from petpro_booking.core.db import prepared_cursor
from petpro_booking.core.locking import LockBusy, lock_manager
from slots.locking import SlotBusy, SlotKeyed, slot_lock_keys

from .errors import LimitExceeded
from .models import OwnerLimit


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
        gettext("Fair-use limit reached: at most %(max)s (%(limit)s).")
        % {"max": maximum, "limit": limit.replace("_", " ")},
        details={"limit": limit, "max": maximum},
    )


def owner_lock_key(owner_id: str) -> str:
    """`owner:{<digest>}`: a digest of the owner's id, so no person's id is written into
    Redis (the lock's keys outlive it briefly, and erasure leaves no id behind); the braces are
    the Redis Cluster hash tag."""
    return f"owner:{{{hashlib.sha256(owner_id.encode()).hexdigest()[:24]}}}"


@contextmanager
def fair_use_guard(owner_id: str, *slots: SlotKeyed) -> Iterator[None]:
    """Hold the owner's lock around a limit check and the slot write it guards. Raises
    SlotBusy (409, retryable) when the owner's other request keeps it past the lock wait.

    `slots`: the slots the guarded write changes; their locks are taken with the owner's, in
    the same round trip (the slot write inside does not take them again). Lock order stays the
    owner, then the slots (the keys sort that way, `owner:` before `slot:`)."""
    owner_key = owner_lock_key(owner_id)
    try:
        with lock_manager().acquire(
            owner_key, *slot_lock_keys(*slots), operations={owner_key: "owner_lock"}
        ):
            yield
    except LockBusy as exc:  # the slot write inside converts its own; this is the owner's
        raise SlotBusy(details=exc.details) from exc


# The hold's check in one statement with no ORM compilation (it runs on every hold): the
# owner's live holds, their places on waiting lists (the `waitlist_entries` table read by name,
# as search reads `reservations`: the app above is not imported) and support's override of the
# limit, if any. The statuses are part of the text, not parameters, so the prepared statement's
# generic plan can use the partial index reservations_owner_held_idx (with a parameter,
# PostgreSQL planned it anew on every hold).
_LIVE_HOLDS_SQL = (
    "SELECT (SELECT count(*) FROM reservations"
    " WHERE user_id = %s AND status = 'held' AND expires_at > %s),"
    " (SELECT count(*) FROM waitlist_entries WHERE user_id = %s AND status = 'waiting'),"
    " (SELECT max_live_holds FROM owner_limits WHERE user_id = %s)"
)


def hold_limits_check(*, owner_id: str, adding: int = 1) -> None:
    """Under `fair_use_guard`, before the hold's transaction: refuse `adding` holds (one per
    pet of a group) that would take the owner past their live-hold limit. A place on a waiting
    list is a hold to come (docs/bookings.md, Waiting list): live holds plus waiting entries
    stay within the limit, so an offer, which turns an entry into a hold, never passes it."""
    live, waiting, maximum = live_holds_of(owner_id=owner_id)
    if live + waiting + adding > maximum:
        raise limit_refuse(limit="live_holds_per_owner", maximum=maximum)


def live_holds_of(*, owner_id: str) -> tuple[int, int, int]:
    """(live holds, waiting entries, live-hold limit) of the owner, in one statement: what
    `hold_limits_check` compares, for a reader that explains it (availability)."""
    with prepared_cursor() as cursor:
        cursor.execute(_LIVE_HOLDS_SQL, [owner_id, timezone.now(), owner_id, owner_id])
        live, waiting, override = cursor.fetchone()
    maximum = settings.FAIR_USE_MAX_LIVE_HOLDS if override is None else override
    return live, waiting, maximum
