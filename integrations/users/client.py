"""HTTP client of the User Service: a user's notification preferences and pets.

`GET /api/v1/users/{id}` -> `{"id", "name", "email", "phone", "preferences": {"channels",
"locale"}}`; `GET /api/v1/users/{id}/pets` -> `[{"id", "name", "species"}]`. Answers are
cached USER_CACHE_SECONDS (60 min); see integrations.service_http for retries, breaker and
stale answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache

from petpro_booking.core.breaker import WindowedCircuitBreaker
from petpro_booking.core.cache import bump_generation, generation
from petpro_booking.core.errors import DependencyUnavailable
from petpro_booking.core.health import register_check
from petpro_booking.core.local_cache import MISSING, local_cache

from ..service_http import SOURCE_CACHE, SOURCE_SERVICE, SOURCE_STALE, Answer, ServiceReader
from .gateway import ALL_CHANNELS, Pet, UserProfile, profile_matches

DEPENDENCY = "user service"

reader = ServiceReader(
    dependency=DEPENDENCY,
    url_setting="USER_SERVICE_URL",
    breaker=WindowedCircuitBreaker("user-service"),
)
register_check("user_service", reader.health)


def _user_key(user_id: str) -> str:
    return f"svc:{{user:{user_id}}}:profile"


def _pets_key(user_id: str) -> str:
    return f"svc:{{user:{user_id}}}:pets"


# The generation of every process's local copies of users' pets (`_fetch_pets`).
USERS_FAMILY = "users"


def invalidate_user(user_id: str) -> None:
    """Forget what we cached about this user and their pets (call when we learn they changed):
    the Redis entries at once, the processes' local copies of pets within
    LOCAL_CACHE_GENERATION_SECONDS (the bump of their generation)."""
    cache.delete_many([_user_key(str(user_id)), _pets_key(str(user_id))])
    bump_generation(USERS_FAMILY)


def _parse_pets(body: Any) -> list[dict[str, str]]:
    return [
        {"id": str(pet["id"]), "name": str(pet["name"]), "species": str(pet["species"]).lower()}
        for pet in body
    ]


def _parse_user(body: Any) -> dict[str, Any]:
    preferences = body.get("preferences") or {}
    channels = preferences.get("channels")  # absent: every channel; [] : opted out of all
    if channels is not None:
        channels = [c for c in channels if c in ALL_CHANNELS]
    return {
        "id": str(body["id"]),
        "name": str(body.get("name") or ""),
        "email": body.get("email") or "",
        "phone": body.get("phone") or "",
        "channels": channels,
        # `language` (issue 18); older answers said `locale`. Empty: not chosen (clinic's).
        "locale": str(preferences.get("language") or preferences.get("locale") or ""),
    }


def _fetch_pets(user_id: str, *, refresh: bool = False, allow_stale: bool = True) -> Answer:
    """The user's pets: from this process's LRU (LOCAL_CACHE_SECONDS, at most
    USER_CACHE_SECONDS; keyed by the users' generation, so `invalidate_user` reaches every
    process), else through the Redis cache and the User Service. Every hold checks its pet: the
    local level saves the hold a Redis round trip. A local copy counts as a cached answer (a
    pet missing from it is asked for again); a stale answer, served because the service
    failed, is never kept locally."""
    local = local_cache()
    key = ("user-pets", str(user_id), generation(USERS_FAMILY)) if local is not None else None
    if local is not None and not refresh:
        kept = local.get(key)
        if kept is not MISSING:
            return kept
    answer = reader.fetch(
        f"/api/v1/users/{quote(str(user_id), safe='')}/pets",
        cache_key=_pets_key(str(user_id)),
        fresh_seconds=settings.USER_CACHE_SECONDS,
        parse=_parse_pets,
        refresh=refresh,
        allow_stale=allow_stale,
    )
    # Never longer than the Redis copy is fresh (USER_CACHE_SECONDS).
    ttl = min(settings.LOCAL_CACHE_SECONDS, settings.USER_CACHE_SECONDS)
    if local is not None and ttl > 0 and answer.source != SOURCE_STALE and answer.body is not None:
        local.set(key, dataclasses.replace(answer, source=SOURCE_CACHE), ttl=ttl)
    return answer


def _as_pets(user_id: str, rows: list[dict[str, str]] | None) -> list[Pet]:
    return [
        Pet(id=row["id"], owner_id=str(user_id), name=row["name"], species=row["species"])
        for row in rows or []
    ]


def pets_of(*, user_id: str) -> list[Pet]:
    """The user's pets (an unknown user has none). Raises DependencyUnavailable when the User
    Service cannot answer and nothing is cached."""
    return _as_pets(user_id, _fetch_pets(user_id).body)


def pet_get(*, user_id: str, pet_id: str) -> Pet | None:
    """The pet if it belongs to this user. A pet missing from a cached list is asked for again
    (it may have been added since); if the User Service cannot answer that, the ownership is
    unknown and DependencyUnavailable is raised rather than calling the pet someone else's."""
    answer = _fetch_pets(user_id)
    pet = next((p for p in _as_pets(user_id, answer.body) if p.id == str(pet_id)), None)
    if pet is None and answer.source != SOURCE_SERVICE:
        answer = _fetch_pets(user_id, refresh=True, allow_stale=False)
        pet = next((p for p in _as_pets(user_id, answer.body) if p.id == str(pet_id)), None)
    return pet


def user_get(*, user_id: str) -> UserProfile | None:
    """The user's profile and notification preferences, None if the User Service does not
    know them. Raises DependencyUnavailable when it cannot answer and nothing is cached."""
    row = reader.fetch(
        f"/api/v1/users/{quote(str(user_id), safe='')}",
        cache_key=_user_key(str(user_id)),
        fresh_seconds=settings.USER_CACHE_SECONDS,
        parse=_parse_user,
    ).body
    if row is None:
        return None
    return UserProfile(
        id=row["id"],
        name=row["name"],
        channels=ALL_CHANNELS if row["channels"] is None else tuple(row["channels"]),
        locale=row["locale"],
        extra={"email": row["email"], "phone": row["phone"]},
    )


# The User Service cannot search: the admin's finder asks about the owners of the bookings it
# may show (the most recent first), at most this many per search, each answer cached.
MATCH_LOOKUPS_MAX = 300


def users_matching(*, text: str, among: Sequence[str]) -> set[str]:
    matched: set[str] = set()
    for user_id in list(among)[:MATCH_LOOKUPS_MAX]:
        try:
            profile = user_get(user_id=user_id)
        except DependencyUnavailable:
            continue  # not found rather than a failed search; the page says the source
        if profile is not None and profile_matches(profile, text):
            matched.add(profile.id)
    return matched


def pets_matching(*, text: str, owners: Sequence[str]) -> set[str]:
    needle = text.strip().casefold()
    matched: set[str] = set()
    for user_id in list(owners)[:MATCH_LOOKUPS_MAX]:
        try:
            pets = pets_of(user_id=user_id)
        except DependencyUnavailable:
            continue
        matched.update(pet.id for pet in pets if needle and needle in pet.name.casefold())
    return matched
