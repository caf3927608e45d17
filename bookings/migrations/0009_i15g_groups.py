# Issue 15 point 3: bookings of several pets made together share a group id, and so does the
# one payment record of their sum.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0008_i12_history_internal_note"),
    ]

    operations = [
        migrations.AddField(
            model_name="booking",
            name="group_id",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="paymentrecord",
            name="group_id",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="booking",
            index=models.Index(
                condition=models.Q(("group_id__isnull", False)),
                fields=["group_id"],
                name="bookings_group_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="paymentrecord",
            index=models.Index(
                condition=models.Q(("group_id__isnull", False)),
                fields=["group_id"],
                name="payment_records_group_idx",
            ),
        ),
    ]
