"""The schemathesis sweep (issue 12, point 9): the real schema, the PostgreSQL stack, every role
token; stateful links (inferred from the schema) reuse the holds and bookings created on the way.

Checks: no 5xx, and every response as the schema documents it (status, content type, headers,
body). The counts go to docs/security.md; SWEEP_REPORT=path writes them as JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi import checks as openapi_checks

from petpro_booking.core.auth import issue_token
from petpro_booking.wsgi import application

from ..factories import LocalPetFactory, SlotFactory

load_all_checks()
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
# Per role: enough scenarios that the whole sweep makes well over 1,000 requests, few enough
# that it stays around a minute on a 2-core machine.
SCENARIOS_PER_ROLE = int(os.environ.get("SWEEP_SCENARIOS_PER_ROLE", "10"))
STEPS_PER_SCENARIO = 15

ROLES = {
    "owner": {"sub": "owner-1", "roles": ["pet_owner"]},
    "other_owner": {"sub": "owner-2", "roles": ["pet_owner"]},
    "staff": {"sub": "staff-1", "roles": ["clinic_staff"], "clinic_ids": ["clinic-berlin"]},
    "other_staff": {"sub": "staff-9", "roles": ["clinic_staff"], "clinic_ids": ["elsewhere"]},
    "support": {"sub": "support-1", "roles": ["support"]},
    "service": {"sub": "booking-service", "roles": ["service"]},
    "none": None,
}
COUNTS: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}
# Ids that exist: the world's slots and pets, then every hold and booking the sweep creates.
# Generated ids are swapped for one of these half of the time, so calls reach real objects
# (someone else's, too) instead of 404 on a random UUID.
KNOWN: dict[str, list[str]] = {"slot": [], "pet": [], "reservation": [], "booking": []}
PATH_KINDS = {"reservation_id": "reservation", "booking_id": "booking"}


def _pick(kind: str, generated: object) -> object:
    pool = KNOWN[kind]
    digest = sum(str(generated).encode())  # deterministic: the sweep is derandomized
    if not pool or digest % 2:
        return generated
    return pool[digest % len(pool)]


@schema.hook("map_path_parameters")
def _known_path_ids(context, path_parameters):
    path = context.operation.path
    for name, value in (path_parameters or {}).items():
        kind = PATH_KINDS.get(name)
        if name in ("id", "pk"):
            kind = next((k for k in ("reservation", "booking", "slot") if f"/{k}s/" in path), None)
        if kind:
            path_parameters[name] = _pick(kind, value)
    return path_parameters


@schema.hook("map_body")
def _known_body_ids(context, body):
    if isinstance(body, dict):
        for field, kind in (("slot_id", "slot"), ("pet_id", "pet")):
            if field in body:
                body[field] = _pick(kind, body[field])
    return body


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """Calls go straight to the WSGI app; keep the test's connection open between them."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(clinic_service):
    """Slots with room and pets of both owners, so holds and bookings can be created."""
    KNOWN["slot"] = [str(SlotFactory(service=clinic_service, capacity=50).pk) for _ in range(4)]
    LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")
    LocalPetFactory(owner__id="owner-2", id="pet-2", species="cat")
    KNOWN["pet"] = ["pet-1", "pet-2"]
    KNOWN["reservation"], KNOWN["booking"] = [], []


@pytest.mark.django_db(transaction=True)  # holds run SERIALIZABLE, durable
@pytest.mark.parametrize("role", list(ROLES))
def test_sweep(role, world):
    claims = ROLES[role]
    headers = {}
    if claims is not None:
        headers = {"Authorization": f"Bearer {issue_token(**claims)}"}
    statuses = STATUSES.setdefault(role, Counter())

    class Sweep(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            case.headers = {**(case.headers or {}), **headers}
            if not headers:
                case.headers.pop("Authorization", None)
            return {}

        def after_call(self, response, case):
            COUNTS[role] += 1
            statuses[response.status_code] += 1
            if response.status_code == 201 and case.operation.path in (
                "/api/v1/reservations",
                "/api/v1/reservations/{reservation_id}/confirm",
            ):
                kind = "reservation" if case.operation.path.endswith("s") else "booking"
                KNOWN[kind].append(response.json()["id"])

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(
        Sweep,
        settings=settings(
            max_examples=SCENARIOS_PER_ROLE,
            stateful_step_count=STEPS_PER_SCENARIO,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        ),
    )
    assert COUNTS[role] > 0
    report = os.environ.get("SWEEP_REPORT")
    if report:
        with open(report, "a") as out:
            out.write(
                json.dumps({"role": role, "requests": COUNTS[role], "statuses": dict(statuses)})
                + "\n"
            )
