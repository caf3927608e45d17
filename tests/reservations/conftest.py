"""Fixtures of the holds tests: owners with pets, slots, a private Redis for fault tests."""

from __future__ import annotations

import pytest

from petpro_booking.core.principal import Principal

from ..factories import LocalPetFactory


def owner(index: int) -> Principal:
    return Principal(sub=f"owner-{index}", roles=frozenset({"pet_owner"}))


@pytest.fixture
def many_owners(db):
    """Fifty-five owners, each with a dog: owner-{i} has pet-{i}."""
    for index in range(1, 56):
        LocalPetFactory(owner__id=f"owner-{index}", id=f"pet-{index}", species="dog")
    return [owner(index) for index in range(1, 56)]
