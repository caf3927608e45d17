"""App config for the event store: wires the relay nudge and the outbox backlog gauges."""

from __future__ import annotations

import logging
import time

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger(__name__)


class EventsConfig(AppConfig):
    name = "petpro_booking.events"
    label = "events"
    verbose_name = "Event store"

    def ready(self) -> None:
        from petpro_booking.core import metrics

        from .services import on_event_appended
        from .tasks import relay_nudge

        on_event_appended(relay_nudge)
        backlog = _BacklogGauges()
        metrics.OUTBOX_BACKLOG.set_function(lambda: backlog.read().unpublished)
        metrics.OUTBOX_OLDEST_AGE.set_function(lambda: backlog.read().oldest_age_seconds)
        metrics.OUTBOX_FAILED.set_function(lambda: backlog.read().failed)


class _BacklogGauges:
    """Reads the backlog when /metrics is scraped, at most every few seconds; keeps the last
    reading when the database cannot answer."""

    def __init__(self) -> None:
        from .selectors import OutboxBacklog

        self._value = OutboxBacklog(unpublished=0, oldest_created_at=None, failed=0)
        self._read_at = float("-inf")

    def read(self):
        from .selectors import outbox_backlog

        if time.monotonic() - self._read_at >= settings.EVENT_BACKLOG_METRIC_CACHE_SECONDS:
            try:
                self._value = outbox_backlog()
            except Exception:  # a scrape must never fail because the database did
                logger.debug("outbox backlog not readable", exc_info=True)
            self._read_at = time.monotonic()
        return self._value
