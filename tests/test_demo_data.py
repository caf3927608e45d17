"""`manage.py load_demo_data`: the demo clinics and a token for each role, each accepted by the
API as that role (the service token reads, and is refused any write)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_data_prints_a_working_token_for_each_role():
    out = io.StringIO()
    call_command("load_demo_data", stdout=out)
    lines = out.getvalue().splitlines()
    tokens = {
        label[2:]: lines[index + 1]
        for index, label in enumerate(lines)
        if label.startswith("# ") and index + 1 < len(lines)
    }
    service = next(token for label, token in tokens.items() if "PetPro service" in label)
    support = tokens["support"]
    assert any("clinic staff" in label for label in tokens)
    assert any("pet owner" in label for label in tokens)

    def client(token: str) -> APIClient:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return api

    assert client(service).get("/api/v1/clinics").status_code == 200
    refused = client(service).post("/api/v1/slots", {}, format="json")
    assert refused.status_code == 403
    assert client(support).get("/api/v1/clinics").status_code == 200
