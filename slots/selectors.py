"""Every read of the slots app: clinics, services, one slot, cached availability search."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from integrations.clinics import gateway as clinic_source
from petpro_booking.core import cache as cache_keys
from petpro_booking.core import metrics
from petpro_booking.core.clock import api_timestamp, local_fields
from petpro_booking.core.db import read_replica
from petpro_booking.core.errors import NotFound
from petpro_booking.core.http import uuid_or_not_found
from petpro_booking.core.local_cache import MISSING, local_cache

from .clinic_sync import clinic_is_stale, clinic_read_through
from .day_totals import day_totals
from .invalidation import clinic_read_model_family, slot_search_family
from .models import (
    Clinic,
    ClinicService,
    Slot,
    available_capacity,
    available_capacity_sql,
    free_units,
    free_units_sql,
)
from .rules import (
    BEYOND_BOOKING_HORIZON,
    HORIZON_DAYS_MAX,
    NOTICE_MINUTES_MAX,
    SLOT_FULL,
    last_bookable_date,
    notice_edge,
    rules_of,
    slot_refusal,
    species_accepted,
)

logger = logging.getLogger(__name__)


def clinic_list() -> QuerySet[Clinic]:
    return Clinic.objects.all().order_by("name", "id")


# The read-model in both cache levels (process LRU, Redis), dropped by any change of the clinic
# or its services (invalidation.clinic_read_model_changed).
READ_MODEL_CACHE_SECONDS = 300


def clinic_get(*, clinic_id: str) -> Clinic:
    """When the Clinic Service feeds the read-model, an unknown or stale clinic is fetched first
    (a known one keeps serving while the Clinic Service is down; an unknown one is then a 503)."""
    clinic = cache_keys.two_level_get(
        family=clinic_read_model_family(clinic_id),
        name=f"clinic:{clinic_id}",
        load=lambda: Clinic.objects.filter(id=clinic_id).first(),
        ttl=READ_MODEL_CACHE_SECONDS,
    )
    if clinic is None or (clinic_source.clinics_fed_from_outside() and clinic_is_stale(clinic)):
        clinic = clinic_read_through(clinic_id=clinic_id)
    if clinic is None:
        raise NotFound("No such clinic.")
    return clinic


def clinic_service_list(*, clinic_id: str) -> list[ClinicService]:
    clinic = clinic_get(clinic_id=clinic_id)
    services = cache_keys.two_level_get(
        family=clinic_read_model_family(clinic.id),
        name=f"clinic-services:{clinic.id}",
        load=lambda: list(ClinicService.objects.filter(clinic=clinic).order_by("name", "id")),
        ttl=READ_MODEL_CACHE_SECONDS,
    )
    return services or []


def slot_get(*, slot_id: uuid.UUID | str) -> Slot:
    try:
        return Slot.objects.get(id=uuid_or_not_found(slot_id, what="slot"))
    except Slot.DoesNotExist:
        raise NotFound("No such slot.") from None


# Availability search in one pass of SQL: the same rules as slots/rules.py (a test compares
# them slot by slot), the expired part of `held_count` counted free at read time, and the next
# instant the answer changes on its own (a hold expiring, a slot entering the notice or the
# horizon, a slot starting) so a cached page never outlives it.
_SEARCH_BASE = """
WITH svc AS MATERIALIZED (
    -- per service, once: its rules as instants (the horizon in the clinic's calendar)
    SELECT sv.id AS service_id, c.active AS clinic_active, sv.active AS service_active,
        c.name AS clinic_name, c.timezone, sv.name AS service_name,
        make_interval(mins => least(coalesce(sv.min_notice_minutes, %(notice)s),
            %(notice_max)s)) AS notice,
        ((%(now)s AT TIME ZONE c.timezone)::date
            + least(coalesce(sv.booking_horizon_days, %(horizon)s), %(horizon_max)s)
            + 1)::timestamp
            AT TIME ZONE c.timezone AS horizon_end,
        ((%(now)s AT TIME ZONE c.timezone)::date + 1)::timestamp
            AT TIME ZONE c.timezone AS next_midnight
    FROM clinic_services sv JOIN clinics c ON c.id = sv.clinic_id
    WHERE {service_where}
), held AS (
    -- the live holds of the matching slots, per slot, in one pass (not a subquery per slot):
    -- those past their expiry that the job has not expired yet, and the next expiry
    -- and, where some are past it, the owners waiting for the slot (the line gets those first)
    SELECT r.slot_id,
        count(*) FILTER (WHERE r.expires_at <= %(now)s) AS expired,
        CASE WHEN count(*) FILTER (WHERE r.expires_at <= %(now)s) > 0 THEN (
            SELECT count(*) FROM waitlist_entries w
            WHERE w.slot_id = r.slot_id AND w.status = 'waiting') ELSE 0 END AS waiting,
        min(r.expires_at) FILTER (WHERE r.expires_at > %(now)s) AS next_expiry
    FROM reservations r JOIN slots s ON s.id = r.slot_id
    WHERE r.status = 'held' AND s.held_count > 0
        AND s.service_id IN (SELECT service_id FROM svc) AND {where}
    GROUP BY r.slot_id
), base AS (
    SELECT s.id, s.clinic_id, s.service_id, s.start_at, s.end_at, s.capacity, s.status,
        s.version, s.held_count, h.next_expiry, svc.next_midnight, svc.clinic_name,
        svc.timezone, svc.service_name,
        {free} AS free,
        s.start_at - svc.notice AS notice_edge,
        CASE
            WHEN NOT svc.clinic_active THEN 'clinic_inactive'
            WHEN NOT svc.service_active THEN 'service_inactive'
            WHEN s.start_at <= %(now)s THEN 'slot_started'
            WHEN s.start_at - svc.notice < %(now)s THEN 'too_late_to_book'
            WHEN s.start_at >= svc.horizon_end THEN 'beyond_booking_horizon'
            WHEN s.status <> 'open' THEN 'slot_closed'
        END AS rule_reason
    FROM slots s JOIN svc ON svc.service_id = s.service_id
    LEFT JOIN held h ON h.slot_id = s.id
    WHERE {where}
), rows AS (
    SELECT *, coalesce(rule_reason, CASE WHEN free <= 0 THEN 'slot_full' END) AS reason
    FROM base
)
"""
# Holds past their expiry count as free at read time (the capacity rule, slots/models.py),
# beyond the owners waiting for the slot: a hold's lazy expiry gives such a unit back through
# the waiting list's hook, which offers it to the line first (docs/bookings.md, Waiting list).
_FREE_SQL = free_units_sql(
    slot="s",
    expired_holds="greatest(0, coalesce(h.expired, 0) - coalesce(h.waiting, 0))",
)
_AVAILABLE_SQL = available_capacity_sql(status="page.status", free="page.free")
# One statement, one round trip: the summary over every matching slot, then the page.
_SEARCH_PAGE = """, summary AS (
    SELECT count(*) FILTER (WHERE {visible}) AS total,
        least(
            min(next_expiry) FILTER (WHERE rule_reason IS NULL),
            min(notice_edge) FILTER (WHERE rule_reason IS NULL AND notice_edge >= %(now)s),
            min(start_at) FILTER (WHERE %(staff)s AND start_at > %(now)s),
            min(next_midnight) FILTER (WHERE rule_reason = 'beyond_booking_horizon')
        ) AS next_change
    FROM rows
)
SELECT summary.total, summary.next_change, page.id, page.clinic_id, page.service_id,
    page.start_at, page.end_at, page.capacity, page.status, page.version, {available},
    page.reason, page.timezone, page.clinic_name, page.service_name
FROM summary LEFT JOIN LATERAL (
    SELECT * FROM rows WHERE {visible} ORDER BY start_at, id LIMIT %(limit)s OFFSET %(offset)s
) page ON TRUE
"""


def _search_filters_sql(filters: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The search `filters` (see slot_search_page) as conditions on the slot (`s`) and on the
    service (`sv`, its clinic `c`), with their parameters."""
    where, service_where, params = ["TRUE"], ["TRUE"], {}
    for name, clause in (
        ("clinic_id", "sv.clinic_id = %(clinic_id)s"),
        ("service_id", "sv.id = %(service_id)s"),
    ):
        if filters.get(name) is not None:
            service_where.append(clause)
    for name, clause in (
        ("slot_id", "s.id = %(slot_id)s"),
        ("clinic_id", "s.clinic_id = %(clinic_id)s"),
        ("service_id", "s.service_id = %(service_id)s"),
        ("start_from", "s.start_at >= %(start_from)s"),
        ("start_to", "s.start_at < %(start_to)s"),
    ):
        if filters.get(name) is not None:
            where.append(clause)
            params[name] = filters[name]
    if filters.get("species"):
        service_where.append(
            "(jsonb_array_length(sv.species) = 0 OR EXISTS (SELECT 1 FROM "
            "jsonb_array_elements_text(sv.species) AS accepted(name) "
            "WHERE lower(accepted.name) = %(species)s))"
        )
        params["species"] = filters["species"].lower()
    return " AND ".join(where), " AND ".join(service_where), params


def _search_sql(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(SQL, parameters) for the search `filters` (see slot_search_page), every rule evaluated
    for every matching slot."""
    where, service_where, params = _search_filters_sql(filters)
    staff = bool(filters.get("include_unbookable"))
    visible = ["TRUE" if staff else "rule_reason IS NULL"]
    if filters.get("available") is True:
        visible.append("reason IS NULL")
    elif filters.get("available") is False:
        visible.append("reason IS NOT NULL")
    base = _SEARCH_BASE.format(where=where, service_where=service_where, free=_FREE_SQL)
    condition = " AND ".join(visible)
    params["staff"] = staff
    page = _SEARCH_PAGE.format(visible=condition, available=_AVAILABLE_SQL)
    return base.rstrip() + page, params


# An owner sees only the slots every rule allows, and each rule is a range of start_at per
# service (started, notice, horizon) or a column test (status, activity). So the owner's search
# takes its services' ranges from the rules in Python (slots/rules.py, the same functions a hold
# checks), folds the search's own start filters into those ranges, and asks PostgreSQL lean
# questions the (service, start) index answers: the count, the notice edge and the next hold
# expiry in one pass over the bookable range, and a page that stops after its rows. The staff query
# above evaluates every rule of every matching slot instead (it shows the refused ones with
# their reason), and costs several times more to plan and run (docs/benchmarks.md, "Search and
# the API path"). A test compares both with the rules evaluated row by row.
_OWNER_SERVICES = """
SELECT sv.id, sv.clinic_id, c.timezone, c.name, sv.name, sv.min_notice_minutes,
    sv.booking_horizon_days, sv.buffer_before_minutes, sv.buffer_after_minutes, sv.species
FROM clinic_services sv JOIN clinics c ON c.id = sv.clinic_id
WHERE c.active AND sv.active AND {service_where}
"""
# Holds past their expiry that the expiry job has not expired yet count as free, and the next
# expiry bounds the answer's life: both are read per held slot of the range, from the index of
# held holds by slot and expiry (one probe per slot with `held_count > 0`, none for the others),
# so the cost follows this clinic's holds, not every clinic's (nor the dead entries a busy
# index of all held expiries carries between vacuums). The count, the notice edge and the next
# expiry come from one pass over the `counted` ranges: the range itself, or what is left of it
# past the whole days the per-day totals give (slots/day_totals.py).
_OWNER_SEARCH = """
WITH summary AS MATERIALIZED (
    SELECT count(*) FILTER (WHERE {free_test}) AS total,
        min(s.start_at - {notice}) AS notice_edge,
        min(CASE WHEN s.held_count > 0 THEN (
            SELECT min(r.expires_at) FROM reservations r
            WHERE r.slot_id = s.id AND r.status = 'held' AND r.expires_at > %(now)s) END)
            AS next_expiry
    FROM slots s
    WHERE {counted}
)
SELECT summary.total, summary.notice_edge, summary.next_expiry, page.*
FROM summary LEFT JOIN LATERAL (
    SELECT s.id, s.service_id, s.start_at, s.end_at, s.capacity, s.status, s.version,
        {free} AS free
    FROM slots s
    WHERE {rows} AND {free_test}
    ORDER BY s.start_at, s.id LIMIT %(limit)s OFFSET %(offset)s
) AS page ON TRUE
"""
# Holds past their expiry that the expiry job has not expired yet, beyond the owners waiting
# for the slot (who get them first): one aggregate per held slot only, as before the line
# counted; the line is read only where some are past their expiry (HAVING: else NULL, 0), by
# a function (waitlist migration 0002): as a nested subquery it was planned in each of the
# expression's three places on every page, +0.08 ms of PostgreSQL per uncached page.
_EXPIRED_HOLDS = (
    "CASE WHEN s.held_count > 0 THEN coalesce((SELECT greatest(0, count(*)"
    " - waitlist_waiting_count(s.id))"
    " FROM reservations r WHERE r.slot_id = s.id AND r.status = 'held'"
    " AND r.expires_at <= %(now)s HAVING count(*) > 0), 0) ELSE 0 END"
)
# One service's bookable range, the search's own start filters folded in (Python takes the
# later start and the earlier end): the (service, start_at) index answers it in one range. The
# service names the clinic too: the foreign key (service_id, clinic_id) -> clinic_services
# keeps a slot's clinic its service's (slots migration 0005), so no clinic_id test per slot.
_OWNER_RANGE = (
    "(s.service_id = %(service{i})s AND s.start_at >= %(from{i})s AND s.start_at < %(to{i})s)"
)
# More services than this (a search over many clinics) take the staff query's plan.
OWNER_SEARCH_MAX_SERVICES = 16


@dataclass(frozen=True)
class _Bookable:
    """Where a service's bookable slots lie at one instant: [start_from, horizon_end)."""

    service_id: str
    clinic_id: str
    zone_name: str
    clinic_name: str
    service_name: str
    notice: dt.timedelta
    start_from: dt.datetime
    horizon_end: dt.datetime
    next_midnight: dt.datetime


def _owner_service_rows(
    *, filters: dict[str, Any], service_where: str, params: dict[str, Any], using: str
) -> list[tuple]:
    """The active services the search names (the columns of _OWNER_SERVICES). A search of one
    clinic, which is what owners' apps send, takes that clinic's services from its read-model
    cache (both levels; any change of the clinic or its services drops it,
    invalidation.clinic_read_model_changed) and picks the service and species here, with the
    rule a hold applies (`species_accepted`): one statement less per uncached page."""
    clinic_id = filters.get("clinic_id")
    if clinic_id is None:
        with connections[using].cursor() as cursor:
            cursor.execute(_OWNER_SERVICES.format(service_where=service_where), params)
            return cursor.fetchall()

    def load() -> list[tuple]:
        with connections[using].cursor() as cursor:
            cursor.execute(
                _OWNER_SERVICES.format(service_where="sv.clinic_id = %(clinic_id)s"),
                {"clinic_id": clinic_id},
            )
            # Django's cursors leave jsonb as text (JSONField decodes it): the list is kept
            return [(*row[:9], json.loads(row[9])) for row in cursor.fetchall()]

    rows = cache_keys.two_level_get(
        family=clinic_read_model_family(clinic_id),
        name=f"owner-services:{clinic_id}",
        load=load,
        ttl=READ_MODEL_CACHE_SECONDS,
    )
    service_id, species = filters.get("service_id"), filters.get("species")
    return [
        row
        for row in rows or []
        if (service_id is None or row[0] == service_id)
        and (not species or species_accepted(accepted=row[9], species=species))
    ]


def _bookable_services(
    *,
    filters: dict[str, Any],
    service_where: str,
    params: dict[str, Any],
    now: dt.datetime,
    using: str,
) -> list[_Bookable]:
    found = _owner_service_rows(
        filters=filters, service_where=service_where, params=params, using=using
    )
    now = now.astimezone(dt.UTC)  # elapsed-time arithmetic (aware arithmetic is wall-clock)
    services = []
    for row in found:
        service_id, clinic_id, zone_name, clinic_name, service_name = row[:5]
        notice_minutes, horizon_days, buffer_before, buffer_after = row[5:9]
        rules = rules_of(  # the service's rules, unset ones from settings, as a hold takes them
            SimpleNamespace(
                min_notice_minutes=notice_minutes,
                booking_horizon_days=horizon_days,
                buffer_before_minutes=buffer_before,
                buffer_after_minutes=buffer_after,
            )
        )
        zone = ZoneInfo(zone_name)
        last = last_bookable_date(now=now, zone=zone, rules=rules)
        tomorrow = now.astimezone(zone).date() + dt.timedelta(days=1)
        notice = dt.timedelta(minutes=rules.min_notice_minutes)
        services.append(
            _Bookable(
                service_id=service_id,
                clinic_id=clinic_id,
                zone_name=zone_name,
                clinic_name=clinic_name,
                service_name=service_name,
                notice=notice,
                # not started (start_at > now) and not too late (start_at - notice >= now)
                start_from=max(now + notice, now + dt.timedelta(microseconds=1)),
                horizon_end=_local_midnight(last + dt.timedelta(days=1), zone),
                next_midnight=_local_midnight(tomorrow, zone),
            )
        )
    return services


def _local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The first instant of `day` in `zone` (where midnight is skipped, the instant the day
    begins), in UTC."""
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _owner_search(
    filters: dict[str, Any],
    *,
    where: str,
    service_where: str,
    params: dict[str, Any],
    now: dt.datetime,
    page: int,
    page_size: int,
    using: str,
) -> dict[str, Any] | None:
    """`slot_search` for an owner (no `include_unbookable`); None when the filters match too
    many services for one lean statement."""
    services = _bookable_services(
        filters=filters, service_where=service_where, params=params, now=now, using=using
    )
    if len(services) > OWNER_SEARCH_MAX_SERVICES:
        return None
    if not services:
        return {"count": 0, "results": [], "valid_until": None}
    params = {**params, "now": now, "limit": page_size, "offset": (page - 1) * page_size}
    wanted_from, wanted_to = filters.get("start_from"), filters.get("start_to")
    free = free_units_sql(slot="s", expired_holds=_EXPIRED_HOLDS)
    available = filters.get("available")
    ranges, counted_ranges, notices = [], [], []
    # What the cached days of each service's range add to the summary (slots/day_totals.py):
    # the statement counts only the rest. Not for one slot's search (`where`).
    cached_count = 0
    changes: list[dt.datetime | None] = []
    for i, service in enumerate(services):
        start_from = max(filter(None, (service.start_from, wanted_from)))
        start_to = min(filter(None, (service.horizon_end, wanted_to)))
        params.update(
            {
                f"service{i}": service.service_id,
                f"from{i}": start_from,
                f"to{i}": start_to,
                f"notice{i}": service.notice,
            }
        )
        ranges.append(_OWNER_RANGE.format(i=i))
        notices.append(f"WHEN %(service{i})s THEN %(notice{i})s::interval")
        totals = (
            day_totals(
                service_id=service.service_id,
                clinic_id=service.clinic_id,
                zone_name=service.zone_name,
                horizon_end=service.horizon_end,
                free_sql=free,
                now=now,
                using=using,
            )
            if where == "TRUE" and start_from < start_to
            else None
        )
        if totals is None:
            counted_ranges.append(_OWNER_RANGE.format(i=i))
            continue
        part = totals.part(start_from, start_to)
        cached_count += part.count(available=available)
        if part.first_start is not None:
            changes.append(part.first_start - service.notice)
        changes.append(part.next_expiry)
        for j, (piece_from, piece_to) in enumerate(part.uncounted):
            params.update({f"from{i}_{j}": piece_from, f"to{i}_{j}": piece_to})
            counted_ranges.append(
                f"(s.service_id = %(service{i})s AND s.start_at >= %(from{i}_{j})s"
                f" AND s.start_at < %(to{i}_{j})s)"
            )
    # The notice edge: the last instant the first bookable slot may be held.
    notice = (
        "%(notice0)s::interval"
        if len(services) == 1
        else f"CASE s.service_id {' '.join(notices)} END"
    )
    free_test = (
        f"{free} > 0" if available is True else f"{free} <= 0" if available is False else "TRUE"
    )
    sql = _OWNER_SEARCH.format(
        counted=(
            f"({' OR '.join(counted_ranges)}) AND s.status = 'open' AND {where}"
            if counted_ranges
            else "FALSE"
        ),
        rows=f"({' OR '.join(ranges)}) AND s.status = 'open' AND {where}",
        free_test=free_test,
        free=free,
        notice=notice,
    )
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    first = found[0]
    count, notice_edge, next_expiry = cached_count + first[0], first[1], first[2]
    changes += [notice_edge, next_expiry]
    # At the clinic's next midnight the horizon takes in another day: a slot past it may become
    # bookable. Asking whether one exists cost a probe per service whose plan depended on how
    # the services' slots spread over time (a walk down slots_start_idx past every later slot
    # of other services); the answer now changes by then at the latest, unless the search ends
    # inside the horizon. A page is cached for minutes, so it costs a miss near midnight.
    for service in services:
        if wanted_to is None or wanted_to > service.horizon_end:
            changes.append(service.next_midnight)
    by_id = {service.service_id: service for service in services}
    rows = []
    for row in found:
        slot_id, service_id, start_at, end_at, capacity, status, version, free_units = row[3:]
        if slot_id is None:
            continue
        service = by_id[service_id]
        rows.append(
            slot_row(
                id=slot_id,
                clinic_id=service.clinic_id,
                service_id=service_id,
                start_at=start_at,
                end_at=end_at,
                capacity=capacity,
                status=status,
                version=version,
                available=max(0, free_units),  # open, or it would not be bookable
                reason=None if free_units > 0 else SLOT_FULL,
                zone_name=service.zone_name,
                clinic_name=service.clinic_name,
                service_name=service.service_name,
            )
        )
    next_change = min((change for change in changes if change is not None), default=None)
    return {
        "count": count,
        "results": rows,
        "valid_until": next_change.timestamp() if next_change is not None else None,
    }


def slot_row(
    *,
    id: Any,
    clinic_id: str,
    service_id: str,
    start_at: dt.datetime,
    end_at: dt.datetime,
    capacity: int,
    status: str,
    version: int,
    available: int,
    reason: str | None,
    zone_name: str,
    clinic_name: str,
    service_name: str,
) -> dict[str, Any]:
    """The API shape of a slot (SlotOutput documents it), for search and detail alike: a
    plain function, ten times cheaper than a serializer on the hot path. `available_capacity`
    is what a hold at that instant could take (`available`, the capacity rule of
    slots/models.py): 0 when any rule refuses the slot."""
    return {
        "id": str(id),
        "clinic_id": clinic_id,
        "service_id": service_id,
        "start_at": api_timestamp(start_at),
        "end_at": api_timestamp(end_at),
        "capacity": capacity,
        "available_capacity": available if reason is None else 0,
        "status": status,
        "version": version,
        "bookable": reason is None,
        "reason": reason,
        **local_fields(
            start_at=start_at,
            end_at=end_at,
            zone_name=zone_name,
            clinic_name=clinic_name,
            service_name=service_name,
        ),
    }


def slot_search(
    *,
    filters: dict[str, Any],
    page: int,
    page_size: int,
    now: dt.datetime | None = None,
    using: str = "default",
) -> dict[str, Any]:
    """One page `{"count", "results", "valid_until"}` straight from the database; the
    answer holds until `valid_until` (epoch seconds, None: no change due) unless a slot,
    clinic or service changes."""
    now = now or timezone.now()
    if connections[using].vendor != "postgresql":
        return slot_search_evaluated(
            filters=filters, page=page, page_size=page_size, now=now, using=using
        )
    if not filters.get("include_unbookable"):
        _, service_where, params = _search_filters_sql(filters)
        answer = _owner_search(
            filters,
            # clinic, service and start are the services' ranges (_OWNER_RANGE) already
            where="s.id = %(slot_id)s" if filters.get("slot_id") is not None else "TRUE",
            service_where=service_where,
            params=params,
            now=now,
            page=page,
            page_size=page_size,
            using=using,
        )
        if answer is not None:
            return answer
    sql, params = _search_sql(filters)
    params.update(
        now=now,
        notice=settings.BOOKING_MIN_NOTICE_MINUTES,
        horizon=settings.BOOKING_HORIZON_DAYS,
        horizon_max=HORIZON_DAYS_MAX,
        notice_max=NOTICE_MINUTES_MAX,
        limit=page_size,
        offset=(page - 1) * page_size,
    )
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    count, next_change = found[0][0], found[0][1]
    rows = [
        slot_row(
            id=row[2],
            clinic_id=row[3],
            service_id=row[4],
            start_at=row[5],
            end_at=row[6],
            capacity=row[7],
            status=row[8],
            version=row[9],
            available=row[10],
            reason=row[11],
            zone_name=row[12],
            clinic_name=row[13],
            service_name=row[14],
        )
        for row in found
        if row[2] is not None
    ]
    return {
        "count": count,
        "results": rows,
        "valid_until": next_change.timestamp() if next_change is not None else None,
    }


def _expired_holds(slot_ids: list[uuid.UUID], *, now: dt.datetime, using: str) -> dict[str, int]:
    """Per slot, its holds past their expiry that the expiry job has not expired yet, beyond the
    owners waiting for it (the line gets those first). Reads the holds and waiting-list tables
    by name: both are part of a slot's availability, their apps are not imported."""
    if not slot_ids:
        return {}
    marks = ", ".join(["%s"] * len(slot_ids))
    with connections[using].cursor() as cursor:
        sql = f"SELECT slot_id, count(*) FROM reservations WHERE status = 'held' AND expires_at <= %s AND slot_id IN ({marks}) GROUP BY slot_id"  # noqa: E501, S608 (placeholders only)
        cursor.execute(sql, [now, *(slot_id.hex for slot_id in slot_ids)])
        stale = {uuid.UUID(str(slot_id)).hex: count for slot_id, count in cursor.fetchall()}
        if not stale:
            return {}
        marks = ", ".join(["%s"] * len(stale))
        sql = f"SELECT slot_id, count(*) FROM waitlist_entries WHERE status = 'waiting' AND slot_id IN ({marks}) GROUP BY slot_id"  # noqa: E501, S608 (placeholders only)
        cursor.execute(sql, list(stale))
        waiting = {uuid.UUID(str(slot_id)).hex: count for slot_id, count in cursor.fetchall()}
    return {slot: max(0, count - waiting.get(slot, 0)) for slot, count in stale.items()}


def _next_hold_expiry(slot_ids: list[uuid.UUID], *, now: dt.datetime, using: str) -> Any:
    if not slot_ids:
        return None
    marks = ", ".join(["%s"] * len(slot_ids))
    with connections[using].cursor() as cursor:
        sql = f"SELECT min(expires_at) FROM reservations WHERE status = 'held' AND expires_at > %s AND slot_id IN ({marks})"  # noqa: E501, S608 (placeholders only)
        cursor.execute(sql, [now, *(slot_id.hex for slot_id in slot_ids)])
        value = cursor.fetchone()[0]
    if isinstance(value, str):  # SQLite hands back text
        value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value


def slot_search_evaluated(
    *, filters: dict[str, Any], page: int, page_size: int, now: dt.datetime, using: str
) -> dict[str, Any]:
    """`slot_search` with the rules evaluated in Python by slots/rules.py, row by row: for a
    database without time zones in SQL (SQLite, the embedded mode), and the reference the
    PostgreSQL query is tested against. Reads every slot the filters match."""
    slots = Slot.objects.using(using).select_related("clinic", "service")
    for name, lookup in (
        ("slot_id", "id"),
        ("clinic_id", "clinic_id"),
        ("service_id", "service_id"),
        ("start_from", "start_at__gte"),
        ("start_to", "start_at__lt"),
    ):
        if filters.get(name) is not None:
            slots = slots.filter(**{lookup: filters[name]})
    found = [
        slot
        for slot in slots.order_by("start_at", "id")
        if not filters.get("species")
        or species_accepted(accepted=slot.service.species, species=filters["species"])
    ]
    expired = _expired_holds([s.id for s in found if s.held_count > 0], now=now, using=using)
    staff = bool(filters.get("include_unbookable"))
    visible, edges, watched = [], [], []
    for slot in found:
        rules = rules_of(slot.service)
        zone = ZoneInfo(slot.clinic.timezone)
        counters = {
            "capacity": slot.capacity,
            "booked_count": slot.booked_count,
            "held_count": slot.held_count,
            "expired_holds": expired.get(slot.id.hex, 0),
        }
        free = free_units(**counters)
        reason = slot_refusal(
            start_at=slot.start_at,
            status=slot.status,
            available=free,
            clinic_active=slot.clinic.active,
            service_active=slot.service.active,
            zone=zone,
            rules=rules,
            now=now,
        )
        rule_refused = reason not in (None, SLOT_FULL)
        if reason == BEYOND_BOOKING_HORIZON:  # the horizon moves at the clinic's midnight
            tomorrow = now.astimezone(zone).date() + dt.timedelta(days=1)
            edges.append(dt.datetime.combine(tomorrow, dt.time(), zone).astimezone(dt.UTC))
        if not rule_refused:
            edges.append(notice_edge(start_at=slot.start_at, rules=rules))
            if slot.held_count > 0:
                watched.append(slot.id)
        if staff and slot.start_at > now:
            edges.append(slot.start_at)
        shown = staff or not rule_refused
        if filters.get("available") is True:
            shown = shown and reason is None
        elif filters.get("available") is False:
            shown = shown and reason is not None
        if shown:
            visible.append((slot, available_capacity(status=slot.status, **counters), reason))
    edges.append(_next_hold_expiry(watched, now=now, using=using))
    future = [edge for edge in edges if edge is not None and edge >= now]
    offset = (page - 1) * page_size
    return {
        "count": len(visible),
        "results": [
            slot_row(
                id=slot.id,
                clinic_id=slot.clinic_id,
                service_id=slot.service_id,
                start_at=slot.start_at,
                end_at=slot.end_at,
                capacity=slot.capacity,
                status=slot.status,
                version=slot.version,
                available=available,
                reason=reason,
                zone_name=slot.clinic.timezone,
                clinic_name=slot.clinic.name,
                service_name=slot.service.name,
            )
            for slot, available, reason in visible[offset : offset + page_size]
        ],
        "valid_until": min(future).timestamp() if future else None,
    }


def slot_search_page(*, filters: dict[str, Any], page: int, page_size: int) -> dict[str, Any]:
    """One page of search results `{"count", "results"}`, cached for at most
    SLOT_SEARCH_CACHE_SECONDS, invalidated by any change to a slot, service or clinic of that
    clinic, and never served past the instant it would change on its own (`valid_until`)."""
    # One cache key per question: an unset filter and a false `include_unbookable` are the
    # same question (the API leaves it out, the warming job passes it).
    filters = {
        key: value
        for key, value in filters.items()
        if value is not None and not (key == "include_unbookable" and not value)
    }
    ttl = settings.SLOT_SEARCH_CACHE_SECONDS
    if ttl <= 0:  # cache off: no generation reads either
        return slot_search(filters=filters, page=page, page_size=page_size, using=read_replica())
    clinic_id = filters.get("clinic_id")
    families = [slot_search_family(clinic_id if clinic_id else "*")]
    key = cache_keys.keyed(
        "slotsearch",
        families,
        {**filters, "page": page, "page_size": page_size},
        max_lag=settings.SLOT_SEARCH_MAX_LAG_SECONDS,
    )
    # A page asked for twice is kept in this process too (the key names the generation, so a
    # bump makes it unreachable at once); a page asked for once never pushes anything out.
    local = local_cache()
    cached = local.get(key) if local is not None else MISSING
    from_redis = cached is MISSING
    if from_redis:
        cached = cache.get(key)
    now = timezone.now()
    if cached is not None and (
        cached["valid_until"] is None or cached["valid_until"] > now.timestamp()
    ):
        if from_redis and local is not None:
            local.set(key, cached, ttl=settings.LOCAL_CACHE_SECONDS)
        metrics.SLOT_SEARCH_CACHE.labels(result="hit").inc()
        return cached
    metrics.SLOT_SEARCH_CACHE.labels(result="miss").inc()
    result = slot_search(
        filters=filters, page=page, page_size=page_size, now=now, using=read_replica()
    )
    if result["valid_until"] is not None:
        ttl = min(ttl, result["valid_until"] - now.timestamp())
    if ttl > 0:
        cache.set(key, result, timeout=max(1, math.ceil(ttl)))
    return result


def slot_detail(*, slot_id: uuid.UUID | str, now: dt.datetime | None = None) -> dict[str, Any]:
    """One slot in the search's shape (bookable, reason), read from the database."""
    slot = slot_get(slot_id=slot_id)
    found = slot_search(
        filters={"clinic_id": slot.clinic_id, "slot_id": slot.id, "include_unbookable": True},
        page=1,
        page_size=1,
        now=now,
    )
    return found["results"][0]
