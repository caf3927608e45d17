"""One entry point for user data; settings choose the adapter, callers never branch on mode."""

from __future__ import annotations

from collections.abc import Sequence
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
    name: str = ""
    channels: tuple[str, ...] = ALL_CHANNELS
    locale: str = ""  # the owner's language (`preferences.language`); "" = not chosen
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


def users_matching(*, text: str, among: Sequence[str]) -> set[str]:
    """Which of these users' name, email or phone contains `text` (a phone compared digit by
    digit). The User Service has no search: its client looks each of them up (cached)."""
    return _adapter().users_matching(text=text, among=among)


def pets_matching(*, text: str, owners: Sequence[str]) -> set[str]:
    """Ids of these owners' pets whose name contains `text`."""
    return _adapter().pets_matching(text=text, owners=owners)


def profile_matches(profile: UserProfile, text: str) -> bool:
    """The one matching rule of both adapters: a case-blind part of the name or email, or of
    the phone number's digits (at least 4 of them)."""
    needle = text.strip().casefold()
    if not needle:
        return False
    email = str(profile.extra.get("email") or "")
    if needle in profile.name.casefold() or needle in email.casefold():
        return True
    digits = "".join(ch for ch in needle if ch.isdigit())
    phone = "".join(ch for ch in str(profile.extra.get("phone") or "") if ch.isdigit())
    return len(digits) >= 4 and digits in phone


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
