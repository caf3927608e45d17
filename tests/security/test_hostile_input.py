"""Hostile input is a 4xx with the error envelope, never a 500 (issue 12, point 8)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from rest_framework.test import APIClient

from slots.models import Slot

from ..conftest import api_client_for
from ..factories import ClinicServiceFactory

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Attack:
    method: str
    path: str  # "{slot}" is replaced by the slot's id
    body: bytes | dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    role: str = "staff"
    status: int | None = None  # the exact status, when one is owed


WEEKLY_ALL_DAY = [{"weekday": day, "start": "00:00", "end": "23:59"} for day in range(1, 8)]


def generate(**overrides) -> dict:
    return {
        "clinic_id": "clinic-berlin",
        "service_id": "svc-checkup",
        "date_from": "2030-01-01",
        "date_to": "2030-01-07",
        "capacity": 1,
        "weekly": [{"weekday": 1, "start": "09:00", "end": "10:00"}],
        **overrides,
    }


def new_slot(start: str, end: str) -> dict:
    return {
        "clinic_id": "clinic-berlin",
        "service_id": "svc-checkup",
        "start_at": start,
        "end_at": end,
    }


ATTACKS = {
    "if-match arabic-indic digit": Attack(
        "PATCH", "/api/v1/slots/{slot}", {"capacity": 2}, {"If-Match": '"\u0661"'}, status=400
    ),
    "if-match superscript digit": Attack(
        "PATCH", "/api/v1/slots/{slot}", {"capacity": 2}, {"If-Match": '"\u00b2"'}, status=400
    ),
    "if-match huge number": Attack(
        "PATCH", "/api/v1/slots/{slot}", {"capacity": 2}, {"If-Match": '"' + "9" * 40 + '"'}
    ),
    "slot end in year 9999": Attack(
        "POST",
        "/api/v1/slots",
        new_slot("2030-01-01T09:00:00+00:00", "9999-12-31T23:59:59+00:00"),
        status=400,
    ),
    "slot start past year 9999 in UTC": Attack(
        "POST",
        "/api/v1/slots",
        new_slot("9999-12-31T23:00:00-05:00", "9999-12-31T23:30:00-05:00"),
        status=400,
    ),
    "slot start in year 1": Attack(
        "POST",
        "/api/v1/slots",
        new_slot("0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+01:00"),
        status=400,
    ),
    "search with an offset of +18:24": Attack(
        "GET", "/api/v1/slots?start_from=2030-01-01T00:00:00%2B18:24", status=400
    ),
    "page beyond the last": Attack("GET", "/api/v1/slots?page=99999", status=404),
    "page with 40 digits": Attack("GET", "/api/v1/slots?page=" + "9" * 40),
    "page not a number": Attack("GET", "/api/v1/slots?page=%00"),
    "page_size huge": Attack("GET", "/api/v1/slots?page_size=" + "9" * 5000),
    "clinics page with 40 digits": Attack("GET", "/api/v1/clinics?page=" + "9" * 40, status=400),
    "clinics page beyond the last": Attack("GET", "/api/v1/clinics?page=999", status=404),
    "clinics page_size huge": Attack("GET", "/api/v1/clinics?page_size=" + "9" * 5000, status=400),
    "thousands of weekly windows": Attack(
        "POST",
        "/api/v1/slots/generate",
        generate(weekly=[{"weekday": 1, "start": "09:00", "end": "10:00"}] * 5000),
        status=400,
    ),
    "92 days of one-minute windows": Attack(
        "POST",
        "/api/v1/slots/generate",
        generate(service_id="svc-minute", date_to="2030-04-01", weekly=WEEKLY_ALL_DAY),
        status=400,
    ),
    "schedule ending in year 9999": Attack(
        "POST",
        "/api/v1/slots/generate",
        generate(date_from="9999-12-25", date_to="9999-12-31"),
        status=400,
    ),
    "NUL byte in a clinic id": Attack("GET", "/api/v1/clinics/a%00b", status=404),
    "NUL byte in a clinic's services": Attack("GET", "/api/v1/clinics/%00/services", status=404),
    "dot-dot as a clinic id": Attack("GET", "/api/v1/clinics/..", status=404),
    "dot-dot in a clinic's services": Attack("GET", "/api/v1/clinics/%2e%2e/services", status=404),
    "NUL byte in a slot id": Attack("GET", "/api/v1/slots/%00", status=404),
    "NUL byte in a booking id": Attack("GET", "/api/v1/bookings/%00/history", status=404),
    "NUL byte in a search filter": Attack("GET", "/api/v1/slots?clinic_id=%00", status=400),
    "NUL byte in a pet id": Attack(
        "POST",
        "/api/v1/reservations",
        {"slot_id": "{slot}", "pet_id": "pet\x00"},
        role="owner",
        status=400,
    ),
    "10,000-character Idempotency-Key": Attack(
        "POST",
        "/api/v1/reservations",
        {"slot_id": "{slot}", "pet_id": "pet-1"},
        {"Idempotency-Key": "k" * 10_000},
        role="owner",
        status=400,
    ),
    "non-UTF-8 body": Attack(
        "POST", "/api/v1/reservations", b'{"slot_id": "\xff\xfe"}', role="owner", status=400
    ),
    "non-UTF-8 body to the webhook": Attack(
        "POST", "/api/v1/payments/webhook", b'{"event_id": "\xff"}', role="none"
    ),
    # json.loads recursed into a RecursionError (a 500 on every JSON endpoint, 2 KB of body).
    "JSON nested 1,000 deep": Attack(
        "POST", "/api/v1/reservations", b"[" * 1000 + b"]" * 1000, role="owner", status=400
    ),
    "JSON nested 40 deep": Attack(
        "POST",
        "/api/v1/reservations",
        b'{"slot_id": ' + b"[" * 40 + b"]" * 40 + b"}",
        role="owner",
        status=400,
    ),
    # DRF repeats a bad choice in its message, and a lone surrogate cannot be encoded.
    "lone surrogate in a cancel scope": Attack(
        "POST",
        "/api/v1/bookings/00000000-0000-0000-0000-000000000000/cancel",
        b'{"scope": "\\ud800"}',
        role="owner",
        status=400,
    ),
    "lone surrogate in a slot status": Attack(
        "PATCH", "/api/v1/slots/{slot}", b'{"status": "\\udfff"}', status=400
    ),
    "NUL in a JSON key": Attack(
        "POST", "/api/v1/reservations", b'{"slot_id\\u0000": 1}', role="owner", status=400
    ),
    # PostgreSQL refuses an offset with a fraction of a second (it was a 500 there only).
    "search with an offset of -00:00:01.5": Attack(
        "GET",
        "/api/v1/slots?start_from=2030-01-01T00:00:00Z&start_to=2030-12-20T00:00:00-00:00:01.5",
        status=400,
    ),
    "slot with an offset of 30 seconds": Attack(
        "POST",
        "/api/v1/slots",
        new_slot("2030-01-01T09:00:00+01:00:30", "2030-01-01T09:30:00+01:00:30"),
        status=400,
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_hostile_input_is_a_4xx_with_the_error_envelope(name, slot, owner_pet, clinic):
    ClinicServiceFactory(id="svc-minute", clinic=clinic, duration_minutes=1)
    attack = ATTACKS[name]
    client = {
        "staff": api_client_for(sub="staff-1", roles=["clinic_staff"], clinic_ids=[clinic.id]),
        "owner": api_client_for(sub="owner-1", roles=["pet_owner"]),
        "none": APIClient(),
    }[attack.role]
    client.raise_request_exception = False
    path = attack.path.replace("{slot}", str(slot.pk))
    headers = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in attack.headers.items()}
    if isinstance(attack.body, dict):
        body = {
            k: (v.replace("{slot}", str(slot.pk)) if isinstance(v, str) else v)
            for k, v in attack.body.items()
        }
        response = client.generic(
            attack.method, path, json.dumps(body), "application/json", **headers
        )
    else:
        response = client.generic(
            attack.method, path, attack.body or b"", "application/json", **headers
        )
    assert response.status_code < 500, response.content[:300]
    if attack.status is not None:
        assert response.status_code == attack.status, response.content[:300]
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert Slot.objects.count() == 1  # nothing was created by any of them
    assert not Slot.objects.filter(end_at__year__gte=3000).exists()


def test_too_many_parameters_are_a_400_that_says_which_limit(clinic):
    """Django refuses them before any view (its handler400); the envelope names the limit."""
    from django.conf import settings

    query = "&".join(["a=1"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = api_client_for(sub="owner-1", roles=["pet_owner"]).get(f"/api/v1/slots?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == {
        "request": [f"At most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query or form fields."]
    }


def test_a_body_over_the_limit_is_a_400_that_says_which_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    response = APIClient().post(
        "/api/v1/payments/webhook", b"{" + b" " * 2_000 + b"}", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"body": ["At most 1000 bytes."]}


def test_a_nul_outside_the_api_is_a_400_that_says_so(client):
    response = client.get("/admin/login/?next=%00")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "request": ["No NUL character in the path or query."]
    }
