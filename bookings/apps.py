"""App config for bookings."""

from django.apps import AppConfig


class BookingsConfig(AppConfig):
    name = "bookings"
