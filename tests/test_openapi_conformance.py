"""schemathesis over the whole OpenAPI schema: no 5xx, every response as documented."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi import checks as openapi_checks

from petpro_booking.core.auth import issue_token
from petpro_booking.wsgi import application

load_all_checks()
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """Calls go straight to the WSGI app; stop Django closing the test's connection after each
    request (the test client does the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(clinic_service, owner_pet, slot):
    """Valid tokens for every role, with a little data so some calls reach the happy path."""
    return {
        "support": issue_token(sub="support-1", roles=["support"]),
        "staff": issue_token(sub="staff-1", roles=["clinic_staff"], clinic_ids=[slot.clinic_id]),
        "owner": issue_token(sub="owner-1", roles=["pet_owner"]),
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@pytest.mark.parametrize("role", ["support", "owner"])
def test_api_conforms_to_its_schema(case, tokens, role):
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    case.call_and_validate(headers=headers, checks=CHECKS)
