"""The slot and clinic endpoints: status codes, error codes, permissions per role."""

from __future__ import annotations

import datetime as dt

import pytest

from petpro_booking.events.models import Event
from slots.models import Slot

pytestmark = pytest.mark.django_db


def test_search_lists_slots_with_available_capacity(owner_client, slot):
    response = owner_client.get("/api/v1/slots", {"clinic_id": slot.clinic_id})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert body["results"][0]["id"] == str(slot.id)
    assert body["results"][0]["available_capacity"] == 1
    assert set(body) == {"count", "next", "previous", "results"}


def test_anonymous_is_401_with_envelope(anon_client):
    response = anon_client.get("/api/v1/slots")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_naive_time_is_400(owner_client):
    response = owner_client.get("/api/v1/slots", {"start_from": "2026-12-01T09:00:00"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "start_from" in error["details"]


def test_staff_creates_slot_and_event(staff_client, clinic_service):
    start = dt.datetime(2027, 1, 5, 9, 0, tzinfo=dt.UTC)
    response = staff_client.post(
        "/api/v1/slots",
        {
            "clinic_id": clinic_service.clinic_id,
            "service_id": clinic_service.id,
            "start_at": start.isoformat(),
            "end_at": (start + dt.timedelta(minutes=30)).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    slot = Slot.objects.get(id=response.json()["id"])
    assert slot.capacity == 1
    assert Event.objects.filter(aggregate_id=str(slot.id), event_type="SlotCreated").exists()


def test_owner_cannot_create_slot(owner_client, clinic_service):
    response = owner_client.post("/api/v1/slots", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
