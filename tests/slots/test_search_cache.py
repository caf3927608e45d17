"""Availability search is cached in Redis and invalidated when a slot of the clinic changes."""

from __future__ import annotations

import pytest

from petpro_booking.core.principal import SYSTEM
from slots.selectors import slot_search_page
from slots.services import slot_update

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)


def search(clinic_id: str) -> dict:
    return slot_search_page(filters={"clinic_id": clinic_id}, page=1, page_size=20)


def test_second_search_is_served_from_cache(django_assert_num_queries, slot):
    search(slot.clinic_id)
    with django_assert_num_queries(0):
        cached = search(slot.clinic_id)
    assert cached["results"][0]["available_capacity"] == 1


def test_slot_change_invalidates_only_its_clinic(django_assert_num_queries, slot):
    other_service = ClinicServiceFactory(clinic=ClinicFactory(id="other-clinic"))
    SlotFactory(service=other_service)
    search(slot.clinic_id)
    search("other-clinic")

    slot_update(actor=SYSTEM, slot_id=slot.id, capacity=3)

    fresh = search(slot.clinic_id)
    assert fresh["results"][0]["available_capacity"] == 3
    with django_assert_num_queries(0):
        search("other-clinic")  # untouched clinic still cached


def test_a_page_asked_for_twice_is_served_by_the_process_without_redis(
    django_assert_num_queries, slot
):
    from django.core.cache import cache

    search(slot.clinic_id)  # computed, into Redis only
    cache.delete_pattern("*slotsearch*")  # Redis forgets it: it was not kept in the process
    # the page alone: the services' rules come from the clinic's read-model cache
    with django_assert_num_queries(1):
        search(slot.clinic_id)
    search(slot.clinic_id)  # from Redis: now kept in the process too
    cache.delete_pattern("*slotsearch*")
    with django_assert_num_queries(0):
        assert search(slot.clinic_id)["results"][0]["available_capacity"] == 1

    slot_update(actor=SYSTEM, slot_id=slot.id, capacity=3)  # a new generation: a new key
    assert search(slot.clinic_id)["results"][0]["available_capacity"] == 3


def test_an_uncached_page_takes_the_services_rules_from_the_read_model_cache(
    settings, django_assert_num_queries, slot
):
    from slots.services import clinic_service_save

    settings.SLOT_SEARCH_CACHE_SECONDS = 0  # every page from the database
    other = ClinicServiceFactory(id="svc-cats", clinic=slot.clinic, species=["Cat"])
    cat_slot = SlotFactory(service=other)
    filters = {"clinic_id": slot.clinic_id, "species": "CAT"}
    assert slot_search_page(filters=filters, page=1, page_size=20)["count"] == 2
    with django_assert_num_queries(1):  # the page; the rules are cached with the clinic
        found = slot_search_page(filters=filters, page=1, page_size=20)
    assert {row["id"] for row in found["results"]} == {str(slot.id), str(cat_slot.id)}
    dogs = slot_search_page(filters={**filters, "species": "dog"}, page=1, page_size=20)
    assert [row["id"] for row in dogs["results"]] == [str(slot.id)]  # species picked in Python
    only = {"clinic_id": slot.clinic_id, "service_id": "svc-cats"}
    assert slot_search_page(filters=only, page=1, page_size=20)["count"] == 1

    other.active = False  # a change of the rules drops the clinic's read-model at once
    clinic_service_save(actor=SYSTEM, service=other)
    assert slot_search_page(filters=filters, page=1, page_size=20)["count"] == 1
