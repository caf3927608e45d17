# Issue 11: the hold's own indexes. The owner's live holds (the fair-use count of every hold)
# get a partial index; the foreign key's index on slot_id goes (reservations_slot_status_idx
# starts with slot_id and serves every lookup by slot), one index less for each hold's INSERT.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reservations", "0006_i15g_groups"),
        ("slots", "0003_i14_booking_rules"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reservation",
            name="slot",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reservations",
                to="slots.slot",
            ),
        ),
        migrations.AddIndex(
            model_name="reservation",
            index=models.Index(
                condition=models.Q(("status", "held")),
                fields=["user_id", "expires_at"],
                name="reservations_owner_held_idx",
            ),
        ),
    ]
