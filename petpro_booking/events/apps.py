"""App config for the event store: wires the relay nudge after every commit that appended
events, and registers the outbox gauges refreshed at every scrape."""

from __future__ import annotations

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "petpro_booking.events"
    label = "events"
    verbose_name = "Event store"

    def ready(self) -> None:
        from petpro_booking.core.metrics_export import on_scrape

        from .selectors import outbox_gauges_refresh
        from .services import on_event_appended
        from .tasks import relay_nudge

        on_event_appended(relay_nudge)
        on_scrape("outbox", outbox_gauges_refresh)
