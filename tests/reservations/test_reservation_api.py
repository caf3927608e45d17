"""POST/GET/DELETE /api/v1/reservations: status codes, error codes, counters and events."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from petpro_booking.events.models import Event
from reservations.models import Reservation
from slots.models import Slot

from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory

# Holds run in a durable SERIALIZABLE transaction: the test may not wrap it in its own.
pytestmark = pytest.mark.django_db(transaction=True)


def hold(client, slot, pet_id="pet-1", **headers):
    return client.post(
        "/api/v1/reservations",
        {"slot_id": str(slot.id), "pet_id": pet_id},
        format="json",
        **headers,
    )


def test_owner_holds_a_slot(owner_client, owner_pet, slot):
    before = timezone.now()
    response = hold(owner_client, slot)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"id", "slot_id", "pet_id", "status", "expires_at", "created_at"}
    assert body["status"] == "held"
    assert body["slot_id"] == str(slot.id)
    assert body["pet_id"] == "pet-1"
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    assert before + dt.timedelta(seconds=590) < expires_at < before + dt.timedelta(seconds=610)
    slot.refresh_from_db()
    assert (slot.held_count, slot.booked_count) == (1, 0)
    event = Event.objects.get(aggregate_id=body["id"])
    assert event.event_type == "ReservationCreated"
    assert event.aggregate_type == "reservation"
    assert event.payload["reservation_id"] == body["id"]
    assert event.payload["status"] == "held"
    assert event.payload["clinic_name"] == "Berlin Vet"
    assert event.payload["pet_name"] == owner_pet.name
    assert event.payload["user_id"] == "owner-1"
    assert event.payload["start_local"].endswith(("+01:00", "+02:00"))
    assert event.metadata["actor"] == {"type": "user", "id": "owner-1"}


def test_full_slot_is_409_slot_unavailable(owner_client, owner_pet, slot):
    assert hold(owner_client, slot).status_code == 201
    LocalPetFactory(owner__id="owner-2", id="pet-2")
    response = hold(api_client_for(sub="owner-2", roles=["pet_owner"]), slot, pet_id="pet-2")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slot_unavailable"
    slot.refresh_from_db()
    assert slot.held_count == 1


def test_closed_slot_is_409(owner_client, owner_pet, clinic_service):
    closed = SlotFactory(service=clinic_service, status="closed")
    response = hold(owner_client, closed)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slot_unavailable"


def test_started_slot_is_409(owner_client, owner_pet, clinic_service):
    start = timezone.now() - dt.timedelta(minutes=5)
    started = SlotFactory(
        service=clinic_service, start_at=start, end_at=start + dt.timedelta(minutes=30)
    )
    response = hold(owner_client, started)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slot_started"
    started.refresh_from_db()
    assert started.held_count == 0


def test_someone_elses_pet_is_400_invalid_pet(owner_client, owner_pet, slot):
    LocalPetFactory(owner__id="owner-2", id="pet-2")
    response = hold(owner_client, slot, pet_id="pet-2")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_pet"
    assert not Reservation.objects.exists()


def test_species_not_accepted_is_400_invalid_pet(owner_client, slot):
    LocalPetFactory(owner__id="owner-1", id="pet-7", species="parrot")
    response = hold(owner_client, slot, pet_id="pet-7")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_pet"
    assert "pet_id" in error["details"]


def test_unknown_slot_is_404(owner_client, owner_pet):
    response = owner_client.post(
        "/api/v1/reservations",
        {"slot_id": "00000000-0000-4000-8000-000000000000", "pet_id": "pet-1"},
        format="json",
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_bad_body_is_400(owner_client, owner_pet):
    response = owner_client.post("/api/v1/reservations", {"slot_id": "nope"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"slot_id", "pet_id"}


def test_staff_cannot_hold(staff_client, slot):
    response = hold(staff_client, slot)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_owner_reads_own_hold_and_others_get_404(owner_client, other_owner_client, owner_pet, slot):
    reservation_id = hold(owner_client, slot).json()["id"]
    own = owner_client.get(f"/api/v1/reservations/{reservation_id}")
    assert own.status_code == 200
    assert own.json()["id"] == reservation_id
    assert other_owner_client.get(f"/api/v1/reservations/{reservation_id}").status_code == 404
    assert other_owner_client.delete(f"/api/v1/reservations/{reservation_id}").status_code == 404
    assert Reservation.objects.get(id=reservation_id).status == "held"


def test_release_gives_the_unit_back_once(owner_client, owner_pet, slot):
    reservation_id = hold(owner_client, slot).json()["id"]
    response = owner_client.delete(f"/api/v1/reservations/{reservation_id}")
    assert response.status_code == 204
    slot.refresh_from_db()
    assert slot.held_count == 0
    assert owner_client.get(f"/api/v1/reservations/{reservation_id}").json()["status"] == (
        "released"
    )
    # Releasing again changes nothing.
    assert owner_client.delete(f"/api/v1/reservations/{reservation_id}").status_code == 204
    slot.refresh_from_db()
    assert slot.held_count == 0
    types = list(
        Event.objects.filter(aggregate_id=reservation_id)
        .order_by("aggregate_version")
        .values_list("event_type", flat=True)
    )
    assert types == ["ReservationCreated", "ReservationReleased"]
    # The unit is free again for the next owner.
    assert hold(owner_client, slot).status_code == 201


def test_an_expired_hold_never_blocks_the_slot(owner_client, owner_pet, slot):
    """Past its expiry, a hold gives way at once, before the expiry job has run."""
    stale_id = hold(owner_client, slot).json()["id"]
    Reservation.objects.filter(id=stale_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    LocalPetFactory(owner__id="owner-2", id="pet-2")
    response = hold(api_client_for(sub="owner-2", roles=["pet_owner"]), slot, pet_id="pet-2")
    assert response.status_code == 201, response.json()
    stale = Reservation.objects.get(id=stale_id)
    assert (stale.status, stale.version) == ("expired", 2)
    slot.refresh_from_db()
    assert slot.held_count == 1
    expired_event = Event.objects.get(aggregate_id=stale_id, event_type="ReservationExpired")
    assert expired_event.payload["status"] == "expired"
    assert expired_event.payload["pet_name"] == owner_pet.name
    assert expired_event.metadata["actor"]["type"] == "system"


def test_a_hold_past_expiry_reads_as_expired_before_the_job_runs(owner_client, owner_pet, slot):
    reservation_id = hold(owner_client, slot).json()["id"]
    Reservation.objects.filter(id=reservation_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert owner_client.get(f"/api/v1/reservations/{reservation_id}").json()["status"] == (
        "expired"
    )


def test_releasing_a_hold_past_expiry_records_expiry(owner_client, owner_pet, slot):
    reservation_id = hold(owner_client, slot).json()["id"]
    Reservation.objects.filter(id=reservation_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert owner_client.delete(f"/api/v1/reservations/{reservation_id}").status_code == 204
    assert Reservation.objects.get(id=reservation_id).status == "expired"
    assert Slot.objects.get(id=slot.id).held_count == 0


def test_hold_replays_with_the_same_idempotency_key(owner_client, owner_pet, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)
    first = hold(owner_client, slot, HTTP_IDEMPOTENCY_KEY="k-1")
    again = hold(owner_client, slot, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    slot.refresh_from_db()
    assert slot.held_count == 1
    assert Reservation.objects.count() == 1
    other_body = hold(owner_client, SlotFactory(service=clinic_service), HTTP_IDEMPOTENCY_KEY="k-1")
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
