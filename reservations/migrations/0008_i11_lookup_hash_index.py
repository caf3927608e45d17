"""Issue 11: the pet name's lookup hash gets one plain index instead of two.

`db_index` on a CharField gives PostgreSQL a second, `varchar_pattern_ops` index for LIKE; the
admin's search only ever compares the hash for equality, so that index was written by every
hold's INSERT and read by nothing. On PostgreSQL the new index is built CONCURRENTLY before the
old two are dropped (CONCURRENTLY too), so holds go on meanwhile and the search always has an
index; the migration is therefore not atomic, and every step may run again after a stop."""

from django.db import migrations, models

import petpro_booking.core.model_fields
from petpro_booking.core.migration_indexes import (
    ConcurrentlyOnPostgreSQL,
    column_indexes,
    create_index_concurrently,
    drop_index_concurrently,
)

TABLE = "reservations"
COLUMN = "pet_name_lookup"
INDEX = "reservations_pet_name_lkp_idx"


def on_postgresql(schema_editor):
    create_index_concurrently(schema_editor, name=INDEX, table=TABLE, column=COLUMN)
    # The indexes `db_index` made on the column: the plain one and its `_like` twin.
    for name in column_indexes(schema_editor, table=TABLE, column=COLUMN):
        if name != INDEX:
            drop_index_concurrently(schema_editor, name)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("reservations", "0007_i11_hold_indexes"),
    ]

    operations = [
        ConcurrentlyOnPostgreSQL(
            [
                migrations.AlterField(
                    model_name="reservation",
                    name=COLUMN,
                    field=petpro_booking.core.model_fields.LookupHashField(
                        blank=True, default="", editable=False, max_length=64, source="pet_name"
                    ),
                ),
                migrations.AddIndex(
                    model_name="reservation", index=models.Index(fields=[COLUMN], name=INDEX)
                ),
            ],
            postgresql=on_postgresql,
        ),
    ]
