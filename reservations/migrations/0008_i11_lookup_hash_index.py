"""Issue 11: the pet name's lookup hash gets one plain index instead of two.

`db_index` on a CharField gives PostgreSQL a second, `varchar_pattern_ops` index for LIKE; the
admin's search only ever compares the hash for equality, so that index was written by every
hold's INSERT and read by nothing. On PostgreSQL the new index is built CONCURRENTLY before the
old two are dropped (CONCURRENTLY too), so holds go on meanwhile and the search always has an
index; the migration is therefore not atomic, and every step may run again after a stop."""

from django.db import migrations, models

import petpro_booking.core.model_fields

TABLE = "reservations"
COLUMN = "pet_name_lookup"
INDEX = "reservations_pet_name_lkp_idx"


def _field() -> petpro_booking.core.model_fields.LookupHashField:
    return petpro_booking.core.model_fields.LookupHashField(
        blank=True, default="", editable=False, max_length=64, source="pet_name"
    )


def _index() -> models.Index:
    return models.Index(fields=[COLUMN], name=INDEX)


def _old_indexes(schema_editor) -> list[str]:
    """The indexes `db_index` made on the column (the plain one and its `_like` twin)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return sorted(
        name
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and info["columns"] == [COLUMN] and name != INDEX
    )


def forwards(apps, schema_editor):
    Reservation = apps.get_model("reservations", "Reservation")
    if schema_editor.connection.vendor != "postgresql":
        old = Reservation._meta.get_field(COLUMN)
        new = _field()
        new.set_attributes_from_name(COLUMN)
        schema_editor.alter_field(Reservation, old, new)
        schema_editor.add_index(Reservation, _index())
        return
    schema_editor.execute(
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{INDEX}" ON "{TABLE}" ("{COLUMN}")'
    )
    for name in _old_indexes(schema_editor):
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


def backwards(apps, schema_editor):
    Reservation = apps.get_model("reservations", "Reservation")
    schema_editor.remove_index(Reservation, _index())
    new = _field()
    new.set_attributes_from_name(COLUMN)
    old = petpro_booking.core.model_fields.LookupHashField(
        blank=True, default="", editable=False, max_length=64, source="pet_name", db_index=True
    )
    old.set_attributes_from_name(COLUMN)
    schema_editor.alter_field(Reservation, new, old)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("reservations", "0007_i11_hold_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="reservation", name=COLUMN, field=_field()),
                migrations.AddIndex(model_name="reservation", index=_index()),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
