"""The outbox's claim index matches the relay's predicate, and the events table gets its own
autovacuum settings: every event is inserted, then updated once when published, so dead
tuples pile up at the rate of the writes; with the default scale factor (20 % of the table)
a large table waits far too long, and the claim index bloats (160k dead entries measured,
claim 101 ms instead of 1.5 ms)."""

from django.db import migrations, models

# Vacuum after a fixed number of changed rows, not a share of the table; analyse often enough
# that the planner keeps using the small partial index; vacuum at full speed.
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "2000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "5000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}


def set_autovacuum(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    options = ", ".join(f"{name} = {value}" for name, value in AUTOVACUUM.items())
    schema_editor.execute(f"ALTER TABLE events SET ({options})")


def reset_autovacuum(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE events RESET ({', '.join(AUTOVACUUM)})")


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_relay_bookkeeping"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="event", name="events_unpublished_idx"),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("failed_at__isnull", True), ("published_at__isnull", True)),
                fields=["id"],
                name="events_outbox_pending_idx",
            ),
        ),
        migrations.RunPython(set_autovacuum, reset_autovacuum),
    ]
