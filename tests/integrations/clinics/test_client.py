"""The Clinic Service client against a real HTTP stub: parsing, cache, failures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.clinics import client
from petpro_booking.core.errors import DependencyUnavailable

CLINIC = "/api/v1/clinics/c-7"
SERVICES = "/api/v1/clinics/c-7/services"
CLINIC_BODY = {"id": "c-7", "name": "Vet Seven", "timezone": "Europe/Vienna", "active": True}
SERVICES_BODY = [
    {
        "id": "s-1",
        "name": "Vaccination",
        "duration_minutes": 20,
        "price": "35.50",
        "currency": "eur",
        "species": ["Dog", "cat"],
        "requires_payment": True,
        "cancellation_window_hours": 12,
    }
]


def test_clinic_and_services_are_parsed_into_plain_dataclasses(clinic_service_stub):
    clinic_service_stub.route("GET", CLINIC, body=CLINIC_BODY)
    clinic_service_stub.route("GET", SERVICES, body=SERVICES_BODY)

    clinic = client.clinic_get(clinic_id="c-7")
    services = client.clinic_services(clinic_id="c-7")

    assert clinic == client.ClinicInfo(
        id="c-7", name="Vet Seven", timezone="Europe/Vienna", active=True
    )
    assert services == [
        client.ServiceInfo(
            id="s-1",
            name="Vaccination",
            duration_minutes=20,
            price=Decimal("35.50"),
            currency="EUR",
            species=("dog", "cat"),
            requires_payment=True,
            cancellation_window_hours=12,
        )
    ]


def test_answers_are_cached_and_refresh_skips_the_cache(clinic_service_stub):
    clinic_service_stub.route("GET", CLINIC, body=CLINIC_BODY)

    client.clinic_get(clinic_id="c-7")
    client.clinic_get(clinic_id="c-7")
    assert clinic_service_stub.count("GET", CLINIC) == 1

    clinic_service_stub.route("GET", CLINIC, body={**CLINIC_BODY, "name": "Vet Seven Plus"})
    assert client.clinic_get(clinic_id="c-7", refresh=True).name == "Vet Seven Plus"
    assert client.clinic_get(clinic_id="c-7").name == "Vet Seven Plus"
    assert clinic_service_stub.count("GET", CLINIC) == 2

    client.invalidate_clinic("c-7")
    client.clinic_get(clinic_id="c-7")
    assert clinic_service_stub.count("GET", CLINIC) == 3


def test_unknown_clinic_is_none(clinic_service_stub):
    assert client.clinic_get(clinic_id="c-404") is None
    assert client.clinic_services(clinic_id="c-404") is None


@pytest.mark.parametrize("clinic_id", [".", ".."])
def test_a_dot_segment_id_is_unknown_and_reaches_no_other_path(clinic_service_stub, clinic_id):
    """`/api/v1/clinics/..` would be resolved to `/api/v1/` by the HTTP client (and
    `../services` to `/api/v1/services`): such an id is answered unknown, unasked."""
    clinic_service_stub.route("GET", "/api/v1/services", body=SERVICES_BODY)
    clinic_service_stub.route("GET", "/api/v1", body=CLINIC_BODY)
    clinic_service_stub.route("GET", "/api/v1/", body=CLINIC_BODY)
    assert client.clinic_get(clinic_id=clinic_id) is None
    assert client.clinic_services(clinic_id=clinic_id) is None
    assert clinic_service_stub.requests == []


@pytest.mark.parametrize(
    "bad_service",
    [
        {**SERVICES_BODY[0], "price": "free"},
        {**SERVICES_BODY[0], "duration_minutes": 0},
        {key: value for key, value in SERVICES_BODY[0].items() if key != "name"},
        # Species as a string became its letters ("dog": d, o, g); an object its keys.
        {**SERVICES_BODY[0], "species": "dog"},
        {**SERVICES_BODY[0], "species": {"dog": True}},
        {**SERVICES_BODY[0], "species": ["dog", 1]},
        # Outside what the read-model's columns hold: a DataError stopped every later clinic's
        # refresh in the daily sync.
        {**SERVICES_BODY[0], "currency": "EURO"},
        {**SERVICES_BODY[0], "name": "x" * 201},
        {**SERVICES_BODY[0], "price": "1e10"},
        {**SERVICES_BODY[0], "duration_minutes": 2**31},
        {**SERVICES_BODY[0], "min_notice_minutes": 2**31},
        {**SERVICES_BODY[0], "id": "s" * 65},
    ],
)
def test_a_malformed_service_list_is_refused_and_counted(clinic_service_stub, bad_service):
    clinic_service_stub.route("GET", SERVICES, body=[bad_service])

    with pytest.raises(DependencyUnavailable) as raised:
        client.clinic_services(clinic_id="c-7")
    assert raised.value.details == {"dependency": "clinic service"}
    assert client.reader.breaker.snapshot()["failures_in_window"] == 1


@pytest.mark.parametrize(
    "bad_clinic",
    [
        {**CLINIC_BODY, "name": "n" * 201},
        {**CLINIC_BODY, "default_language": "l" * 11},
        {**CLINIC_BODY, "timezone": ""},
    ],
)
def test_a_clinic_outside_what_the_read_model_holds_is_refused(clinic_service_stub, bad_clinic):
    clinic_service_stub.route("GET", CLINIC, body=bad_clinic)

    with pytest.raises(DependencyUnavailable):
        client.clinic_get(clinic_id="c-7")


def test_refused_connection_is_not_retried(clinic_service_stub):
    clinic_service_stub.stop()

    with pytest.raises(DependencyUnavailable):
        client.clinic_get(clinic_id="c-7")
    # one failed attempt: nothing listens, so there is nothing to wait for
    assert client.reader.breaker.snapshot()["failures_in_window"] == 1
