"""Search pages may lag a change by SLOT_SEARCH_MAX_LAG_SECONDS in every process, the changing
one included (production: 0.5 s), and never longer; the hold itself always sees the truth."""

from __future__ import annotations

import time

import pytest

from ..conftest import api_client_for
from ..factories import LocalPetFactory
from .test_search_truth import free_units

pytestmark = pytest.mark.django_db(transaction=True)

LAG = 1.0


def hold(client, slot, pet_id: str):
    return client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": pet_id}, format="json"
    )


def test_a_page_lags_its_own_process_s_hold_by_at_most_the_lag(
    settings, owner_client, owner_pet, slot
):
    settings.SLOT_SEARCH_MAX_LAG_SECONDS = LAG
    assert free_units(owner_client, slot) == 1  # cached, its generation read for LAG seconds
    read_at = time.monotonic()

    assert hold(owner_client, slot, "pet-1").status_code == 201
    if time.monotonic() - read_at < LAG * 0.8:  # a stalled machine may have passed the lag
        assert free_units(owner_client, slot) == 1  # the page from before the hold

    # The truth is at the hold: a second owner is refused though the page still shows a unit.
    LocalPetFactory(owner__id="owner-2", id="pet-2", species="dog")
    other = api_client_for(sub="owner-2", roles=["pet_owner"])
    assert hold(other, slot, "pet-2").status_code == 409

    time.sleep(max(0.0, read_at + LAG + 0.05 - time.monotonic()))
    assert free_units(owner_client, slot) == 0  # past the lag: the change is on the page


def test_without_a_lag_the_changing_process_sees_its_change_at_once(
    settings, owner_client, owner_pet, slot
):
    settings.SLOT_SEARCH_MAX_LAG_SECONDS = 0
    assert free_units(owner_client, slot) == 1
    assert hold(owner_client, slot, "pet-1").status_code == 201
    assert free_units(owner_client, slot) == 0


def test_without_the_local_cache_there_is_no_lag(settings, owner_client, owner_pet, slot):
    settings.SLOT_SEARCH_MAX_LAG_SECONDS = LAG
    settings.LOCAL_CACHE_ENABLED = False  # every generation read goes to Redis
    assert free_units(owner_client, slot) == 1
    assert hold(owner_client, slot, "pet-1").status_code == 201
    assert free_units(owner_client, slot) == 0
