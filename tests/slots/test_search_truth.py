"""Search tells the truth: a unit is shown free at T iff a hold at T gets it, with the cache
on, before the expiry job has run; an uncached page costs what a bare DRF list costs."""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from reservations.models import Reservation, ReservationStatus
from slots.selectors import slot_search_page

from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)


def free_units(client, slot) -> int:
    body = client.get("/api/v1/slots", {"clinic_id": slot.clinic_id}).json()
    return next(row["available_capacity"] for row in body["results"] if row["id"] == str(slot.id))


def test_expired_hold_shows_free_within_a_second_without_the_expiry_job(
    settings, owner_client, owner_pet, slot
):
    settings.RESERVATION_TTL_SECONDS = 2
    LocalPetFactory(owner__id="owner-2", id="pet-2", species="dog")
    assert free_units(owner_client, slot) == 1  # cached from here on

    response = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert response.status_code == 201
    hold = Reservation.objects.get(id=response.json()["id"])
    assert free_units(owner_client, slot) == 0  # the last unit is held

    while True:  # every answer given before the expiry shows the unit held
        shown = free_units(owner_client, slot)
        if timezone.now() >= hold.expires_at:
            break  # answered at or after the expiry: free is right by then (and asserted below)
        assert shown == 0
        time.sleep(0.1)
    shown_free_at = None
    while shown_free_at is None and timezone.now() < hold.expires_at + dt.timedelta(seconds=2):
        if free_units(owner_client, slot) == 1:
            shown_free_at = timezone.now()
        else:
            time.sleep(0.05)
    assert shown_free_at is not None
    assert shown_free_at - hold.expires_at < dt.timedelta(seconds=1)
    # Nobody expired the hold: search counted it free by itself, and a hold now gets the unit.
    assert Reservation.objects.get(id=hold.id).status == ReservationStatus.HELD
    other = api_client_for(sub="owner-2", roles=["pet_owner"])
    second = other.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-2"}, format="json"
    )
    assert second.status_code == 201
    assert free_units(owner_client, slot) == 0


def test_cached_page_expires_when_a_slot_enters_its_notice(clinic_service):
    clinic_service.min_notice_minutes = 60
    clinic_service.save()
    edge_in = dt.timedelta(seconds=1)
    slot = SlotFactory(
        service=clinic_service, start_at=timezone.now() + dt.timedelta(minutes=60) + edge_in
    )
    filters = {"clinic_id": clinic_service.clinic_id}
    first = slot_search_page(filters=filters, page=1, page_size=20)
    assert [row["id"] for row in first["results"]] == [str(slot.id)]
    assert first["valid_until"] == pytest.approx(
        (slot.start_at - dt.timedelta(hours=1)).timestamp()
    )
    time.sleep(1.2)
    assert slot_search_page(filters=filters, page=1, page_size=20)["count"] == 0


def test_search_links_come_from_the_paginator(owner_client, clinic_service):
    SlotFactory.create_batch(5, service=clinic_service)
    middle = owner_client.get(
        "/api/v1/slots", {"clinic_id": clinic_service.clinic_id, "page_size": 2, "page": 2}
    ).json()
    assert parse_qs(urlparse(middle["next"]).query)["page"] == ["3"]
    assert "page" not in parse_qs(urlparse(middle["previous"]).query)  # DRF drops page=1
    past_the_end = owner_client.get("/api/v1/slots", {"page_size": 2, "page": 9})
    assert past_the_end.status_code == 404
    assert past_the_end.json()["error"]["code"] == "not_found"


def test_uncached_search_is_two_queries(settings, django_assert_num_queries, clinic_service):
    settings.SLOT_SEARCH_CACHE_SECONDS = 0
    SlotFactory.create_batch(25, service=clinic_service)
    # an owner: the services' rules, then count, next change and the page at once
    with django_assert_num_queries(2):
        page = slot_search_page(
            filters={"clinic_id": clinic_service.clinic_id}, page=1, page_size=20
        )
    assert page["count"] == 25
    assert len(page["results"]) == 20
    with django_assert_num_queries(1):  # staff: every rule of every slot in one statement
        page = slot_search_page(
            filters={"clinic_id": clinic_service.clinic_id, "include_unbookable": True},
            page=1,
            page_size=20,
        )
    assert page["count"] == 25


def _shown(client, slot, **query) -> tuple[int, bool]:
    """(available_capacity, bookable) of `slot` in the owner's search (or staff's, by query)."""
    body = client.get("/api/v1/slots", {"clinic_id": slot.clinic_id, **query}).json()
    row = next(row for row in body["results"] if row["id"] == str(slot.id))
    return row["available_capacity"], row["bookable"]


@pytest.mark.parametrize("owner_query", [True, False], ids=["owner_search", "staff_search"])
def test_a_hold_past_its_expiry_is_shown_free_only_beyond_the_line(
    owner_query, owner_client, owner_pet, slot, staff_client
):
    """Search tells what a hold would get: a hold past its expiry (not yet expired by the job)
    goes to the owners waiting first, so with a line it is not free for anyone else; once the
    line is gone it is, at once (leaving changes no counter: the cache is dropped)."""
    for n in (2, 3):
        LocalPetFactory(owner__id=f"owner-{n}", id=f"pet-{n}", species="dog")
    waiting = api_client_for(sub="owner-2", roles=["pet_owner"])
    outsider = api_client_for(sub="owner-3", roles=["pet_owner"])
    reader, query = (
        (outsider, {}) if owner_query else (staff_client, {"include_unbookable": "true"})
    )
    first = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert first.status_code == 201
    entry = waiting.post(
        "/api/v1/waitlist", {"slot_id": str(slot.id), "pet_id": "pet-2"}, format="json"
    )
    assert entry.status_code == 201, entry.content
    Reservation.objects.filter(id=first.json()["id"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert _shown(reader, slot, **query) == (0, False)

    left = waiting.delete(f"/api/v1/waitlist/{entry.json()['id']}")
    assert left.status_code in (200, 204), left.content
    assert _shown(reader, slot, **query) == (1, True)
    took = outsider.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-3"}, format="json"
    )
    assert took.status_code == 201, took.content
    assert _shown(reader, slot, **query) == (0, False)
