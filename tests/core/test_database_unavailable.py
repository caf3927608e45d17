"""When PostgreSQL cannot serve a request: 503 `dependency_unavailable` with Retry-After, never a
500, and nothing written. Real faults: the pool exhausted by connections held elsewhere, every
backend of the test database terminated under a live server."""

from __future__ import annotations

import httpx
import psycopg
import psycopg_pool
import pytest
from django.db import connection
from django.db.utils import IntegrityError, OperationalError

from petpro_booking.core.auth import issue_token
from petpro_booking.core.db import database_unavailable, prepared_cursor
from petpro_booking.core.exception_handler import DATABASE_RETRY_AFTER_SECONDS
from reservations.models import Reservation

pytestmark = pytest.mark.django_db(transaction=True)


def hold(client, slot):
    return client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )


def assert_database_unavailable(status: int, headers, body: dict) -> None:
    assert status == 503, body
    assert headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert body["error"]["code"] == "dependency_unavailable"
    assert body["error"]["details"] == {
        "dependency": "database",
        "retry_after_seconds": DATABASE_RETRY_AFTER_SECONDS,
    }


def test_a_pool_with_no_free_connection_answers_503(owner_client, owner_pet, slot):
    pool = connection.pool
    connection.close()  # the test's own connection back to the pool
    held: list[psycopg.Connection] = []
    timeout, pool.timeout = pool.timeout, 0.3
    try:
        while True:  # every connection the pool may open, taken here
            try:
                held.append(pool.getconn(timeout=0.3))
            except psycopg_pool.PoolTimeout:
                break
        response = hold(owner_client, slot)
    finally:
        pool.timeout = timeout
        for conn in held:
            pool.putconn(conn)

    assert_database_unavailable(response.status_code, response.headers, response.json())
    assert not Reservation.objects.exists()
    assert hold(owner_client, slot).status_code == 201  # connections back: served again


def test_connections_lost_under_a_live_server_answer_503_until_the_pool_renews_them(
    owner_pet, slot, live_server, settings
):
    token = issue_token(sub="owner-1", roles=["pet_owner"])
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        # The server's thread has used a pooled connection and given it back.
        assert client.get("/api/v1/slots", params={"clinic_id": slot.clinic_id}).status_code == 200
        with connection.cursor() as cursor:  # a restart, as the pool's connections see it
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        answers = []
        for _ in range(settings.DB_POOL_MAX_SIZE + 2):
            response = client.post(
                "/api/v1/reservations", json={"slot_id": str(slot.id), "pet_id": "pet-1"}
            )
            answers.append(response.status_code)
            if response.status_code == 201:
                break
            assert_database_unavailable(response.status_code, response.headers, response.json())

    # Each dead connection costs one request its answer (503), then the pool drops it.
    assert answers[0] == 503
    assert answers[-1] == 201
    assert Reservation.objects.count() == 1


def test_what_counts_as_the_database_being_unavailable():
    def wrapped(driver_error: Exception, kind: type[Exception] = OperationalError) -> Exception:
        try:
            raise kind(str(driver_error)) from driver_error
        except kind as exc:
            return exc

    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1")
    assert database_unavailable(wrapped(refused.value)) == "connection"
    assert database_unavailable(wrapped(psycopg_pool.PoolTimeout("no connection"))) == (
        "pool_timeout"
    )
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 1")
        try:
            with pytest.raises(OperationalError) as cancelled:
                cursor.execute("SELECT pg_sleep(1)")
        finally:  # the pooled connection goes back as it came
            cursor.execute("SET statement_timeout = 0")
    assert database_unavailable(cancelled.value) == "timeout"
    errors = psycopg.errors
    assert database_unavailable(wrapped(errors.AdminShutdown("x"))) == "server"
    assert database_unavailable(wrapped(errors.TooManyConnections("x"))) == "server"
    assert database_unavailable(wrapped(errors.ConnectionFailure("x"))) == "connection"
    # Not the database's availability: a bug or a conflict, answered as before.
    assert database_unavailable(wrapped(errors.SerializationFailure("x"))) is None
    assert database_unavailable(wrapped(errors.UniqueViolation("x"), IntegrityError)) is None
    assert database_unavailable(wrapped(errors.UndefinedTable("x"))) is None
    assert database_unavailable(OperationalError("no driver error behind it")) is None
    # psycopg refuses to send it (server-side binding), on a healthy connection: a bug.
    marks = ", ".join(["%s"] * 70_000)
    with prepared_cursor() as cursor, pytest.raises(OperationalError) as refused_to_send:
        cursor.execute(f"SELECT 1 WHERE 1 IN ({marks})", list(range(70_000)))
    assert refused_to_send.value.__cause__.sqlstate is None
    assert database_unavailable(refused_to_send.value) is None


def test_the_schema_documents_the_503_on_operations_that_call_no_other_service(support_client):
    schema = support_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    listing = schema["paths"]["/api/v1/reservations"]["get"]["responses"]
    assert "dependency_unavailable" in listing["503"]["description"]
