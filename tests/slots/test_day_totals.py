"""The per-day totals behind an owner's uncached search page (slots/day_totals.py): taken once
for many pages, changed at once by a hold, right past the days they keep."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from slots.selectors import slot_search, slot_search_evaluated

from ..factories import ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _calendar(service, *, days: int, per_day: int = 3) -> list:
    first = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    return [
        SlotFactory(
            service=service,
            start_at=first + dt.timedelta(days=day, hours=3 * n),
            end_at=first + dt.timedelta(days=day, hours=3 * n, minutes=30),
        )
        for day in range(days)
        for n in range(per_day)
    ]


def _totals_taken(queries: CaptureQueriesContext) -> int:
    return sum("width_bucket" in query["sql"] for query in queries.captured_queries)


def test_pages_with_new_starts_count_from_one_set_of_totals(clinic_service):
    _calendar(clinic_service, days=20)
    now = dt.datetime.now(dt.UTC)
    with CaptureQueriesContext(connection) as queries:
        for hours in range(0, 24 * 15, 37):  # each page a start no other page used
            filters = {
                "clinic_id": clinic_service.clinic_id,
                "start_from": now + dt.timedelta(hours=hours, minutes=7),
                "available": True,
            }
            answer = slot_search(filters=filters, page=1, page_size=5, now=now)
            expected = slot_search_evaluated(
                filters=filters, page=1, page_size=5, now=now, using="default"
            )
            assert answer["count"] == expected["count"] > 0
            assert answer["results"] == expected["results"]
    assert _totals_taken(queries) == 1


def test_a_hold_on_a_day_ahead_changes_the_next_page_at_once(
    clinic_service, owner_pet, owner_client
):
    slots = _calendar(clinic_service, days=6)
    params = {"clinic_id": clinic_service.clinic_id, "available": "true"}
    before = owner_client.get("/api/v1/slots", params).json()["count"]
    assert before == len(slots)

    held = slots[-2]  # in a whole day well inside the range
    response = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(held.id), "pet_id": "pet-1"}, format="json"
    )
    assert response.status_code == 201
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, seconds=13)).isoformat()
    after = owner_client.get("/api/v1/slots", {**params, "start_from": start}).json()
    assert after["count"] == before - 1
    everything = owner_client.get("/api/v1/slots", {**params, "page_size": 100}).json()
    assert str(held.id) not in {row["id"] for row in everything["results"]}


def test_days_past_the_kept_ones_are_counted_by_the_page(clinic):
    from slots.day_totals import DAY_TOTALS_MAX_DAYS

    endless = ClinicServiceFactory(id="svc-endless", clinic=clinic, booking_horizon_days=1000)
    near = _calendar(endless, days=2, per_day=1)
    far = SlotFactory(
        service=endless,
        start_at=near[0].start_at + dt.timedelta(days=DAY_TOTALS_MAX_DAYS + 30),
        end_at=near[0].start_at + dt.timedelta(days=DAY_TOTALS_MAX_DAYS + 30, minutes=30),
    )
    now = dt.datetime.now(dt.UTC)
    filters = {"service_id": endless.id, "clinic_id": clinic.id}
    for page in (1, 2, 3):
        answer = slot_search(filters=filters, page=page, page_size=1, now=now)
        assert answer["count"] == 3
    assert answer["results"][0]["id"] == str(far.id)


def test_one_thread_takes_the_totals_while_the_others_count_their_range(clinic_service):
    import threading
    from unittest import mock

    from django.db import connections

    from slots import day_totals as module

    _calendar(clinic_service, days=5)
    now = dt.datetime.now(dt.UTC)
    inside, release = threading.Event(), threading.Event()
    real_take = module._take

    def slow_take(*args, **kwargs):
        inside.set()
        assert release.wait(10)
        return real_take(*args, **kwargs)

    def totals():
        return module.day_totals(
            service_id=clinic_service.id,
            clinic_id=clinic_service.clinic_id,
            zone_name="Europe/Berlin",
            horizon_end=now + dt.timedelta(days=30),
            free_sql="s.capacity - s.booked_count - s.held_count",
            now=now,
            using="default",
        )

    taken = []

    def first():
        try:
            taken.append(totals())
        finally:
            connections.close_all()

    with mock.patch.object(module, "_take", slow_take):
        thread = threading.Thread(target=first)
        thread.start()
        assert inside.wait(10)
        assert totals() is None  # taken by the other thread right now: count the range
        release.set()
        thread.join(10)
    assert taken[0] is not None
    assert taken[0].open_before[-1] == 15
    assert totals() is taken[0]  # kept for the next page


def test_with_the_cache_redis_down_every_page_counts_its_range(
    settings, private_redis, clinic_service, owner_pet, owner_client
):
    """A stopped cache Redis reads every generation as 0 and bumps none: totals kept then
    would never see a change, so pages count their whole range, as cached pages are not
    served then either."""
    from petpro_booking.core.local_cache import clear_local_cache

    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": private_redis.url}}
    clear_local_cache()
    slots = _calendar(clinic_service, days=6)
    params = {"clinic_id": clinic_service.clinic_id, "available": "true"}
    private_redis.stop()

    def count(minutes: int) -> int:  # a start no page used before: never a cached page
        start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, minutes=minutes)).isoformat()
        return owner_client.get("/api/v1/slots", {**params, "start_from": start}).json()["count"]

    assert count(1) == len(slots)
    response = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slots[-2].id), "pet_id": "pet-1"}, format="json"
    )
    assert response.status_code == 201
    assert count(2) == len(slots) - 1


def _instant_in(data, bounds: list[dt.datetime], *, after: dt.datetime | None = None):
    """A midnight of the calendar, or any instant around it (never before `after`)."""
    if data.draw(st.booleans()):
        choices = [b for b in bounds if after is None or b >= after]
        if choices:
            return data.draw(st.sampled_from(choices))
    low = after or bounds[0] - dt.timedelta(hours=30)
    hours = data.draw(st.floats(0, max(0.0, (bounds[-1] - low).total_seconds() / 3600 + 30)))
    return low + dt.timedelta(hours=hours, microseconds=7)


@given(
    zone=st.sampled_from(["Europe/Berlin", "America/Sao_Paulo", "Asia/Kolkata", "UTC"]),
    first_day=st.dates(min_value=dt.date(2027, 1, 1), max_value=dt.date(2027, 12, 20)),
    days=st.lists(
        st.one_of(
            st.none(),  # a day without an open slot
            st.tuples(
                st.integers(1, 40),  # open
                st.integers(0, 40),  # free (capped at open below)
                st.floats(0, 0.99),  # first start, as a share of the day
                st.one_of(st.none(), st.integers(1, 10**6)),  # expiry, seconds after taking
            ),
        ),
        min_size=1,
        max_size=20,
    ),
    data=st.data(),
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_a_part_is_what_the_days_inside_the_range_add_up_to(zone, first_day, days, data):
    """DayTotals.part against the days summed one by one: the whole days inside [start, end)
    count, their first start and first expiry bound the answer, and what they leave out of the
    range is exactly what the page statement must count."""
    from zoneinfo import ZoneInfo

    from slots.day_totals import DayTotals

    tz = ZoneInfo(zone)
    bounds = [
        dt.datetime.combine(first_day + dt.timedelta(days=k), dt.time(), tz).astimezone(dt.UTC)
        for k in range(len(days) + 1)
    ]
    taken = bounds[0] - dt.timedelta(hours=5)
    rows = []
    for k, day in enumerate(days, start=1):
        if day is None:
            continue
        opened, free, share, expiry = day
        start = bounds[k - 1] + (bounds[k] - bounds[k - 1]) * share
        start = start.replace(microsecond=start.microsecond // 10 * 10)
        expires = None if expiry is None else taken + dt.timedelta(seconds=expiry)
        rows.append((k, opened, min(free, opened), start, expires))
    totals = DayTotals.of(taken_at=taken, bounds=bounds, rows=rows)

    start = _instant_in(data, bounds)
    end = _instant_in(data, bounds, after=start)
    part = totals.part(start, end)
    inside = [row for row in rows if start <= bounds[row[0] - 1] and bounds[row[0]] <= end]
    assert part.open == sum(row[1] for row in inside)
    assert part.free == sum(row[2] for row in inside)
    assert part.first_start == min((row[3] for row in inside), default=None)
    assert part.next_expiry == min((row[4] for row in inside if row[4]), default=None)
    # The pieces left to count and the whole days kept tile [start, end) exactly.
    kept = [
        (bounds[k - 1], bounds[k])
        for k in range(1, len(bounds))
        if start <= bounds[k - 1] and bounds[k] <= end
    ]
    pieces = sorted([*part.uncounted, *kept])
    if start < end:
        assert pieces[0][0] == start
        assert pieces[-1][1] == end
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
        assert all(a < b for a, b in pieces)
