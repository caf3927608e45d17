"""The suite's flush between transactional tests (tests/fast_flush.py): every row gone, the
content types and permissions kept, Django's TRUNCATE after enough deleted rows."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection

from reservations.models import Reservation
from tests import fast_flush

from .bookings.conftest import book_on, hold_on
from .factories import SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _flush() -> None:
    call_command("flush", verbosity=0, interactive=False, reset_sequences=False)


def _rows_left() -> dict[str, int]:
    left = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.django_table_names(only_existing=True):
            if table not in fast_flush.KEPT_TABLES:
                # the schema's own table names, quoted
                cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
                (count,) = cursor.fetchone()
                if count:
                    left[table] = count
    return left


def test_a_flush_deletes_every_row_and_keeps_the_content_types(owner_pet):
    book_on(SlotFactory())  # a booking, its hold, slot, service, clinic, history and events
    content_types = dict(ContentType.objects.values_list("id", "model"))
    assert _rows_left()

    _flush()

    assert _rows_left() == {}
    assert dict(ContentType.objects.values_list("id", "model")) == content_types


def test_a_referencing_table_is_emptied_before_the_table_it_references():
    tables = connection.introspection.django_table_names(only_existing=True)
    order = fast_flush._referencing_first(connection.ops, tables)
    assert order is not None
    position = {table: index for index, table in enumerate(order)}
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if field.remote_field is not None and field.related_model is not model:
                referencing, referenced = model._meta.db_table, field.related_model._meta.db_table
                assert position[referencing] < position[referenced], (referencing, referenced)
    assert position[Reservation._meta.db_table] < position["slots"]


def test_after_enough_deleted_rows_the_flush_is_djangos_truncate(owner_pet, monkeypatch):
    monkeypatch.setattr(fast_flush._DeletedRows, "since_truncate", fast_flush.TRUNCATE_AFTER_ROWS)
    tables = ["slots", "reservations"]
    assert connection.ops.sql_flush(no_style(), tables)[0].startswith("TRUNCATE")
    hold_on(SlotFactory())

    _flush()

    assert _rows_left() == {}
    assert fast_flush._DeletedRows.since_truncate == 0
    assert connection.ops.sql_flush(no_style(), tables) == [
        'DELETE FROM "reservations"',
        'DELETE FROM "slots"',
    ]
