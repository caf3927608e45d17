"""App config for reservations: registers the holds' scrape-time gauges."""

from django.apps import AppConfig


class ReservationsConfig(AppConfig):
    name = "reservations"

    def ready(self) -> None:
        from petpro_booking.core.metrics_export import on_scrape

        from .metrics import refresh_expiry_lag

        on_scrape("reservations", refresh_expiry_lag)
