"""The admin's search by pet id reads an index (petpro_booking/core/admin_search.py: each field
searched is compared by equality through its own index; before, every search read the whole
table). On PostgreSQL the index is built CONCURRENTLY, so the waiting lists go on meanwhile; the
migration is therefore not atomic, and it may run again after a stop."""

from django.db import migrations

from petpro_booking.core.migration_indexes import add_index_concurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("waitlist", "0002_i11_waiting_count"),
    ]

    operations = [
        add_index_concurrently(
            model_name="waitlistentry",
            table="waitlist_entries",
            column="pet_id",
            name="waitlist_pet_idx",
        ),
    ]
