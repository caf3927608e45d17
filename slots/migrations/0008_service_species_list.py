"""A service's species is a list of names, held by the database as well on PostgreSQL (a
CHECK), and by the model's validator everywhere (the admin's form). Before it the admin's JSON
field took any JSON: a string or an object in one clinic's service made every owner's species
search fail (`jsonb_array_length` of a non-array), a number in the list every hold on that
service. Services already holding something else stop the migration with their ids: which
species a service takes needs a person (docs/operations.md, "A service's species that is not a
list of names")."""

from django.db import migrations, models

import slots.models

CONSTRAINT = "clinic_services_species_list"
CHECK = (
    "jsonb_typeof(species) = 'array' "
    "AND NOT jsonb_path_exists(species, '$[*] ? (@.type() != \"string\")')"
)


def add_check(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # the embedded SQLite mode keeps the model's validator
    with schema_editor.connection.cursor() as cursor:
        # CHECK is this module's constant, no input
        cursor.execute(f"SELECT id FROM clinic_services WHERE NOT ({CHECK}) ORDER BY id")  # noqa: S608
        bad = [row[0] for row in cursor.fetchall()]
    if bad:
        raise RuntimeError(
            f"{len(bad)} services have species that are not a list of names "
            f"({', '.join(bad[:20])}). Set each one's species in the admin first "
            '(docs/operations.md, "A service\'s species that is not a list of names").'
        )
    schema_editor.execute(
        f"ALTER TABLE clinic_services ADD CONSTRAINT {CONSTRAINT} CHECK ({CHECK})"
    )


def drop_check(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE clinic_services DROP CONSTRAINT {CONSTRAINT}")


class Migration(migrations.Migration):
    dependencies = [
        ("slots", "0007_slot_capacity_in_range"),
    ]

    operations = [
        migrations.AlterField(
            model_name="clinicservice",
            name="species",
            field=models.JSONField(
                default=list,
                help_text='Species accepted, e.g. ["dog", "cat"]; empty: every species',
                validators=[slots.models.validate_species],
            ),
        ),
        migrations.RunPython(add_check, drop_check),
    ]
