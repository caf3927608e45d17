"""Fixtures of the waiting-list tests: owners with dogs and clients for them."""

from __future__ import annotations

import pytest

from ..conftest import api_client_for
from ..factories import LocalPetFactory


def owner_client_n(index: int):
    return api_client_for(sub=f"owner-{index}", roles=["pet_owner"])


@pytest.fixture
def owners(db):
    """Owners 1-6, each with a dog pet-{i}; returns their API clients by index."""
    for index in range(1, 7):
        LocalPetFactory(owner__id=f"owner-{index}", id=f"pet-{index}", species="dog")
    return {index: owner_client_n(index) for index in range(1, 7)}


def hold(client, slot, pet: str):
    return client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": pet}, format="json"
    )


def join(client, slot, pet: str):
    return client.post("/api/v1/waitlist", {"slot_id": str(slot.id), "pet_id": pet}, format="json")
