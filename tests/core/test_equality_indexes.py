"""Columns only ever compared for equality have no `varchar_pattern_ops` (LIKE) index, which no
query uses and every INSERT pays for: the lookup hashes (admin search by a pet's name or an
owner's email; a hold's INSERT) and a booking's reference (a confirm's INSERT; a clash of two
references, now told by the named constraint, is tests/bookings/test_transitions.py's). The
migrations that removed them build their replacements CONCURRENTLY, may run again, and go
back."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection

from petpro_booking.core.model_fields import LookupHashField

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
def test_every_lookup_hash_and_the_booking_reference_have_one_plain_index():
    columns = [*_lookup_columns(), ("bookings", "reference")]
    assert ("reservations", "pet_name_lookup") in columns
    for table, column in columns:
        indexes = _indexes_on(table, column)
        assert len(indexes) == 1, (table, column, indexes)
        assert "pattern_ops" not in next(iter(indexes.values()))
    assert "UNIQUE" in next(iter(_indexes_on("bookings", "reference").values()))


@pytest.mark.django_db(transaction=True)
def test_the_migrations_go_back_and_forth_and_may_run_again():
    reservations = importlib.import_module("reservations.migrations.0008_i11_lookup_hash_index")
    bookings = importlib.import_module("bookings.migrations.0012_i11_reference_constraint")
    try:
        _there_and_back(reservations, bookings)
    finally:  # the rest of the suite runs on the migrated schema, whatever happened here
        call_command("migrate", verbosity=0)


def _there_and_back(reservations, bookings) -> None:
    call_command("migrate", "bookings", "0011", verbosity=0)
    call_command("migrate", "reservations", "0007", verbosity=0)
    before = _indexes_on("reservations", "pet_name_lookup")
    assert len(before) == 2
    assert any("varchar_pattern_ops" in definition for definition in before.values())
    references = _indexes_on("bookings", "reference")
    assert len(references) == 2
    assert any("varchar_pattern_ops" in definition for definition in references.values())

    call_command("migrate", "reservations", verbosity=0)
    call_command("migrate", "bookings", verbosity=0)
    with connection.schema_editor(atomic=False) as editor:  # again, as after a stop
        reservations.on_postgresql(editor)
        bookings.on_postgresql(editor)
    assert set(_indexes_on("reservations", "pet_name_lookup")) == {reservations.INDEX}
    assert set(_indexes_on("bookings", "reference")) == {bookings.CONSTRAINT}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint"
            " WHERE conrelid = 'bookings'::regclass AND contype = 'u'"
        )
        unique = {name for (name,) in cursor.fetchall()}
    assert bookings.CONSTRAINT in unique
    assert not any("reference" in name for name in unique - {bookings.CONSTRAINT})


@pytest.mark.django_db(transaction=True)
def test_a_build_stopped_half_way_is_built_again():
    """CREATE INDEX CONCURRENTLY that stops leaves an INVALID index, which IF NOT EXISTS would
    keep for good: the migration drops it and builds it again."""
    reservations = importlib.import_module("reservations.migrations.0008_i11_lookup_hash_index")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
            [reservations.INDEX],
        )
    with connection.schema_editor(atomic=False) as editor:
        reservations.on_postgresql(editor)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [reservations.INDEX]
        )
        assert cursor.fetchone() == (True,)
