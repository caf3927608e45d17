"""Which channels an owner wants notifications on: the User Service's preferences (cached
60 min by its client); all three channels when the user is unknown or the User Service cannot
answer, so a notification never waits for it."""

from __future__ import annotations

import logging

from integrations.users import user_get

from .messages import CHANNELS

logger = logging.getLogger(__name__)


def notification_channels(*, user_id: str) -> tuple[str, ...]:
    """The owner's channels in a fixed order; empty when they opted out of every channel."""
    try:
        profile = user_get(user_id=user_id)
    except Exception:
        logger.warning("channel preferences of user %s unavailable; using all", user_id)
        return CHANNELS
    if profile is None:
        return CHANNELS
    return tuple(channel for channel in CHANNELS if channel in profile.channels)


def notification_language(*, user_id: str) -> str | None:
    """The owner's language (`preferences.language` in the User Service), None when unknown
    or unavailable: the clinic's default language then applies."""
    try:
        profile = user_get(user_id=user_id)
    except Exception:
        logger.warning("language preference of user %s unavailable; using the clinic's", user_id)
        return None
    return (profile.locale or None) if profile is not None else None
