# Issue 15 point 3: holds of several pets made together share a group id.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reservations", "0005_i12_owner_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="reservation",
            name="group_id",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="reservation",
            index=models.Index(
                condition=models.Q(("group_id__isnull", False)),
                fields=["group_id"],
                name="reservations_group_idx",
            ),
        ),
    ]
