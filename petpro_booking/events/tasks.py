"""Celery tasks of the event store: the outbox relay (beat sweep and after-commit nudge)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from .listener import notify_relay
from .nudge import RelayNudger
from .partitions import ensure_partitions_ahead
from .relay import outbox_relay
from .retention import events_purge_published

logger = logging.getLogger(__name__)


@shared_task(name="events.relay_outbox", soft_time_limit=50, time_limit=60)
def relay_outbox(max_batches: int | None = None) -> dict:
    """Publish what the outbox holds (at most `max_batches` batches); idempotent, safe to run
    in parallel."""
    return outbox_relay(max_batches=max_batches).as_dict()


def _send_relay_pass() -> None:
    if settings.EVENT_RELAY_NUDGE == "notify":
        notify_relay()  # `manage.py outbox listen` relays
    else:
        relay_outbox.apply_async(retry=False)


# One per process: coalesces every commit's nudge into at most one relay pass per interval.
_nudger = RelayNudger(_send_relay_pass, interval=settings.EVENT_RELAY_NUDGE_INTERVAL_SECONDS)


def relay_nudge(event_ids: list[int]) -> None:
    """After-commit hook of `event_append`: relay soon instead of waiting for the sweep.

    With a broker, the nudge only sets a flag; a background thread sends at most one relay
    pass per `EVENT_RELAY_NUDGE_INTERVAL_SECONDS`, and that pass drains the whole outbox (one
    Celery message, or with `EVENT_RELAY_NUDGE=notify` one NOTIFY to the listening relays, per
    interval per process, not one per commit). Without a broker (tasks run
    eagerly, the embedded mode) one batch is relayed right here, in the request that
    committed, which must not drain a backlog. Never raises: the request that appended the
    events has already succeeded, and the beat sweep publishes anything a nudge left behind."""
    if not settings.EVENT_RELAY_ON_COMMIT:
        return
    if relay_outbox.app.conf.task_always_eager:
        try:
            relay_outbox.apply_async(kwargs={"max_batches": 1}, retry=False)
        except Exception:
            logger.warning("outbox relay nudge failed; the beat sweep will publish", exc_info=True)
        return
    _nudger.nudge()


@shared_task(name="events.retention_events", soft_time_limit=3000, time_limit=3300)
def retention_events() -> dict:
    """Make sure the months ahead have their partitions, then archive/drop published events
    past RETENTION_EVENTS_DAYS. Partitions first: a purge that fails (an archive directory
    that cannot be written, a month past the time limit) must not leave the next months
    without partitions, whose events would land in the default partition and then block
    attaching those months' partitions."""
    created = len(ensure_partitions_ahead())
    report = events_purge_published().as_dict()
    report["partitions_created"] = created
    return report
