"""Idempotency-Key with Stripe's semantics: replay, 422 on another body, 409 while the first
request runs, per-caller scope, what is (not) stored, expiry and purge, OpenAPI."""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import uuid

import pytest
from django.db import connections
from django.urls import include, path
from rest_framework import status, viewsets
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from petpro_booking.core.errors import Conflict
from petpro_booking.core.idempotency import idempotent
from petpro_booking.core.models import IdempotencyKey
from petpro_booking.core.tasks import idempotency_keys_purge
from reservations.models import Reservation

from ..conftest import api_client_for
from ..factories import SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)


class Gate:
    """Lets a test hold a request inside the view."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.leave = threading.Event()
        self.leave.set()
        self.runs = 0


GATE = Gate()


class EchoViewSet(viewsets.ViewSet):
    @idempotent
    def create(self, request):
        GATE.runs += 1
        GATE.entered.set()
        GATE.leave.wait(10)
        if request.data.get("fail") == "conflict":
            raise Conflict("No room.", code="no_room")
        if request.data.get("fail") == "crash":
            raise RuntimeError("bug")
        return Response({"echo": request.data, "run": GATE.runs}, status=status.HTTP_201_CREATED)


router = DefaultRouter(trailing_slash=False)
router.register("echo", EchoViewSet, basename="echo")
urlpatterns = [path("api/v1/", include(router.urls))]
uses_echo = pytest.mark.urls("tests.core.test_idempotency")


@pytest.fixture(autouse=True)
def _reset_gate():
    GATE.__init__()


@pytest.fixture
def alice():
    return api_client_for(sub="alice", roles=["pet_owner"])


def post(client, body, key="key-1", url="/api/v1/echo"):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@uses_echo
def test_replay_returns_the_first_response_without_running_again(alice):
    first = post(alice, {"a": 1, "b": [1, 2]})
    again = post(alice, {"b": [1, 2], "a": 1})  # same body, other key order
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"echo": {"a": 1, "b": [1, 2]}, "run": 1}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert GATE.runs == 1


@uses_echo
def test_same_key_with_another_body_is_422(alice):
    assert post(alice, {"a": 1}).status_code == 201
    response = post(alice, {"a": 2})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert GATE.runs == 1


@uses_echo
def test_without_the_header_every_request_runs(alice):
    alice.post("/api/v1/echo", {"a": 1}, format="json")
    alice.post("/api/v1/echo", {"a": 1}, format="json")
    assert GATE.runs == 2
    assert not IdempotencyKey.objects.exists()


@uses_echo
def test_keys_are_scoped_to_the_caller(alice):
    bob = api_client_for(sub="bob", roles=["pet_owner"])
    assert post(alice, {"a": 1}).json()["run"] == 1
    assert post(bob, {"a": 1}).json()["run"] == 2


@uses_echo
def test_second_request_while_the_first_runs_is_409(alice):
    GATE.leave.clear()
    outcome = {}

    def first_request() -> None:
        try:
            outcome["first"] = post(alice, {"a": 1})
        finally:
            connections.close_all()

    first = threading.Thread(target=first_request)
    first.start()
    try:
        assert GATE.entered.wait(5)
        second = post(alice, {"a": 1})
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "idempotency_key_in_use"
    finally:
        GATE.leave.set()
        first.join(10)
    assert outcome["first"].status_code == 201
    assert post(alice, {"a": 1}).json() == outcome["first"].json()
    assert GATE.runs == 1


@uses_echo
def test_business_refusals_are_stored_and_replayed(alice):
    first = post(alice, {"fail": "conflict"})
    assert first.status_code == 409
    assert post(alice, {"fail": "conflict"}).json() == first.json()
    assert GATE.runs == 1


@uses_echo
def test_server_errors_are_not_stored_so_a_retry_runs_again(alice):
    alice.raise_request_exception = False
    assert post(alice, {"fail": "crash"}).status_code == 500
    assert not IdempotencyKey.objects.exists()
    assert post(alice, {"fail": "crash"}).status_code == 500
    assert GATE.runs == 2


def hold_request(client, slot, key: str, **body):
    return client.post(
        "/api/v1/reservations",
        {"slot_id": str(slot.id), **body},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_slot_busy_is_not_stored_so_the_same_key_holds_once_the_slot_is_free(
    owner_pet, owner_client, slot, slot_lock_taken
):
    busy = hold_request(owner_client, slot, "hold-1", pet_id="pet-1")
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "slot_busy"
    assert not IdempotencyKey.objects.filter(key="hold-1").exists()
    assert not Reservation.objects.exists()

    slot_lock_taken()  # the other writer is done: the same request runs again, and holds
    held = hold_request(owner_client, slot, "hold-1", pet_id="pet-1")
    assert held.status_code == 201, held.json()
    assert "Idempotent-Replayed" not in held.headers
    assert Reservation.objects.get().id == uuid.UUID(held.json()["id"])
    assert IdempotencyKey.objects.get(key="hold-1").response_status == 201


def test_a_validation_error_is_not_stored_so_the_same_key_runs_with_the_body_corrected(
    owner_pet, owner_client, slot
):
    invalid = hold_request(owner_client, slot, "hold-2")  # no pet_id
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "validation_error"
    assert "pet_id" in invalid.json()["error"]["details"]
    assert not IdempotencyKey.objects.filter(key="hold-2").exists()

    # Stored, the 400 would make this 422 idempotency_key_reused (another body, same key).
    held = hold_request(owner_client, slot, "hold-2", pet_id="pet-1")
    assert held.status_code == 201, held.json()
    assert Reservation.objects.get().id == uuid.UUID(held.json()["id"])
    replayed = hold_request(owner_client, slot, "hold-2", pet_id="pet-1")
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == held.json()
    assert Reservation.objects.count() == 1


@uses_echo
def test_bad_keys_are_400(alice):
    response = post(alice, {"a": 1}, key="x" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["details"]


@uses_echo
def test_keys_older_than_a_day_are_forgotten_and_purged(alice):
    assert post(alice, {"a": 1}).status_code == 201
    IdempotencyKey.objects.update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert post(alice, {"a": 2}).json()["run"] == 2  # an old key is a new key
    post(alice, {"a": 3}, key="key-old")
    IdempotencyKey.objects.filter(key="key-old").update(
        created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    assert idempotency_keys_purge.delay().get() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["key-1"]


@uses_echo
def test_a_claim_abandoned_by_a_dead_process_is_taken_over(alice, settings):
    IdempotencyKey.objects.create(
        key="key-1", principal="alice", method="POST", path="/api/v1/echo", request_hash="x"
    )
    settings.IDEMPOTENCY_IN_FLIGHT_SECONDS = 0
    IdempotencyKey.objects.update(request_hash=_fingerprint_of(alice, {"a": 1}))
    assert post(alice, {"a": 1}).status_code == 201
    assert IdempotencyKey.objects.get().response_status == 201


def _fingerprint_of(client, body) -> str:
    """The stored fingerprint of a request, learnt by making it under another key."""
    post(client, body, key="probe")
    fingerprint = IdempotencyKey.objects.get(key="probe").request_hash
    IdempotencyKey.objects.filter(key="probe").delete()
    GATE.runs = 0
    return fingerprint


def test_hold_with_one_key_from_many_threads_creates_one_hold(owner_pet, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=50)
    clients = [api_client_for(sub="owner-1", roles=["pet_owner"]) for _ in range(20)]
    barrier = threading.Barrier(len(clients))
    results = [None] * len(clients)

    def run(index: int) -> None:
        try:
            barrier.wait()
            response = clients[index].post(
                "/api/v1/reservations",
                {"slot_id": str(slot.id), "pet_id": "pet-1"},
                format="json",
                HTTP_IDEMPOTENCY_KEY="same-key",
            )
            results[index] = (response.status_code, response.json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Reservation.objects.count() == 1
    slot.refresh_from_db()
    assert slot.held_count == 1
    statuses = collections.Counter(code for code, _ in results)
    # Which threads overlap is timing (a fast first request leaves only replays): the
    # invariant is one hold, the same 201 to every winner, and 409 in_use for the others.
    assert set(statuses) <= {201, 409}
    assert statuses[201] >= 1
    created = {json.dumps(body, sort_keys=True) for code, body in results if code == 201}
    assert len(created) == 1  # every 201 is the same hold, replayed
    assert {body["error"]["code"] for code, body in results if code == 409} <= {
        "idempotency_key_in_use"
    }


def test_openapi_documents_the_header_on_mutating_posts(support_client):
    schema = support_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for route in ("/api/v1/reservations", "/api/v1/slots", "/api/v1/slots/generate"):
        operation = schema["paths"][route]["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "Idempotency-Key" in headers, route
        assert "422" in operation["responses"], route


def _refusal_codes(schema: dict, operation: dict) -> set[str]:
    """The codes a 409 documents: its enum, or None for the plain envelope (any code)."""
    ref = operation["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    envelope = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    body_ref = envelope["properties"]["error"]["$ref"]
    body = schema["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    code = body["properties"]["code"]
    if "$ref" in code:
        return set(schema["components"]["schemas"][code["$ref"].rsplit("/", 1)[1]]["enum"])
    return {"*"}


def test_every_keyed_operation_documents_what_the_key_can_answer(support_client):
    """A typed client must be able to read 409 idempotency_key_in_use and 422 from every
    operation that takes the key; an operation whose 409 lists its codes lists that one too
    (a generated client raised ValueError on an unlisted code)."""
    schema = support_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    keyed = 0
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            if "Idempotency-Key" not in headers:
                continue
            keyed += 1
            assert {"409", "422"} <= set(operation["responses"]), (method, route)
            codes = _refusal_codes(schema, operation)
            assert codes == {"*"} or "idempotency_key_in_use" in codes, (method, route)
    assert keyed >= 8


def test_the_hold_and_the_waitlist_document_every_refusal_they_answer(support_client):
    from reservations.errors import LimitExceeded
    from slots.locking import SlotBusy
    from slots.rules import HOLD_REFUSAL_CODES

    schema = support_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    hold = schema["paths"]["/api/v1/reservations"]["post"]
    assert _refusal_codes(schema, hold) >= {*HOLD_REFUSAL_CODES, SlotBusy.code, LimitExceeded.code}
    join = schema["paths"]["/api/v1/waitlist"]["post"]
    assert _refusal_codes(schema, join) >= {*HOLD_REFUSAL_CODES, SlotBusy.code, LimitExceeded.code}
    # Both check the pet with the User Service, which may be down.
    assert "503" in hold["responses"]
    assert "503" in join["responses"]
    group = schema["paths"]["/api/v1/reservations/groups/{group_id}"]["delete"]
    assert "409" in group["responses"]
