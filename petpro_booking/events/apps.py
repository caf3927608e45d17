"""App config for the event store."""

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "petpro_booking.events"
    label = "events"
    verbose_name = "Event store"
