"""Local adapter: users and pets from the local tables (editable in admin)."""

from __future__ import annotations

from collections.abc import Sequence

from integrations.models import LocalPet, LocalUser
from petpro_booking.core.db import RowReader

from .gateway import ALL_CHANNELS, Pet, UserProfile, profile_matches


def pets_of(*, user_id: str) -> list[Pet]:
    return [
        Pet(id=p.id, owner_id=p.owner_id, name=p.name, species=p.species)
        for p in LocalPet.objects.filter(owner_id=user_id).order_by("id")
    ]


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
        extra={"email": user.email, "phone": user.phone},
    )


def users_matching(*, text: str, among: Sequence[str]) -> set[str]:
    users = LocalUser.objects.filter(id__in=list(among))
    return {
        user.id
        for user in users
        if profile_matches(
            UserProfile(
                id=user.id, name=user.name, extra={"email": user.email, "phone": user.phone}
            ),
            text,
        )
    }


def pets_matching(*, text: str, owners: Sequence[str]) -> set[str]:
    # Names are encrypted at rest: matched after decryption, among these owners' pets only.
    needle = text.strip().casefold()
    pets = LocalPet.objects.filter(owner_id__in=list(owners)).only("id", "name")
    return {pet.id for pet in pets if needle and needle in pet.name.casefold()}
