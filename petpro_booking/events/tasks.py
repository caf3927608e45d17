"""Celery tasks of the event store: the outbox relay (beat sweep and after-commit nudge)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from .relay import outbox_relay

logger = logging.getLogger(__name__)


@shared_task(name="events.relay_outbox", soft_time_limit=50, time_limit=60)
def relay_outbox() -> dict:
    """Publish whatever the outbox holds; idempotent, safe to run in parallel."""
    return outbox_relay().as_dict()


def relay_nudge(event_ids: list[int]) -> None:
    """After-commit hook of `event_append`: relay now instead of waiting for the sweep.
    Never raises: the request that appended the events has already succeeded, and the beat
    sweep publishes anything a failed nudge left behind."""
    if not settings.EVENT_RELAY_ON_COMMIT:
        return
    try:
        relay_outbox.apply_async(retry=False)
    except Exception:
        logger.warning("outbox relay nudge failed; the beat sweep will publish", exc_info=True)
