"""The PostgreSQL backend (core/postgresql/base.py) reads timestamptz with psycopg's compiled
loader and gives back what Django's own loader gives: aware datetimes in UTC, to the
microsecond. It leans on Django internals (`get_connection_params()["context"]`, the loader's
`timezone` that `create_cursor` compares), so an upgrade that moves them fails here."""

from __future__ import annotations

import datetime as dt
import importlib.metadata

import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg import pq
from psycopg.types.datetime import TimestamptzLoader

from petpro_booking.core.postgresql.base import (
    TIMESTAMPTZ_OID,
    DatabaseWrapper,
    UtcTimestamptzLoader,
)
from slots.models import Slot
from tests.factories import SlotFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend")

MOMENTS = [
    dt.datetime(2027, 3, 28, 0, 59, 59, 999_999, tzinfo=dt.UTC),  # Berlin's spring change
    dt.datetime(2027, 10, 31, 1, 0, 0, 1, tzinfo=dt.UTC),  # and its autumn change
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
]


def test_the_settings_use_this_backend(settings):
    assert settings.DATABASES["default"]["ENGINE"] == "petpro_booking.core.postgresql"
    assert isinstance(connections["default"], DatabaseWrapper)


@pytest.mark.django_db
def test_the_loader_is_psycopgs_compiled_one():
    # psycopg[binary] is what pyproject.toml installs: its C loader, not the Python class.
    assert importlib.metadata.version("psycopg-binary")
    assert UtcTimestamptzLoader.compiled is not TimestamptzLoader
    assert UtcTimestamptzLoader.compiled.__module__.startswith("psycopg_binary")
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT)
    assert loader is UtcTimestamptzLoader
    with connection.cursor() as cursor:
        # Django's cursors found the connection's loader in UTC: none registered its own.
        assert cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT) is loader
        instance = UtcTimestamptzLoader(TIMESTAMPTZ_OID, cursor.cursor)
        assert type(instance.load.__self__) is UtcTimestamptzLoader.compiled


@pytest.mark.django_db
@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_values_read_back_as_djangos_loader_reads_them(moment):
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz, %s::timestamptz::text", [moment, moment])
        ours, text = cursor.fetchone()
        django_loader = type("Utc", (BaseTzLoader,), {"timezone": dt.UTC})
        theirs = django_loader(TIMESTAMPTZ_OID, cursor.cursor).load(text.encode())
    assert ours == theirs == moment
    assert ours.tzinfo is theirs.tzinfo is dt.UTC
    assert ours.isoformat() == theirs.isoformat()


@pytest.mark.django_db
def test_models_read_aware_utc_datetimes():
    slot = SlotFactory(
        start_at=MOMENTS[0] + dt.timedelta(days=400),
        end_at=MOMENTS[0] + dt.timedelta(days=400, minutes=30),
    )
    read = Slot.objects.get(pk=slot.pk)
    assert (read.start_at, read.end_at) == (slot.start_at, slot.end_at)
    assert read.start_at.tzinfo is dt.UTC
    assert list(Slot.objects.filter(pk=slot.pk).values_list("start_at", flat=True)) == [
        slot.start_at
    ]


def test_a_database_in_another_time_zone_keeps_djangos_loader(settings):
    for zone, kept in ((None, False), ("Europe/Berlin", True)):
        settings_dict = {**connection.settings_dict, "TIME_ZONE": zone}
        wrapper = DatabaseWrapper(settings_dict, alias="probe")
        context = wrapper.get_connection_params()["context"]
        loader = context.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT)
        assert (loader is not UtcTimestamptzLoader) is kept
        assert issubclass(loader, BaseTzLoader) is kept
        django_context = DjangoWrapper(settings_dict, alias="probe").get_connection_params()
        assert (context is django_context["context"]) is kept


@pytest.mark.django_db
def test_the_class_method_loads_as_the_instance_does():
    with connection.cursor() as cursor:
        loader = UtcTimestamptzLoader(TIMESTAMPTZ_OID, cursor.cursor)
    text = b"2027-03-28 00:59:59.999999+00"
    assert UtcTimestamptzLoader.load(loader, text) == loader.load(text) == MOMENTS[0]
