"""The lookup hashes (admin search by a pet's name or an owner's email) have one plain index each:
no `varchar_pattern_ops` twin for LIKE, which no query uses and every INSERT (a hold's) pays for.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection

from petpro_booking.core.model_fields import LookupHashField
from reservations.models import Reservation

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's own index kinds"
)


def _indexes_on(table: str, column: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = %s",
            [table],
        )
        return {
            name: definition
            for name, definition in cursor.fetchall()
            if f"({column})" in definition or f"({column} varchar_pattern_ops)" in definition
        }


def _lookup_columns() -> list[tuple[str, str]]:
    return sorted(
        (model._meta.db_table, field.column)
        for model in django_apps.get_models()
        for field in model._meta.local_fields
        if isinstance(field, LookupHashField)
    )


@pytest.mark.django_db
def test_every_lookup_hash_has_one_plain_index():
    columns = _lookup_columns()
    assert ("reservations", "pet_name_lookup") in columns
    for table, column in columns:
        indexes = _indexes_on(table, column)
        assert len(indexes) == 1, (table, column, indexes)
        assert "pattern_ops" not in next(iter(indexes.values()))


@pytest.mark.django_db(transaction=True)
def test_the_migration_swaps_the_two_indexes_for_one_concurrently_and_may_run_again():
    migration = importlib.import_module("reservations.migrations.0008_i11_lookup_hash_index")
    old_field = LookupHashField(source="pet_name", db_index=True)
    old_field.set_attributes_from_name("pet_name_lookup")
    new_field = Reservation._meta.get_field("pet_name_lookup")
    with connection.schema_editor(atomic=False) as editor:  # the state before the migration
        editor.remove_index(Reservation, migration._index())
        editor.alter_field(Reservation, new_field, old_field)
    before = _indexes_on("reservations", "pet_name_lookup")
    assert len(before) == 2
    assert any("varchar_pattern_ops" in definition for definition in before.values())

    with connection.schema_editor(atomic=False) as editor:
        migration.forwards(django_apps, editor)
        migration.forwards(django_apps, editor)  # again, as after a run stopped half-way
    assert set(_indexes_on("reservations", "pet_name_lookup")) == {migration.INDEX}

    with connection.schema_editor(atomic=False) as editor:
        migration.backwards(django_apps, editor)
    assert _indexes_on("reservations", "pet_name_lookup").keys() == before.keys()

    with connection.schema_editor(atomic=False) as editor:
        migration.forwards(django_apps, editor)
    assert set(_indexes_on("reservations", "pet_name_lookup")) == {migration.INDEX}
