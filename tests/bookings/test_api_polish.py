"""The API as app developers expect it (issue 18 point 8): JSON 404s under /api/, local times
and names on slots and bookings, one timestamp format, lookups, Location on 201, a repeated
confirm that names its booking."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from ..factories import PaymentRecordFactory
from .conftest import book_on, hold_on

pytestmark = pytest.mark.django_db(transaction=True)

UTC_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/slots/"),  # trailing slash
        ("get", "/api/v1/slots/xyz"),  # malformed id
        ("get", "/api/v1/nothing-here"),
        ("post", "/api/v2/bookings"),
        ("get", "/api/v1/bookings/not-a-uuid/history"),
        ("delete", "/api/"),
        ("post", "/api/v1/bookings/null,null/payment"),  # no CSRF page either
    ],
)
@override_settings(DEBUG=True)  # Django's debug 404 page would list every URL pattern
def test_unknown_paths_under_api_answer_the_json_envelope(method, path):
    from django.test import Client

    response = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert b"URLconf" not in response.content


def test_clinic_services_are_paginated_as_documented(owner_client, clinic_service):
    body = owner_client.get(f"/api/v1/clinics/{clinic_service.clinic_id}/services").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert [s["id"] for s in body["results"]] == [clinic_service.id]


def test_slots_carry_the_clinics_zone_local_times_and_names(owner_client, slot):
    expected = {
        "timezone": "Europe/Berlin",
        "clinic_name": "Berlin Vet",
        "service_name": slot.service.name,
        "start_local": slot.start_at.astimezone(_berlin()).isoformat(),
        "end_local": slot.end_at.astimezone(_berlin()).isoformat(),
    }
    found = owner_client.get("/api/v1/slots").json()["results"][0]
    one = owner_client.get(f"/api/v1/slots/{slot.id}").json()
    for body in (found, one):
        assert {k: body[k] for k in expected} == expected
        assert body["start_local"].endswith(("+01:00", "+02:00"))
        assert UTC_TIMESTAMP.match(body["start_at"])


def _berlin():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")


def test_timestamps_have_one_format_in_holds_and_bookings(owner_client, owner_pet, slot):
    hold = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert hold.status_code == 201
    for name in ("expires_at", "created_at"):
        assert UTC_TIMESTAMP.match(hold.json()[name]), hold.json()[name]
    booking = owner_client.post(f"/api/v1/reservations/{hold.json()['id']}/confirm").json()
    for name in ("start_at", "end_at", "created_at", "updated_at"):
        assert UTC_TIMESTAMP.match(booking[name]), booking[name]
    assert booking["timezone"] == "Europe/Berlin"
    assert booking["clinic_name"] == "Berlin Vet"
    assert booking["start_local"] == slot.start_at.astimezone(_berlin()).isoformat()


def test_201s_carry_location_and_it_reads_the_created_resource(
    owner_client, staff_client, owner_pet, slot
):
    hold = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert hold["Location"] == f"/api/v1/reservations/{hold.json()['id']}"
    assert owner_client.get(hold["Location"]).json()["id"] == hold.json()["id"]
    booking = owner_client.post(f"/api/v1/reservations/{hold.json()['id']}/confirm")
    assert booking.status_code == 201
    assert owner_client.get(booking["Location"]).json()["reference"] == booking.json()["reference"]
    created = staff_client.post(
        "/api/v1/slots",
        {
            "clinic_id": slot.clinic_id,
            "service_id": slot.service_id,
            "start_at": "2030-01-07T08:00:00Z",
            "end_at": "2030-01-07T08:30:00Z",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert staff_client.get(created["Location"]).json()["id"] == created.json()["id"]


def test_a_repeated_confirm_names_the_booking_it_made(owner_client, owner_pet, slot):
    hold = hold_on(slot)
    first = owner_client.post(f"/api/v1/reservations/{hold.id}/confirm").json()
    again = owner_client.post(f"/api/v1/reservations/{hold.id}/confirm")
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "invalid_transition"
    assert (error["details"]["booking_id"], error["details"]["reference"]) == (
        first["id"],
        first["reference"],
    )


def test_bookings_are_found_by_reference(owner_client, other_owner_client, owner_pet, slot):
    booking = book_on(slot)
    found = owner_client.get("/api/v1/bookings", {"reference": booking.reference.lower()}).json()
    assert [b["id"] for b in found["results"]] == [str(booking.id)]
    assert (
        other_owner_client.get("/api/v1/bookings", {"reference": booking.reference}).json()["count"]
        == 0
    )  # someone else's booking stays invisible
    bad = owner_client.get("/api/v1/bookings", {"reference": "nope"})
    assert bad.status_code == 400


def test_reservations_lists_the_callers_live_holds(
    owner_client, other_owner_client, owner_pet, slot, second_slot
):
    live = hold_on(second_slot)
    confirmed = hold_on(slot)
    owner_client.post(f"/api/v1/reservations/{confirmed.id}/confirm")
    body = owner_client.get("/api/v1/reservations").json()
    assert [r["id"] for r in body["results"]] == [str(live.id)]
    assert other_owner_client.get("/api/v1/reservations").json()["count"] == 0


def test_the_payment_status_of_a_booking(owner_client, staff_client, unpaid_booking):
    url = f"/api/v1/bookings/{unpaid_booking.id}"
    assert owner_client.get(url).json()["payment_status"] == "none"
    assert owner_client.get(f"{url}/payment").status_code == 404
    PaymentRecordFactory(
        booking=unpaid_booking,
        payment_id="pay-1",
        status="pending",
        checkout_url="https://pay.example/1",
    )
    assert owner_client.get(url).json()["payment_status"] == "pending"
    listed = owner_client.get("/api/v1/bookings").json()["results"][0]
    assert listed["payment_status"] == "pending"
    assert owner_client.get(f"{url}/payment").json() == {
        "payment_id": "pay-1",
        "status": "pending",
        "checkout_url": "https://pay.example/1",
    }
    # Staff of the clinic (and support) see the status, not the owner's checkout link.
    payment = staff_client.get(f"{url}/payment")
    assert payment.status_code == 200
    assert payment.json() == {"payment_id": "pay-1", "status": "pending", "checkout_url": None}
