"""`events` partitioned by month (PostgreSQL only; SQLite keeps one table): retention drops a
month instead of deleting its rows one by one (docs/security.md, "Retention").

The model's state does not change. In the database: primary key (id, created_at); event_id
unique per partition (uuid4 from the application); (aggregate_id, aggregate_version) guarded
by a trigger and `event_aggregate_heads` (see petpro_booking/events/partitions.py); the
non-unique indexes and the autovacuum settings of migration 0003 on every partition. Rows are
copied in id order, so each aggregate's versions go in ascending. On a large table this holds
an exclusive lock while it copies: run it in a maintenance window."""

import datetime as dt

from django.db import migrations

from petpro_booking.events import partitions

GUARD = """
CREATE TABLE event_aggregate_heads (
    aggregate_id varchar(64) PRIMARY KEY,
    last_version integer NOT NULL
);
CREATE FUNCTION events_version_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_aggregate_heads AS h (aggregate_id, last_version)
    VALUES (NEW.aggregate_id, NEW.aggregate_version)
    ON CONFLICT (aggregate_id) DO UPDATE SET last_version = EXCLUDED.last_version
    WHERE h.last_version < EXCLUDED.last_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION
            'duplicate key value violates unique constraint "events_aggregate_version_uniq"'
            USING ERRCODE = 'unique_violation',
                  CONSTRAINT = 'events_aggregate_version_uniq',
                  DETAIL = format(
                      'Key (aggregate_id, aggregate_version)=(%s, %s) is not above the last.',
                      NEW.aggregate_id, NEW.aggregate_version);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER events_version_guard BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_version_guard();
"""


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT min(created_at), coalesce(max(id), 0) FROM events")
        oldest, last_id = cursor.fetchone()
        cursor.execute(
            "SELECT i.relname, x.indisunique, c.conname FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid "
            "WHERE x.indrelid = 'events'::regclass"
        )
        indexes = cursor.fetchall()
        cursor.execute("ALTER TABLE events RENAME TO events_unpartitioned")
        # Its identity sequence goes; the new table numbers on from last_id.
        cursor.execute("ALTER TABLE events_unpartitioned ALTER COLUMN id DROP IDENTITY IF EXISTS")
        for name, _unique, constraint in indexes:  # free the names for the new table
            if constraint:
                cursor.execute(
                    f'ALTER TABLE events_unpartitioned RENAME CONSTRAINT "{constraint}" '
                    f'TO "{constraint[:59]}_old"'
                )
            else:
                cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{name[:59]}_old"')
        cursor.execute(
            "CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS) PARTITION BY RANGE (created_at)"
        )
        cursor.execute("CREATE SEQUENCE events_id_seq OWNED BY events.id")
        cursor.execute("SELECT setval('events_id_seq', %s, true)", [max(last_id, 1)])
        cursor.execute("ALTER TABLE events ALTER COLUMN id SET DEFAULT nextval('events_id_seq')")
        cursor.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id, created_at)")
        cursor.execute(
            "ALTER TABLE events ADD CONSTRAINT events_event_id_created_uniq "
            "UNIQUE (event_id, created_at)"
        )
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'events_unpartitioned'::regclass AND NOT x.indisunique"
        )
        for old_name, definition in cursor.fetchall():
            name = old_name.removesuffix("_old")
            definition = definition.replace(f"INDEX {old_name} ON", f"INDEX {name} ON ONLY", 1)
            cursor.execute(definition.replace("events_unpartitioned", "events", 1))
        cursor.execute(GUARD)
        now = dt.datetime.now(dt.UTC)
        through = partitions.month_start(now)
        for _ in range(partitions.MONTHS_AHEAD):
            through = partitions.next_month(through)
    partitions.ensure_partitions(through=through, since=oldest or now)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("INSERT INTO events SELECT * FROM events_unpartitioned ORDER BY id")
        cursor.execute("DROP TABLE events_unpartitioned")


class Migration(migrations.Migration):
    # The partitioned table is built from the old one in one transaction.
    atomic = True

    dependencies = [
        ("events", "0003_outbox_index_and_autovacuum"),
    ]

    operations = [
        # Forward only: going back means restoring a dump (or writing the reverse copy).
        migrations.RunPython(partition, elidable=False),
    ]
