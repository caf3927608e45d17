"""App config for the cross-cutting core."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "petpro_booking.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Observability for web, worker and beat alike. Tracing installs its instrumentations
        # here, before the WSGI handler loads middleware and before the first DB connection.
        from . import logging, metrics_export, tracing

        logging.install_celery_hooks()
        metrics_export.install_celery_hooks()
        tracing.configure_from_env()
