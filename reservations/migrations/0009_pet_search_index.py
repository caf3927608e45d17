"""The admin's search by pet id reads an index (petpro_booking/core/admin_search.py: each field
searched is compared by equality through its own index; before, every search read the whole
table). On PostgreSQL the index is built CONCURRENTLY, so holds go on meanwhile; the
migration is therefore not atomic, and it may run again after a stop."""

from django.db import migrations, models

from petpro_booking.core.migration_indexes import (
    ConcurrentlyOnPostgreSQL,
    create_index_concurrently,
)

TABLE = "reservations"
INDEX = "reservations_pet_idx"


def on_postgresql(schema_editor):
    create_index_concurrently(schema_editor, name=INDEX, table=TABLE, column="pet_id")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("reservations", "0008_i11_lookup_hash_index"),
    ]

    operations = [
        ConcurrentlyOnPostgreSQL(
            [
                migrations.AddIndex(
                    model_name="reservation", index=models.Index(fields=["pet_id"], name=INDEX)
                ),
            ],
            postgresql=on_postgresql,
        ),
    ]
