"""One entry point for user data; settings choose the adapter, callers never branch on mode."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

ALL_CHANNELS = ("email", "push", "sms")


@dataclass(frozen=True)
class Pet:
    id: str
    owner_id: str
    name: str
    species: str


@dataclass(frozen=True)
class UserProfile:
    id: str
    name: str
    channels: tuple[str, ...] = ALL_CHANNELS
    locale: str = "en"
    extra: dict = field(default_factory=dict, compare=False)


def _adapter():
    if settings.USER_SERVICE_URL:
        from . import client

        return client
    from . import local

    return local


def pets_of(*, user_id: str) -> list[Pet]:
    return _adapter().pets_of(user_id=user_id)


def pet_get(*, user_id: str, pet_id: str) -> Pet | None:
    """The pet if it belongs to this user, else None."""
    return next((pet for pet in pets_of(user_id=user_id) if pet.id == str(pet_id)), None)


def user_get(*, user_id: str) -> UserProfile | None:
    return _adapter().user_get(user_id=user_id)
