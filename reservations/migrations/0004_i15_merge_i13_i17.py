"""Joins i13's 0003 (the held-holds index) with i17's 0003 (pet name encrypted): one leaf."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("reservations", "0003_i13_reservations_slot_held_idx"),
        ("reservations", "0003_i17_pet_name_encrypted"),
    ]

    operations: list[migrations.operations.base.Operation] = []
