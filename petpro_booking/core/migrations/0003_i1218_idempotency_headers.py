"""Idempotency keys keep the response headers a replay repeats (issue 18: a replayed 201 had
no Location). Nullable: rows stored before replay status and body as they did."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_idempotency_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="response_headers",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
