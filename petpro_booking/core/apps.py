"""App config for the cross-cutting core."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "petpro_booking.core"
    label = "core"
    verbose_name = "Core"
