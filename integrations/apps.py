"""App config for integrations (holds the local adapters' tables)."""

from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (local adapters)"
