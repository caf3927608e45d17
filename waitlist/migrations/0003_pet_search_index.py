"""The admin's search by pet id reads an index (petpro_booking/core/admin_search.py: each field
searched is compared by equality through its own index; before, every search read the whole
table). On PostgreSQL the index is built CONCURRENTLY, so the waiting lists go on meanwhile; the
migration is therefore not atomic, and it may run again after a stop."""

from django.db import migrations, models

from petpro_booking.core.migration_indexes import (
    ConcurrentlyOnPostgreSQL,
    create_index_concurrently,
)

TABLE = "waitlist_entries"
INDEX = "waitlist_pet_idx"


def on_postgresql(schema_editor):
    create_index_concurrently(schema_editor, name=INDEX, table=TABLE, column="pet_id")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("waitlist", "0002_i11_waiting_count"),
    ]

    operations = [
        ConcurrentlyOnPostgreSQL(
            [
                migrations.AddIndex(
                    model_name="waitlistentry", index=models.Index(fields=["pet_id"], name=INDEX)
                ),
            ],
            postgresql=on_postgresql,
        ),
    ]
