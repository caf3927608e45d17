"""A request replayed through `Idempotency-Key` answers as the first one did, headers included
(issue 18): every endpoint that answers 201 with `Location` under idempotency sends the same
`Location` on the replay, and the same `ETag` where the first answer had one."""

from __future__ import annotations

import datetime as dt

import pytest

from bookings.models import Booking
from petpro_booking.core.models import IdempotencyKey
from reservations.models import Reservation
from slots.models import Slot

from ..factories import SlotFactory
from .conftest import OTHER_OWNER, hold_on
from .payment_fixtures import payment_url

pytestmark = pytest.mark.django_db(transaction=True)


def twice(client, url: str, body: dict | None = None, *, key: str):
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert (first.status_code, again.status_code) == (201, 201), first.content
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert first.headers["Location"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Content-Type"] == first.headers["Content-Type"] == "application/json"
    assert again.headers.get("ETag") == first.headers.get("ETag")
    return first, again


def test_a_replayed_hold_has_the_same_location(owner_client, owner_pet, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)
    first, _ = twice(
        owner_client,
        "/api/v1/reservations",
        {"slot_id": str(slot.id), "pet_id": "pet-1"},
        key="hold-1",
    )
    assert first.headers["Location"] == f"/api/v1/reservations/{first.json()['id']}"
    assert Reservation.objects.count() == 1


def test_a_replayed_confirm_has_the_same_location_and_etag(owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    first, _ = twice(
        owner_client, f"/api/v1/reservations/{reservation.id}/confirm", key="confirm-1"
    )
    assert first.headers["Location"] == f"/api/v1/bookings/{first.json()['id']}"
    assert first.headers["ETag"]
    assert Booking.objects.count() == 1


def test_a_replayed_slot_creation_has_the_same_location_and_etag(staff_client, clinic_service):
    start = dt.datetime(2027, 1, 5, 9, 0, tzinfo=dt.UTC)
    body = {
        "clinic_id": clinic_service.clinic_id,
        "service_id": clinic_service.id,
        "start_at": start.isoformat(),
        "end_at": (start + dt.timedelta(minutes=30)).isoformat(),
    }
    first, _ = twice(staff_client, "/api/v1/slots", body, key="slot-1")
    assert first.headers["Location"] == f"/api/v1/slots/{first.json()['id']}"
    assert first.headers["ETag"]
    assert Slot.objects.count() == 1


def test_a_replayed_generation_has_the_same_location(staff_client, clinic_service):
    body = {
        "clinic_id": clinic_service.clinic_id,
        "service_id": clinic_service.id,
        "date_from": "2027-01-04",
        "date_to": "2027-01-10",
        "capacity": 2,
        "weekly": [{"weekday": 1, "start": "09:00", "end": "10:00"}],
    }
    first, _ = twice(staff_client, "/api/v1/slots/generate", body, key="generate-1")
    assert first.headers["Location"].startswith("/api/v1/slots?")
    assert Slot.objects.count() == 2


def test_a_replayed_waitlist_join_has_the_same_location(owner_client, owner_pet, other_pet, slot):
    # The slot (capacity 1) is held by someone else, so owner-1 gets in line.
    hold_on(slot, owner=OTHER_OWNER, pet_id="pet-2")
    first, _ = twice(
        owner_client, "/api/v1/waitlist", {"slot_id": str(slot.id), "pet_id": "pet-1"}, key="w-1"
    )
    assert first.headers["Location"] == f"/api/v1/waitlist/{first.json()['id']}"


def test_a_replayed_payment_has_the_same_location(owner_client, unpaid_booking, payment_stub):
    first, _ = twice(owner_client, payment_url(unpaid_booking), key="pay-1")
    assert first.headers["Location"] == payment_url(unpaid_booking)
    assert len(payment_stub.create_requests) == 1


def test_an_answer_stored_before_headers_were_kept_still_replays(
    owner_client, owner_pet, clinic_service
):
    slot = SlotFactory(service=clinic_service, capacity=3)
    body = {"slot_id": str(slot.id), "pet_id": "pet-1"}
    first = owner_client.post(
        "/api/v1/reservations", body, format="json", HTTP_IDEMPOTENCY_KEY="old"
    )
    assert first.status_code == 201
    IdempotencyKey.objects.filter(key="old").update(response_headers=None)  # an older row
    again = owner_client.post(
        "/api/v1/reservations", body, format="json", HTTP_IDEMPOTENCY_KEY="old"
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == "application/json"
    assert "Location" not in again.headers
    assert Reservation.objects.count() == 1


def test_a_replayed_cancel_has_the_same_etag(owner_client, booking):
    url = f"/api/v1/bookings/{booking.id}/cancel"
    body = {"reason": "Rex is better."}
    first = owner_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="cancel-1")
    again = owner_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["ETag"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert "Location" not in again.headers
