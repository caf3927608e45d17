"""Database plumbing: replica routing, retryable SQLSTATEs, SERIALIZABLE transactions."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import (
    IntegrityError,
    NotSupportedError,
    OperationalError,
    connection,
    transaction,
)
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from prometheus_client import REGISTRY

from integrations.models import LocalPet
from petpro_booking.core import db
from petpro_booking.events.models import Event
from petpro_booking.settings.base import database_config, replica_config
from reservations.models import Reservation
from slots.models import Slot
from tests.factories import LocalPetFactory


class Driver(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(sqlstate: str) -> OperationalError:
    error = OperationalError("from the driver")
    error.__cause__ = Driver(sqlstate)
    return error


def test_replica_reads_only_when_configured(settings):
    settings.DATABASE_REPLICA_ALIASES = []
    assert db.read_replica() == "default"
    # With replicas configured, one that answers is used (tests/core/test_replica.py).
    router = db.PrimaryReplicaRouter()
    assert router.db_for_write(None) == "default"
    assert router.allow_migrate("replica_0", "slots") is False
    assert router.allow_migrate("default", "slots") is True


def test_replica_aliases_check_their_connections_and_give_up_quickly():
    config = replica_config("postgres://u:p@replica.internal:5432/booking")
    assert config["CONN_HEALTH_CHECKS"] is True
    assert config["OPTIONS"]["pool"]["timeout"] == 1.0


def test_replica_urls_become_pooled_postgres_aliases():
    config = database_config("postgres://u:p@replica.internal:5432/booking")
    assert config["HOST"] == "replica.internal"
    assert config["CONN_MAX_AGE"] == 0
    assert "search_path=booking_service" in config["OPTIONS"]["options"]
    assert config["OPTIONS"]["pool"]["max_size"] >= config["OPTIONS"]["pool"]["min_size"]


@pytest.mark.parametrize(
    ("sqlstate", "retryable"), [("40001", True), ("40P01", True), ("23505", False)]
)
def test_retryable_sqlstates(sqlstate, retryable):
    assert db.is_retryable(wrapped(sqlstate)) is retryable


@pytest.mark.django_db(transaction=True)
def test_run_serializable_retries_then_succeeds_at_serializable():
    attempts = []

    def decision() -> str:
        attempts.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            level = cursor.fetchone()[0]
        if len(attempts) < 3:
            raise wrapped("40001")
        return level

    assert db.run_serializable(decision, name="test") == "serializable"
    assert len(attempts) == 3


@pytest.mark.django_db(transaction=True)
def test_run_serializable_gives_up_after_the_bound(settings):
    settings.DB_SERIALIZABLE_ATTEMPTS = 2
    calls = []

    def always_conflicts() -> None:
        calls.append(1)
        raise wrapped("40P01")

    gave_up_before = (
        REGISTRY.get_sample_value("petpro_serializable_gave_up_total", {"operation": "test"}) or 0.0
    )
    with pytest.raises(db.SerializationGaveUp) as gave_up:
        db.run_serializable(always_conflicts, name="test")
    assert len(calls) == 2
    # A retryable 409 for the caller (never a 500), counted, with the driver error as cause.
    assert gave_up.value.status_code == 409
    assert isinstance(gave_up.value.__cause__, OperationalError)
    assert (
        REGISTRY.get_sample_value("petpro_serializable_gave_up_total", {"operation": "test"})
        == gave_up_before + 1
    )


def _field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def test_row_reader_reads_what_select_related_reads(slot, django_assert_num_queries):
    reader = db.RowReader(Slot, "clinic", "service")
    expected = Slot.objects.select_related("clinic", "service").get(id=slot.id)
    with django_assert_num_queries(1):
        found = reader.get(slot.id)
        # The related rows came with it: no query for the names, the species (JSON), the price.
        assert found.clinic.name == expected.clinic.name
        assert found.service.species == expected.service.species == ["dog", "cat"]
    assert _field_values(found) == _field_values(expected)
    assert _field_values(found.clinic) == _field_values(expected.clinic)
    assert _field_values(found.service) == _field_values(expected.service)
    assert isinstance(found.service.price, Decimal)
    assert found.start_at.tzinfo is not None
    assert found._state.adding is False
    assert found._state.db == "default"
    assert found == expected  # same model, same primary key


def test_row_reader_without_joins_and_for_keys_that_find_nothing(slot):  # slot: database
    pets = db.RowReader(LocalPet)
    pet = LocalPetFactory()
    assert pets.get(pet.id).owner_id == pet.owner_id
    assert pets.get("no-such-pet") is None
    slots = db.RowReader(Slot, "clinic", "service")
    assert slots.get(uuid.uuid4()) is None
    assert slots.get("not-a-uuid") is None  # the key's type is checked before any query
    assert slots.get(None) is None


def test_row_reader_refuses_what_it_cannot_join():
    with pytest.raises(ValueError, match="non-null foreign keys"):
        db.RowReader(Slot, "start_at")


def test_row_inserter_writes_what_create_writes_and_reads_back_what_the_database_filled(
    slot, django_assert_num_queries
):
    events = db.RowInserter(Event)
    with django_assert_num_queries(1):
        event = events.insert(
            Event(
                aggregate_type="slot",
                aggregate_id=str(slot.id),
                aggregate_version=1,
                event_type="SlotCreated",
                payload={"capacity": 1, "price": "40.00"},
            )
        )
    # The auto id and the db_default created_at came back from the INSERT.
    assert isinstance(event.id, int)
    assert event.created_at.tzinfo is not None
    assert event._state.adding is False
    stored = Event.objects.get(id=event.id)
    assert _field_values(stored) == _field_values(event)
    assert stored.payload == {"capacity": 1, "price": "40.00"}
    # A saved instance updates its row from then on.
    event.last_error = "seen"
    event.save(update_fields=["last_error"])
    assert Event.objects.get(id=event.id).last_error == "seen"


def test_row_inserter_fills_auto_now_fields_and_takes_values_given_for_defaults(slot):
    reservations = db.RowInserter(Reservation)
    expires_at = timezone.now() + dt.timedelta(minutes=10)
    hold = reservations.insert(
        Reservation(slot=slot, user_id="owner-1", pet_id="pet-1", expires_at=expires_at)
    )
    stored = Reservation.objects.get(id=hold.id)
    assert stored.created_at == hold.created_at
    assert stored.updated_at == hold.updated_at
    assert stored.expires_at == expires_at
    assert stored.status == "held"

    chosen = timezone.now() - dt.timedelta(days=1)
    events = db.RowInserter(Event)
    given = events.insert(
        Event(
            aggregate_type="reservation",
            aggregate_id=str(hold.id),
            aggregate_version=1,
            event_type="ReservationCreated",
            created_at=chosen,
        )
    )
    assert Event.objects.get(id=given.id).created_at == chosen  # not the database's now()


def test_a_failed_insert_dooms_its_atomic_block_as_save_does(slot):
    events = db.RowInserter(Event)

    def event() -> Event:
        return Event(
            aggregate_type="slot",
            aggregate_id=str(slot.id),
            aggregate_version=1,
            event_type="SlotCreated",
        )

    events.insert(event())
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            events.insert(event())  # the same aggregate version twice
        assert transaction.get_rollback()
        with pytest.raises(TransactionManagementError):
            Event.objects.count()  # refused: the block rolls back, it does not go on


def test_row_inserter_refuses_a_database_without_insert_returning(slot, monkeypatch):
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    with pytest.raises(NotSupportedError, match="RETURNING"):
        db.RowInserter(Event).insert(
            Event(aggregate_type="slot", aggregate_id=str(slot.id), aggregate_version=1)
        )


def _prepared_on_this_connection(fragment: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return cursor.fetchone()[0]


def test_the_hot_paths_statements_are_prepared_once_per_connection(slot):
    reader = db.RowReader(Slot, "clinic", "service")
    assert reader.get(slot.id) is not None
    assert _prepared_on_this_connection('FROM "slots" t0 JOIN') == 1
    again = reader.get(slot.id)  # executed as prepared: same answer, nothing prepared anew
    assert again.service.species == ["dog", "cat"]
    assert _prepared_on_this_connection('FROM "slots" t0 JOIN') == 1
    with connection.cursor() as cursor:  # the ordinary cursors still bind on the client
        cursor.execute("SELECT count(*) FROM slots WHERE id = %s", [slot.id])
    assert _prepared_on_this_connection("SELECT count(*) FROM slots WHERE id") == 0


def test_with_prepared_statements_off_nothing_is_prepared(slot, settings):
    settings.DB_PREPARED_STATEMENTS = False
    reader = db.RowReader(Slot)  # a statement of its own (no joins)
    assert reader.get(slot.id) == slot
    assert _prepared_on_this_connection('FROM "slots" t0 WHERE') == 0


def test_prepared_statements_show_in_the_query_log(slot):
    """The debug cursor logs what psycopg 3.3 (pinned) keeps only for statements it does not
    prepare: `_PreparingCursor` keeps it for those it does."""
    from django.test.utils import CaptureQueriesContext

    reader = db.RowReader(Slot, "clinic", "service")
    reader.get(slot.id)
    with CaptureQueriesContext(connection) as captured:
        reader.get(slot.id)  # this time executed as prepared
    assert len(captured.captured_queries) == 1
    assert 'FROM "slots" t0 JOIN' in captured.captured_queries[0]["sql"]
