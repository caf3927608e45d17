"""Slots keep the indexes their queries use (issue 11, uncached search): an owner's search
walks (service, start_at); the unique (clinic, service, start_at) serves lookups by clinic; the
copy of that unique index (slots_search_idx) and the two foreign keys' own indexes (each with
a `_like` twin) go, so a new slot, or an update that is not HOT, writes 4 indexes instead of 8.
The new index is built first: service lookups are never left without one. Building it holds
writes to `slots` (holds, confirms) until it is done: on a large table run it in a quiet hour."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("slots", "0003_i14_booking_rules"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="slot",
            index=models.Index(fields=["service", "start_at"], name="slots_service_start_idx"),
        ),
        migrations.RemoveIndex(
            model_name="slot",
            name="slots_search_idx",
        ),
        migrations.AlterField(
            model_name="slot",
            name="clinic",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="slots",
                to="slots.clinic",
            ),
        ),
        migrations.AlterField(
            model_name="slot",
            name="service",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="slots",
                to="slots.clinicservice",
            ),
        ),
    ]
