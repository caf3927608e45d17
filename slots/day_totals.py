"""Per-day totals of a service's open and free slots, kept in this process for the owner search.

An owner's page answers with `count`, the bookable slots of the whole range asked for: months
of slots, where the page itself shows twenty. Counting them on every uncached page was most
of the page's PostgreSQL time (docs/benchmarks.md, "An uncached page's statement, taken
apart"). So each process keeps, per service, how many of its open slots start on each of the
clinic's days from tomorrow to the booking horizon and how many of those are free, with each
day's first start and next hold expiry; an uncached page then counts only the part of its
range that is not whole cached days (what is left of the first day, and of the last when the
search ends inside one) and adds the cached days.

The totals are keyed like the search pages themselves: by the clinic's search generation
(read at most every SLOT_SEARCH_MAX_LAG_SECONDS, so they lag a change no longer than a cached
page may), the day they were taken and the service's horizon, zone and clinic. A hold that
expires turns its full slot free without a write, so the totals are used only between the
instant they were taken and their days' first hold expiry. With SLOT_SEARCH_DAY_TOTALS, the
local cache or the search cache switched off, or the cache's Redis unreachable (no generation
to key them by), there are no totals, and every page counts its whole range.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import threading
from array import array
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connections

from petpro_booking.core import cache as cache_keys
from petpro_booking.core.local_cache import MISSING, LocalLRU, local_cache

from .invalidation import slot_search_family

# Days past this many are counted with the page's statement (a service without a horizon).
DAY_TOTALS_MAX_DAYS = 400

# The keys whose totals a thread of this process is taking now.
_taking: set[tuple] = set()
_taking_guard = threading.Lock()

# Each day's bucket is width_bucket's: day k (1-based) is [bounds[k-1], bounds[k]).
_DAY_TOTALS = """
SELECT width_bucket(s.start_at, %(bounds)s::timestamptz[]) AS day, count(*),
    count(*) FILTER (WHERE {free} > 0), min(s.start_at),
    min(CASE WHEN s.held_count > 0 THEN (
        SELECT min(r.expires_at) FROM reservations r
        WHERE r.slot_id = s.id AND r.status = 'held' AND r.expires_at > %(now)s) END)
FROM slots s
WHERE s.service_id = %(service)s AND s.start_at >= %(from)s AND s.start_at < %(to)s
    AND s.status = 'open'
GROUP BY 1
"""


@dataclass(frozen=True)
class Part:
    """What the cached days contribute to one service's range, and what is left to count."""

    open: int
    free: int
    first_start: dt.datetime | None
    next_expiry: dt.datetime | None
    uncounted: tuple[tuple[dt.datetime, dt.datetime], ...]

    def count(self, *, available: bool | None) -> int:
        """The search's `available` filter: free slots, full ones, or all open ones."""
        if available is None:
            return self.open
        return self.free if available else self.open - self.free


@dataclass(frozen=True)
class DayTotals:
    """A service's open and free slots per day, taken at `taken_at` (holds past their expiry
    then count as free); good until `good_until`, the first hold expiry in those days.

    Instants are epoch seconds in typed arrays (~16 KB for 400 days, where datetimes in tuples
    took ~110 KB: a process may keep one per service searched)."""

    taken_at: dt.datetime
    good_until: dt.datetime | None
    bounds: array  # the days' midnights ('d'); day k (1-based) is [bounds[k-1], bounds[k])
    open_before: array  # open slots of the days before bound k ('q')
    free_before: array
    busy_days: array  # the days with an open slot, in order ('l')
    first_starts: array  # per day (index k - 1), NaN for a day without an open slot ('d')
    expiries: array  # per day, the first live hold's expiry; inf for none ('d')

    @classmethod
    def of(
        cls, *, taken_at: dt.datetime, bounds: list[dt.datetime], rows: list[tuple]
    ) -> DayTotals:
        """From the days' midnights and _DAY_TOTALS's rows: (day, open, free, first start,
        first live hold expiry or None), a row per day with an open slot."""
        days = len(bounds) - 1
        opened, free = [0] * days, [0] * days
        first_starts, expiries = [math.nan] * days, [math.inf] * days
        for day, open_count, free_count, first_start, expiry in rows:
            opened[day - 1], free[day - 1] = open_count, free_count
            first_starts[day - 1] = first_start.timestamp()
            if expiry is not None:
                expiries[day - 1] = expiry.timestamp()
        soonest = min(expiries, default=math.inf)
        return cls(
            taken_at=taken_at,
            good_until=None if math.isinf(soonest) else _instant(soonest),
            bounds=array("d", (bound.timestamp() for bound in bounds)),
            open_before=array("q", (0, *itertools.accumulate(opened))),
            free_before=array("q", (0, *itertools.accumulate(free))),
            busy_days=array("l", sorted(day for day, *_ in rows)),
            first_starts=array("d", first_starts),
            expiries=array("d", expiries),
        )

    def usable_at(self, now: dt.datetime) -> bool:
        return self.taken_at <= now and (self.good_until is None or now < self.good_until)

    def part(self, start: dt.datetime, end: dt.datetime) -> Part:
        """The cached whole days of [start, end), and the pieces of it outside them."""
        first = bisect.bisect_left(self.bounds, start.timestamp())  # bounds[first] >= start
        last = bisect.bisect_right(self.bounds, end.timestamp()) - 1  # bounds[last] <= end
        if first >= last:
            return Part(0, 0, None, None, ((start, end),))
        busy = bisect.bisect_right(self.busy_days, first)
        first_day = self.busy_days[busy] if busy < len(self.busy_days) else None
        expiry = min(self.expiries[first:last])
        uncounted = tuple(
            piece
            for piece in (
                (start, _instant(self.bounds[first])),
                (_instant(self.bounds[last]), end),
            )
            if piece[0] < piece[1]
        )
        return Part(
            open=self.open_before[last] - self.open_before[first],
            free=self.free_before[last] - self.free_before[first],
            first_start=(
                _instant(self.first_starts[first_day - 1])
                if first_day is not None and first_day <= last
                else None
            ),
            next_expiry=None if math.isinf(expiry) else _instant(expiry),
            uncounted=uncounted,
        )


