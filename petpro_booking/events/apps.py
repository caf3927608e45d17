"""App config for the event store: wires the relay nudge after every commit that appended
events. (The outbox backlog gauges are refreshed at scrape time by core/metrics_export.py.)"""

from __future__ import annotations

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "petpro_booking.events"
    label = "events"
    verbose_name = "Event store"

    def ready(self) -> None:
        from .services import on_event_appended
        from .tasks import relay_nudge

        on_event_appended(relay_nudge)
