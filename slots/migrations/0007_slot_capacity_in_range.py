"""A slot's capacity lies between 1 and CAPACITY_MAX, held by the database as well: the API,
the admin and `slot_create` refuse anything else, and a row written past them (a script, a
shell, a future entry point) would otherwise show a bookable slot of zero places or of millions.

On PostgreSQL the check is added NOT VALID (a moment's ACCESS EXCLUSIVE lock, no scan) and then
validated in its own transaction (SHARE UPDATE EXCLUSIVE: holds and bookings go on while the
table is read), so the migration is not atomic. Rows already outside the range stop it with
their count: which capacity is right needs a person (docs/operations.md, "A slot's capacity
outside 1..CAPACITY_MAX")."""

from django.db import migrations, models

CONSTRAINT = "slots_capacity_in_range"
# The bound at the time of this migration (slots.models.CAPACITY_MAX); a later change of the
# bound is a migration of its own.
CAPACITY_MAX = 1000


def _constraint() -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=models.Q(capacity__gte=1) & models.Q(capacity__lte=CAPACITY_MAX),
        name=CONSTRAINT,
    )


def add_check(apps, schema_editor):
    Slot = apps.get_model("slots", "Slot")
    outside = Slot.objects.exclude(capacity__gte=1, capacity__lte=CAPACITY_MAX)
    count = outside.count()
    if count:
        sample = ", ".join(
            f"{pk} ({capacity})" for pk, capacity in outside.values_list("id", "capacity")[:10]
        )
        raise RuntimeError(
            f"{count} slots have a capacity outside 1..{CAPACITY_MAX} (first: {sample}). "
            "Set their capacity first (docs/operations.md, \"A slot's capacity outside "
            '1..CAPACITY_MAX").'
        )
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.add_constraint(Slot, _constraint())
        return
    # Not atomic: a run stopped between the two statements left the check NOT VALID behind.
    schema_editor.execute(f"ALTER TABLE slots DROP CONSTRAINT IF EXISTS {CONSTRAINT}")
    schema_editor.execute(
        f"ALTER TABLE slots ADD CONSTRAINT {CONSTRAINT} "
        f"CHECK (capacity >= 1 AND capacity <= {CAPACITY_MAX}) NOT VALID"
    )
    schema_editor.execute(f"ALTER TABLE slots VALIDATE CONSTRAINT {CONSTRAINT}")


def drop_check(apps, schema_editor):
    schema_editor.remove_constraint(apps.get_model("slots", "Slot"), _constraint())


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("slots", "0006_slot_event_version"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add_check, drop_check)],
            state_operations=[
                migrations.AddConstraint(model_name="slot", constraint=_constraint())
            ],
        ),
    ]
