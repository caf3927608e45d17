"""Celery tasks of the event store: the outbox relay (beat sweep and after-commit nudge)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from .relay import outbox_relay

logger = logging.getLogger(__name__)


@shared_task(name="events.relay_outbox", soft_time_limit=50, time_limit=60)
def relay_outbox(max_batches: int | None = None) -> dict:
    """Publish what the outbox holds (at most `max_batches` batches); idempotent, safe to run
    in parallel."""
    return outbox_relay(max_batches=max_batches).as_dict()


def relay_nudge(event_ids: list[int]) -> None:
    """After-commit hook of `event_append`: relay now instead of waiting for the sweep.
    Never raises: the request that appended the events has already succeeded, and the beat
    sweep publishes anything a failed nudge left behind. One batch: a nudge run eagerly (no
    Celery broker) happens in the request that committed, which must not drain a backlog."""
    if not settings.EVENT_RELAY_ON_COMMIT:
        return
    try:
        relay_outbox.apply_async(kwargs={"max_batches": 1}, retry=False)
    except Exception:
        logger.warning("outbox relay nudge failed; the beat sweep will publish", exc_info=True)
