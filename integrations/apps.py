"""App config for integrations (holds the local adapters' tables)."""

from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (local adapters)"

    def ready(self) -> None:
        # The User and Clinic Service clients register their breakers with /readyz on import.
        from .clinics import client as clinics_client  # noqa: F401
        from .users import client as users_client  # noqa: F401
