# An erasure is written down before it starts, so one that stops half-way is finished by a job.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0010_person_erasure_archive"),
    ]

    operations = [
        migrations.CreateModel(
            name="ErasureRequest",
            fields=[
                ("user_id", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("requested_by_id", models.CharField(max_length=64)),
                ("requested_at", models.DateTimeField(auto_now_add=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("last_error", models.CharField(blank=True, max_length=64)),
            ],
            options={
                "db_table": "erasure_requests",
                "ordering": ["requested_at"],
            },
        ),
    ]
