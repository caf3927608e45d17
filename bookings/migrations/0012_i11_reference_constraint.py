"""Issue 11: a booking's reference is unique by a named constraint, without the LIKE index.

`unique=True` on a CharField gives PostgreSQL, beside the unique index, a `varchar_pattern_ops`
index for LIKE; references are looked up exactly or case-insensitively (`UPPER(...)`), which
it does not serve, so every confirm's INSERT wrote an index that nothing read. On PostgreSQL
the new unique index is built CONCURRENTLY and becomes the constraint (`USING INDEX`: no second
scan), then the old constraint and the LIKE index go; references stay unique at every moment,
and confirms go on meanwhile. Not atomic; every step may run again after a stop."""

from django.db import migrations, models

from petpro_booking.core.migration_indexes import (
    ConcurrentlyOnPostgreSQL,
    column_indexes,
    create_index_concurrently,
    drop_index_concurrently,
)

TABLE = "bookings"
COLUMN = "reference"
CONSTRAINT = "bookings_reference_uniq"


def _unique_constraints(schema_editor) -> list[str]:
    """The unique constraints (not bare unique indexes) on exactly the reference column."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conname FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.conrelid = %s::regclass AND c.contype = 'u'"
            " AND cardinality(c.conkey) = 1 AND a.attname = %s",
            [TABLE, COLUMN],
        )
        return sorted(name for (name,) in cursor.fetchall())


def on_postgresql(schema_editor):
    create_index_concurrently(
        schema_editor, name=CONSTRAINT, table=TABLE, column=COLUMN, unique=True
    )
    if CONSTRAINT not in _unique_constraints(schema_editor):
        schema_editor.execute(
            f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{CONSTRAINT}" UNIQUE USING INDEX "{CONSTRAINT}"'
        )
    for name in _unique_constraints(schema_editor):
        if name != CONSTRAINT:  # unique=True's constraint, and its index with it
            schema_editor.execute(f'ALTER TABLE "{TABLE}" DROP CONSTRAINT IF EXISTS "{name}"')
    for name, info in column_indexes(schema_editor, table=TABLE, column=COLUMN).items():
        if name != CONSTRAINT and not info["unique"]:  # the LIKE index
            drop_index_concurrently(schema_editor, name)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("bookings", "0011_erasure_requests"),
    ]

    operations = [
        ConcurrentlyOnPostgreSQL(
            [
                migrations.AlterField(
                    model_name="booking", name=COLUMN, field=models.CharField(max_length=9)
                ),
                migrations.AddConstraint(
                    model_name="booking",
                    constraint=models.UniqueConstraint(fields=[COLUMN], name=CONSTRAINT),
                ),
            ],
            postgresql=on_postgresql,
        ),
    ]
