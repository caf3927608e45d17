"""Names people read instead of ids: owners and pets from the users gateway (the User Service
client caches its answers; an owner is looked up once per page)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from petpro_booking.core.errors import ApplicationError

from .gateway import pets_of, user_get

logger = logging.getLogger(__name__)


@dataclass
class PeopleNames:
    """Owner and pet names for one page, each owner looked up once. An owner the User Service
    cannot name (down, unknown) reads as their id, marked."""

    owners: dict[str, str] = field(default_factory=dict)
    pets: dict[tuple[str, str], str] = field(default_factory=dict)
    unavailable: bool = False

    def load(self, user_ids: Iterable[str]) -> PeopleNames:
        for user_id in sorted(set(user_ids) - set(self.owners)):
            try:
                profile = user_get(user_id=user_id)
                pets = pets_of(user_id=user_id)
            except ApplicationError:
                logger.warning("names of user %s unavailable", user_id)
                self.unavailable = True
                self.owners[user_id] = ""
                continue
            self.owners[user_id] = profile.name if profile is not None else ""
            for pet in pets:
                self.pets[(user_id, pet.id)] = pet.name
        return self

    def owner(self, user_id: str) -> str:
        return self.owners.get(user_id) or f"owner {user_id}"

    def pet(self, user_id: str, pet_id: str) -> str:
        return self.pets.get((user_id, pet_id)) or f"pet {pet_id}"


def people_names(user_ids: Iterable[str]) -> PeopleNames:
    return PeopleNames().load(user_ids)
