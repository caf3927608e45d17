"""A slot's clinic is its service's clinic, held by the database: a foreign key (service_id,
clinic_id) -> clinic_services (id, clinic_id) on PostgreSQL. Before it, only slot_create checked
the pair, and a service moved to another clinic (the Clinic Service's sync, the admin) left its
slots under the old clinic id, where neither clinic's owner search found them. With it, a
service with slots cannot change clinic (the sync and the admin refuse, and say why), and the
owner's search selects slots by service alone.

Django cannot declare a composite foreign key, so it is SQL, on PostgreSQL only (the embedded
SQLite mode keeps the application's checks). Slots already under another clinic than their
service's stop the migration with their services named: which clinic is right needs a person
(docs/operations.md, "A service that moved clinic")."""

from django.db import migrations, models

FOREIGN_KEY = "slots_service_clinic_fk"

MISMATCHED = """
    SELECT s.service_id, s.clinic_id, sv.clinic_id, count(*)
    FROM slots s JOIN clinic_services sv ON sv.id = s.service_id
    WHERE s.clinic_id <> sv.clinic_id
    GROUP BY 1, 2, 3 ORDER BY 1, 2
"""


def add_foreign_key(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(MISMATCHED)
        mismatched = cursor.fetchall()
    if mismatched:
        listed = "; ".join(
            f"service {service} has {count} slots under clinic {slot_clinic} but belongs to "
            f"clinic {service_clinic}"
            for service, slot_clinic, service_clinic, count in mismatched[:20]
        )
        raise RuntimeError(
            f"{len(mismatched)} services have slots under another clinic than their own "
            f"({listed}). Decide per service which clinic is right and fix the rows first "
            '(docs/operations.md, "A service that moved clinic").'
        )
    schema_editor.execute(
        f"ALTER TABLE slots ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (service_id, clinic_id) "
        "REFERENCES clinic_services (id, clinic_id)"
    )


def drop_foreign_key(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE slots DROP CONSTRAINT {FOREIGN_KEY}")


class Migration(migrations.Migration):
    dependencies = [
        ("slots", "0004_slot_indexes_for_search"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="clinicservice",
            constraint=models.UniqueConstraint(
                fields=("id", "clinic"), name="clinic_services_id_clinic_uniq"
            ),
        ),
        migrations.RunPython(add_foreign_key, drop_foreign_key),
    ]
