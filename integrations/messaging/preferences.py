"""Which channels an owner wants notifications on: the User Service's preferences (cached
60 min by its client); all three channels when the user is unknown or the User Service cannot
answer, so a notification never waits for it."""

from __future__ import annotations

import logging

from integrations.users import user_get
from integrations.users.gateway import UserProfile

from .messages import CHANNELS

logger = logging.getLogger(__name__)


def _channels(profile: UserProfile | None) -> tuple[str, ...]:
    if profile is None:
        return CHANNELS
    return tuple(channel for channel in CHANNELS if channel in profile.channels)


def _language(profile: UserProfile | None) -> str | None:
    return (profile.locale or None) if profile is not None else None


def notification_channels(*, user_id: str) -> tuple[str, ...]:
    """The owner's channels in a fixed order; empty when they opted out of every channel."""
    try:
        profile = user_get(user_id=user_id)
    except Exception:
        logger.warning("channel preferences of user %s unavailable; using all", user_id)
        return CHANNELS
    return _channels(profile)


def notification_language(*, user_id: str) -> str | None:
    """The owner's language (`preferences.language` in the User Service), None when unknown
    or unavailable: the clinic's default language then applies."""
    try:
        profile = user_get(user_id=user_id)
    except Exception:
        logger.warning("language preference of user %s unavailable; using the clinic's", user_id)
        return None
    return _language(profile)


def notification_preferences(*, user_id: str) -> tuple[tuple[str, ...], str | None]:
    """`notification_channels` and `notification_language` of one owner from one profile
    lookup (the relay asks both for every owner it notifies)."""
    try:
        profile = user_get(user_id=user_id)
    except Exception:
        logger.warning(
            "notification preferences of user %s unavailable; all channels, the clinic's language",
            user_id,
        )
        return CHANNELS, None
    return _channels(profile), _language(profile)
