"""The admin's search by pet id reads an index (petpro_booking/core/admin_search.py: each field
searched is compared by equality through its own index; before, every search read the whole
table). On PostgreSQL the index is built CONCURRENTLY, so confirms go on meanwhile; the
migration is therefore not atomic, and it may run again after a stop."""

from django.db import migrations, models

from petpro_booking.core.migration_indexes import (
    ConcurrentlyOnPostgreSQL,
    create_index_concurrently,
)

TABLE = "bookings"
INDEX = "bookings_pet_idx"


def on_postgresql(schema_editor):
    create_index_concurrently(schema_editor, name=INDEX, table=TABLE, column="pet_id")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("bookings", "0012_i11_reference_constraint"),
    ]

    operations = [
        ConcurrentlyOnPostgreSQL(
            [
                migrations.AddIndex(
                    model_name="booking", index=models.Index(fields=["pet_id"], name=INDEX)
                ),
            ],
            postgresql=on_postgresql,
        ),
    ]