def _instant(seconds: float) -> dt.datetime:
    """An instant kept as epoch seconds (a float holds today's microseconds exactly enough to
    come back to the same datetime)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def day_totals(
    *,
    service_id: str,
    clinic_id: str,
    zone_name: str,
    horizon_end: dt.datetime,
    free_sql: str,
    now: dt.datetime,
    using: str,
) -> DayTotals | None:
    """The service's totals usable at `now`, from this process's cache or taken now; None
    when there are none to use (switched off, Redis unreachable, no whole day ahead, or
    another thread of the process taking them): the page then counts its whole range."""
    local = local_cache()
    if (
        local is None
        or not settings.SLOT_SEARCH_DAY_TOTALS
        or settings.SLOT_SEARCH_CACHE_SECONDS <= 0
        or settings.LOCAL_CACHE_SECONDS <= 0
    ):
        return None
    zone = ZoneInfo(zone_name)
    tomorrow = now.astimezone(zone).date() + dt.timedelta(days=1)
    generation = cache_keys.generation(
        slot_search_family(clinic_id), max_lag=settings.SLOT_SEARCH_MAX_LAG_SECONDS
    )
    if not generation:  # Redis unreachable: no change would reach the totals, so none are kept
        return None
    key = ("day-totals", service_id, clinic_id, zone_name, tomorrow, horizon_end, generation)
    kept = local.get(key)
    if kept is not MISSING and kept.usable_at(now):
        return kept
    # One thread of the process takes them; a page asked for meanwhile counts its whole range,
    # as it would without totals, rather than every thread taking the same totals at once.
    with _taking_guard:
        if key in _taking:
            return None
        _taking.add(key)
    try:
        return _take(
            key,
            local=local,
            zone=zone,
            tomorrow=tomorrow,
            horizon_end=horizon_end,
            free_sql=free_sql,
            service_id=service_id,
            now=now,
            using=using,
        )
    finally:
        with _taking_guard:
            _taking.discard(key)


def _take(
    key: tuple,
    *,
    local: LocalLRU,
    zone: ZoneInfo,
    tomorrow: dt.date,
    horizon_end: dt.datetime,
    free_sql: str,
    service_id: str,
    now: dt.datetime,
    using: str,
) -> DayTotals | None:
    bounds = []
    for offset in range(DAY_TOTALS_MAX_DAYS + 1):
        bound = _midnight(tomorrow + dt.timedelta(days=offset), zone)
        if bound > horizon_end:
            break
        bounds.append(bound)
    if len(bounds) < 2:
        return None
    with connections[using].cursor() as cursor:
        cursor.execute(
            _DAY_TOTALS.format(free=free_sql),
            {
                "bounds": bounds,
                "now": now,
                "service": service_id,
                "from": bounds[0],
                "to": bounds[-1],
            },
        )
        rows = cursor.fetchall()
    totals = DayTotals.of(taken_at=now, bounds=bounds, rows=rows)
    # A process keeps them as long as its other read-model values: a service searched again
    # within that reuses them, one searched once does not hold memory for minutes.
    local.set(key, totals, ttl=settings.LOCAL_CACHE_SECONDS)
    return totals
