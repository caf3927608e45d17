"""Database plumbing: replica routing, retryable SQLSTATEs, SERIALIZABLE transactions."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from types import SimpleNamespace

import psycopg
import pytest
from django.db import (
    DataError,
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
from tests.factories import LocalPetFactory, SlotFactory


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
def test_run_serializable_counts_and_pauses_every_retry_the_policy_makes(settings, monkeypatch):
    """The first attempt runs outside tenacity; its failure is replayed into the policy, so the
    retries are counted and paused exactly as the policy says (retry n: at most base * 2**(n-1)),
    and a decision that succeeds at once starts no retry machinery at all."""
    settings.RETRY_POLICIES = {
        **settings.RETRY_POLICIES,
        "serializable": {"attempts": 4, "base": 0.01, "cap": 1.0, "jitter": "none"},
    }
    pauses: list[float] = []
    monkeypatch.setattr("tenacity.nap.time", SimpleNamespace(sleep=pauses.append))

    def retries() -> float:
        return (
            REGISTRY.get_sample_value("petpro_serializable_retries_total", {"operation": "pause"})
            or 0.0
        )

    attempts = []

    def third_time_lucky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise wrapped("40001")
        return len(attempts)

    before = retries()
    assert db.run_serializable(third_time_lucky, name="pause") == 3
    assert retries() == before + 2
    assert pauses == [0.01, 0.02]

    monkeypatch.setattr(
        db, "retry_policy", lambda name: pytest.fail("the policy was built for a first success")
    )
    assert db.run_serializable(lambda: "at once", name="pause") == "at once"
    assert retries() == before + 2


@pytest.mark.django_db(transaction=True)
def test_run_serializable_does_not_retry_other_errors():
    calls = []

    def breaks() -> None:
        calls.append(1)
        raise ValueError("not a conflict")

    with pytest.raises(ValueError, match="not a conflict"):
        db.run_serializable(breaks, name="test")
    assert len(calls) == 1


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


# insert_when: a gate (a conditional write with RETURNING) and the rows it makes, one statement.
_GATE = (
    "UPDATE slots SET held_count = held_count + 1"
    " WHERE id = %s AND booked_count + held_count < capacity"
    " RETURNING clinic_id, current_setting('transaction_isolation')"
)
_RESERVATIONS = db.RowInserter(Reservation)
_EVENTS = db.RowInserter(Event)


def _hold_and_event(slot: Slot, **hold: object) -> list:
    reservation = Reservation(
        slot=slot,
        user_id=hold.get("user_id", "owner-1"),
        pet_id="pet-1",
        pet_name="Rex",
        expires_at=timezone.now() + dt.timedelta(minutes=10),
    )
    event = Event(
        aggregate_type="reservation",
        aggregate_id=str(reservation.id),
        aggregate_version=1,
        event_type="ReservationCreated",
        payload={"pet_name": "Rex"},
    )
    return [(_RESERVATIONS, reservation), (_EVENTS, event)]


def test_insert_when_inserts_the_rows_in_the_gates_statement_only_when_it_returned_a_row(
    slot, django_assert_num_queries
):
    rows = _hold_and_event(slot)
    with django_assert_num_queries(1):
        gated = db.insert_when(_GATE, [slot.id], rows)
    assert gated == (slot.clinic_id, "read committed")
    (_, hold), (_, event) = rows
    # What a plain INSERT writes and fills: the NULL group, the encrypted name, the auto id.
    stored = Reservation.objects.get(id=hold.id)
    assert _field_values(stored) == _field_values(hold)
    assert stored.group_id is None
    assert stored.pet_name == "Rex"
    assert isinstance(event.id, int)
    assert event.created_at.tzinfo is not None
    assert _field_values(Event.objects.get(id=event.id)) == _field_values(event)
    assert hold._state.adding is False

    # Capacity 1: the gate matches nothing now, and nothing is inserted.
    refused = _hold_and_event(slot)
    assert db.insert_when(_GATE, [slot.id], refused) is None
    assert not Reservation.objects.filter(id=refused[0][1].id).exists()
    assert not Event.objects.filter(aggregate_id=str(refused[0][1].id)).exists()
    assert refused[0][1]._state.adding is True
    slot.refresh_from_db()
    assert slot.held_count == 1


def test_insert_when_refuses_a_value_too_long_for_its_column_as_insert_does(slot):
    rows = _hold_and_event(slot, user_id="x" * 65)  # user_id is varchar(64): never cut short
    with pytest.raises(DataError), transaction.atomic():
        db.insert_when(_GATE, [slot.id], rows)
    slot.refresh_from_db()
    assert slot.held_count == 0


def _committed_elsewhere(sql: str, params: list) -> tuple:
    """A query on a connection of its own: sees only what is committed."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        options=settings["OPTIONS"].get("options", ""),  # the service's schema
    ) as other:
        return other.execute(sql, params).fetchone()


@pytest.mark.django_db(transaction=True)
def test_insert_when_commit_sends_begin_the_statement_and_commit_in_one_round_trip(
    clinic_service,
):
    slot = SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=2)
    rows = _hold_and_event(slot)
    hooks: list[str] = []

    def hold() -> tuple:
        transaction.on_commit(lambda: hooks.append("after commit"))
        gated = db.insert_when(_GATE, [slot.id], rows, commit=True)
        # Committed when it returns, still inside the decision's atomic block.
        seen = _committed_elsewhere("SELECT held_count FROM slots WHERE id = %s", [slot.id])
        assert seen == (1,)
        assert not hooks  # on_commit hooks wait for the atomic block, as ever
        # What runs next runs in a new transaction at the same level.
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone() == ("serializable",)
        return gated

    assert db.run_serializable(hold, name="test") == (slot.clinic_id, "serializable")
    assert hooks == ["after commit"]
    assert Reservation.objects.filter(id=rows[0][1].id).exists()
    assert connection.connection.autocommit is True  # Django's autocommit, back after the block


@pytest.mark.django_db(transaction=True)
def test_insert_when_commit_rolls_back_a_failed_statement_and_leaves_the_connection_usable(
    clinic_service,
):
    slot = SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=2)
    first = _hold_and_event(slot)
    db.run_serializable(lambda: db.insert_when(_GATE, [slot.id], first, commit=True), name="t")
    again = _hold_and_event(slot)
    again[1][1].aggregate_id = first[1][1].aggregate_id  # the same aggregate version twice

    with pytest.raises(IntegrityError):
        db.run_serializable(lambda: db.insert_when(_GATE, [slot.id], again, commit=True), name="t")
    # The gate's UPDATE went with the failed statement; nothing of it is left.
    assert _committed_elsewhere("SELECT held_count FROM slots WHERE id = %s", [slot.id]) == (1,)
    assert not Reservation.objects.filter(id=again[0][1].id).exists()
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # The next hold on the same pooled connection goes through.
    last = _hold_and_event(slot)
    assert db.run_serializable(
        lambda: db.insert_when(_GATE, [slot.id], last, commit=True), name="t"
    ) == (slot.clinic_id, "serializable")
    assert Reservation.objects.filter(slot=slot).count() == 2


def test_insert_when_commit_is_an_ordinary_statement_inside_an_outer_transaction(slot):
    rows = _hold_and_event(slot)
    # The test's own transaction is open: nothing may commit it.
    assert db.insert_when(_GATE, [slot.id], rows, commit=True) == (slot.clinic_id, "read committed")
    assert connection.in_atomic_block
    # Still inside that transaction on the server: no COMMIT was sent.
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert Reservation.objects.filter(id=rows[0][1].id).exists()
