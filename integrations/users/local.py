"""Local adapter: users and pets from the local tables (editable in admin)."""

from __future__ import annotations

from integrations.models import LocalPet, LocalUser
from petpro_booking.core.db import RowReader

from .gateway import ALL_CHANNELS, Pet, UserProfile

# Read on every hold (the pet check): compiled once, not per request.
_PET = RowReader(LocalPet)


def pet_get(*, user_id: str, pet_id: str) -> Pet | None:
    pet = _PET.get(pet_id)
    if pet is None or pet.owner_id != user_id:
        return None
    return Pet(id=pet.id, owner_id=pet.owner_id, name=pet.name, species=pet.species)


def user_get(*, user_id: str) -> UserProfile | None:
    user = LocalUser.objects.filter(id=user_id).first()
    if user is None:
        return None
    return UserProfile(
        id=user.id,
        name=user.name,
        channels=tuple(user.channels) or ALL_CHANNELS,
        locale=user.locale,
    )
