"""Creates the PostgreSQL schema `booking_service` before any table is made."""

from django.conf import settings
from django.db import migrations


def create_schema(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'CREATE SCHEMA IF NOT EXISTS "{settings.DB_SCHEMA}"')


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    run_before = [
        ("contenttypes", "0001_initial"),
        ("auth", "0001_initial"),
        ("admin", "0001_initial"),
        ("sessions", "0001_initial"),
    ]
    operations = [migrations.RunPython(create_schema, migrations.RunPython.noop, elidable=False)]
