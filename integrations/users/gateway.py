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
    name: str = ""  # only the local adapter knows it; the User Service's is not kept
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
    """The user's pets; DependencyUnavailable as for pet_get when nothing is cached."""
    return _adapter().pets_of(user_id=user_id)


def pet_get(*, user_id: str, pet_id: str) -> Pet | None:
    """The pet if it belongs to this user, else None. With the User Service configured, raises
    petpro_booking.core.errors.DependencyUnavailable ("user service", 503) when ownership cannot
    be checked: the service is down or its breaker open and no cached answer has the pet."""
    return _adapter().pet_get(user_id=user_id, pet_id=str(pet_id))


def user_get(*, user_id: str) -> UserProfile | None:
    """Profile and notification preferences; DependencyUnavailable as for pets_of."""
    return _adapter().user_get(user_id=user_id)


def invalidate_user(*, user_id: str) -> None:
    """Drop cached User Service answers about this user (a no-op in embedded mode)."""
    from .client import invalidate_user as drop_cached

    drop_cached(str(user_id))
