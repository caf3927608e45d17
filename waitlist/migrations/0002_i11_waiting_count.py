"""`waitlist_waiting_count(slot)`: how many owners wait in a slot's line (PostgreSQL only).

The owner's search statement (slots/selectors.py, `_EXPIRED_HOLDS`) subtracts a slot's line
from its holds past their expiry, in three places of one statement. As a nested subquery the
line cost PostgreSQL a planning of its own in each place on every uncached page, though it is
read only where a held slot has holds past their expiry (rare: the expiry job and the lazy
expiry end them); as a PL/pgSQL call it is planned once per connection, when first run."""

from django.db import migrations

CREATE = """
CREATE FUNCTION waitlist_waiting_count(slot uuid) RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (SELECT count(*) FROM waitlist_entries w
            WHERE w.slot_id = slot AND w.status = 'waiting');
END $$;
"""
DROP = "DROP FUNCTION waitlist_waiting_count(uuid);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("waitlist", "0001_i15_waitlist")]

    operations = [migrations.RunPython(create, drop)]
