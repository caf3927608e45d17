# An erasure reaches the event archive by a job of its own: when it did, and the keyed hashes
# of the pets that job maps to the pseudonyms the event store gave them.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0009_i15g_groups"),
    ]

    operations = [
        migrations.AddField(
            model_name="personerasure",
            name="archive_erased_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="personerasure",
            name="pet_keys",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
