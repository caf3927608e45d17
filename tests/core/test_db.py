"""Database plumbing: replica routing, retryable SQLSTATEs, SERIALIZABLE transactions."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from petpro_booking.core import db
from petpro_booking.settings.base import database_config


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
    settings.DATABASE_REPLICA_ALIASES = ["replica_0", "replica_1"]
    assert db.read_replica() in {"replica_0", "replica_1"}
    router = db.PrimaryReplicaRouter()
    assert router.db_for_write(None) == "default"
    assert router.allow_migrate("replica_0", "slots") is False
    assert router.allow_migrate("default", "slots") is True


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

    with pytest.raises(OperationalError):
        db.run_serializable(always_conflicts, name="test")
    assert len(calls) == 2
