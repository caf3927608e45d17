"""The slot's last event version as a column (Slot.event_version): existing slots take the
highest version of their events, so the next SlotUpdated continues from it."""

from django.db import migrations, models
from django.db.models import Max


def from_events(apps, schema_editor):
    """Only slots with more than their SlotCreated (version 1, the column's default) change:
    the slots staff have edited or support repaired, one UPDATE each."""
    Event = apps.get_model("events", "Event")
    Slot = apps.get_model("slots", "Slot")
    edited = (
        Event.objects.filter(aggregate_type="slot")
        .values("aggregate_id")
        .annotate(last=Max("aggregate_version"))
        .filter(last__gt=1)
    )
    for row in edited.iterator():
        Slot.objects.filter(id=row["aggregate_id"]).update(event_version=row["last"])


class Migration(migrations.Migration):
    dependencies = [
        ("slots", "0005_slot_service_same_clinic"),
        ("events", "0004_i17_events_partitioned"),
    ]

    operations = [
        migrations.AddField(
            model_name="slot",
            name="event_version",
            field=models.PositiveIntegerField(default=1, editable=False),
        ),
        migrations.RunPython(from_events, migrations.RunPython.noop),
    ]
