"""The admin's search by pet id reads an index (petpro_booking/core/admin_search.py: each field
searched is compared by equality through its own index; before, every search read the whole
table). On PostgreSQL the index is built CONCURRENTLY, so confirms go on meanwhile; the
migration is therefore not atomic, and it may run again after a stop."""

from django.db import migrations

from petpro_booking.core.migration_indexes import add_index_concurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("bookings", "0012_i11_reference_constraint"),
    ]

    operations = [
        add_index_concurrently(
            model_name="booking", table="bookings", column="pet_id", name="bookings_pet_idx"
        ),
    ]
