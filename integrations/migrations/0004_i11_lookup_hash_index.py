# Issue 11: the lookup hashes of the local adapter's tables get one plain index each instead of
# two (`db_index` added a `varchar_pattern_ops` twin for LIKE, which no query uses). These
# tables are small (embedded mode only), so the plain operations do.

from django.db import migrations, models

import petpro_booking.core.model_fields


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_i17_contact_encrypted"),
    ]

    operations = [
        migrations.AlterField(
            model_name="localpet",
            name="name_lookup",
            field=petpro_booking.core.model_fields.LookupHashField(
                blank=True, default="", editable=False, max_length=64, source="name"
            ),
        ),
        migrations.AlterField(
            model_name="localuser",
            name="email_lookup",
            field=petpro_booking.core.model_fields.LookupHashField(
                blank=True, default="", editable=False, max_length=64, source="email"
            ),
        ),
        migrations.AddIndex(
            model_name="localpet",
            index=models.Index(fields=["name_lookup"], name="local_pets_name_lookup_idx"),
        ),
        migrations.AddIndex(
            model_name="localuser",
            index=models.Index(fields=["email_lookup"], name="local_users_email_lookup_idx"),
        ),
    ]
