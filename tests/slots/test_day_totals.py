"""The per-day totals behind an owner's uncached search page (slots/day_totals.py): taken once
for many pages, changed at once by a hold, right past the days they keep."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

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
