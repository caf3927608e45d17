"""POST /api/v1/reservations with `pet_ids` (issue 15 point 3): several pets of one owner hold
one slot together, all or nothing, with one group and one expiry; bad inputs write nothing;
the group is read, replayed and released; threads holding groups never overbook."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.messaging.messages import analytics_message
from integrations.messaging.validation import message_errors
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from petpro_booking.events.relay import domain_event
from reservations.models import Reservation
from reservations.services import reservation_create_group
from slots.models import Slot

from ..conftest import api_client_for
from ..factories import ClinicServiceFactory, LocalPetFactory, SlotFactory
from .test_contention import released_together

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/reservations"


@pytest.fixture
def pets(db) -> list[str]:
    """owner-1's five pets: four dogs and a cat."""
    for index in range(1, 5):
        LocalPetFactory(owner__id="owner-1", id=f"dog-{index}", species="dog")
    LocalPetFactory(owner__id="owner-1", id="cat-1", species="cat")
    return ["dog-1", "dog-2", "dog-3", "dog-4", "cat-1"]


def hold_group(client, slot: Slot, pet_ids: list[str], **headers):
    return client.post(URL, {"slot_id": str(slot.id), "pet_ids": pet_ids}, format="json", **headers)


def counters(slot: Slot) -> tuple[int, int]:
    slot.refresh_from_db()
    return slot.held_count, slot.booked_count


def nothing_written(slot: Slot) -> None:
    assert counters(slot) == (0, 0)
    assert not Reservation.objects.exists()
    assert not Event.objects.filter(aggregate_type="reservation").exists()


def test_a_group_that_fits_holds_one_unit_per_pet_with_one_group_and_expiry(
    owner_client, pets, clinic_service
):
    slot = SlotFactory(service=clinic_service, capacity=3)

    response = hold_group(owner_client, slot, ["dog-1", "dog-2"])

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"group_id", "slot_id", "status", "expires_at", "reservations"}
    assert body["status"] == "held"
    assert response["Location"] == f"/api/v1/reservations/groups/{body['group_id']}"
    assert [hold["pet_id"] for hold in body["reservations"]] == ["dog-1", "dog-2"]
    assert {hold["group_id"] for hold in body["reservations"]} == {body["group_id"]}
    assert {hold["expires_at"] for hold in body["reservations"]} == {body["expires_at"]}
    holds = Reservation.objects.filter(group_id=body["group_id"])
    assert holds.count() == 2
    assert {(h.slot_id, h.expires_at, h.status) for h in holds} == {
        (slot.id, holds[0].expires_at, "held")
    }
    assert counters(slot) == (2, 0)
    created = Event.objects.filter(event_type="ReservationCreated")
    assert created.count() == 2
    assert {event.payload["group_id"] for event in created} == {body["group_id"]}
    # Each hold reads as a normal hold, with its group.
    one = owner_client.get(f"{URL}/{body['reservations'][0]['id']}").json()
    assert one["group_id"] == body["group_id"]


def test_a_group_larger_than_the_room_left_holds_nothing(owner_client, pets, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)

    response = hold_group(owner_client, slot, ["dog-1", "dog-2", "dog-3", "dog-4"])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slot_unavailable"
    nothing_written(slot)


def test_a_group_takes_the_units_of_expired_holds_lazily(owner_client, pets, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=2)
    first = hold_group(owner_client, slot, ["dog-1", "dog-2"]).json()
    Reservation.objects.filter(group_id=first["group_id"]).update(expires_at="2020-01-01T00:00:00Z")

    again = hold_group(owner_client, slot, ["dog-3", "dog-4"])

    assert again.status_code == 201, again.json()
    assert counters(slot) == (2, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"expired", "held"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"pet_ids": ["dog-1"], "pet_id": "dog-2"}, "pet_id"),
        ({"pet_ids": ["dog-1", "dog-1"]}, "pet_ids"),
        ({"pet_ids": ["dog-1", "dog-2", "dog-3", "dog-4", "cat-1"]}, "pet_ids"),
        ({"pet_ids": []}, "pet_ids"),
        ({"pet_ids": "dog-1"}, "pet_ids"),
        ({}, "pet_id"),
    ],
)
def test_bad_group_inputs_are_400_naming_the_field_and_write_nothing(
    owner_client, pets, clinic_service, payload, field
):
    slot = SlotFactory(service=clinic_service, capacity=5)

    response = owner_client.post(URL, {"slot_id": str(slot.id), **payload}, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    nothing_written(slot)


def test_another_owners_pet_in_the_group_is_invalid_pet_naming_it(
    owner_client, pets, clinic_service
):
    LocalPetFactory(owner__id="owner-2", id="stranger", species="dog")
    slot = SlotFactory(service=clinic_service, capacity=4)

    response = hold_group(owner_client, slot, ["dog-1", "stranger"])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_pet"
    assert error["details"] == {"pet_ids": {"stranger": ["Not your pet."]}}
    nothing_written(slot)


def test_a_pet_of_a_species_the_service_refuses_fails_the_whole_group(owner_client, pets, clinic):
    dogs_only = ClinicServiceFactory(id="svc-dogs", clinic=clinic, species=["dog"])
    slot = SlotFactory(service=dogs_only, capacity=4)

    response = hold_group(owner_client, slot, ["dog-1", "cat-1"])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_pet"
    assert list(error["details"]["pet_ids"]) == ["cat-1"]
    nothing_written(slot)


def test_the_live_hold_limit_counts_every_pet_of_the_group(
    owner_client, pets, clinic_service, settings
):
    settings.FAIR_USE_MAX_LIVE_HOLDS = 3
    slot = SlotFactory(service=clinic_service, capacity=4)
    assert hold_group(owner_client, slot, ["dog-1", "dog-2"]).status_code == 201

    refused = hold_group(owner_client, slot, ["dog-3", "dog-4"])

    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["limit"] == "live_holds_per_owner"
    assert counters(slot) == (2, 0)
    assert hold_group(owner_client, slot, ["dog-3"]).status_code == 201  # 3 of 3


def test_idempotency_key_replays_the_same_group(owner_client, pets, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=4)
    headers = {"HTTP_IDEMPOTENCY_KEY": "group-once"}

    first = hold_group(owner_client, slot, ["dog-1", "dog-2"], **headers)
    second = hold_group(owner_client, slot, ["dog-1", "dog-2"], **headers)

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert counters(slot) == (2, 0)
    other = hold_group(owner_client, slot, ["dog-3"], **headers)
    assert other.status_code == 422


def test_the_group_is_read_and_released_by_its_owner_only(
    owner_client, other_owner_client, pets, clinic_service
):
    slot = SlotFactory(service=clinic_service, capacity=3)
    group_id = hold_group(owner_client, slot, ["dog-1", "dog-2", "dog-3"]).json()["group_id"]
    group_url = f"{URL}/groups/{group_id}"

    assert other_owner_client.get(group_url).status_code == 404
    assert other_owner_client.delete(group_url).status_code == 404
    assert owner_client.get(f"{URL}/groups/not-a-uuid").status_code == 404
    read = owner_client.get(group_url)
    assert read.status_code == 200
    assert read.json()["status"] == "held"
    assert len(read.json()["reservations"]) == 3

    # One pet released alone; then the group.
    one = read.json()["reservations"][0]["id"]
    assert owner_client.delete(f"{URL}/{one}").status_code == 204
    assert counters(slot) == (2, 0)
    assert owner_client.delete(group_url).status_code == 204
    assert counters(slot) == (0, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"released"}
    assert Event.objects.filter(event_type="ReservationReleased").count() == 3
    assert owner_client.get(group_url).json()["status"] == "released"
    assert owner_client.delete(group_url).status_code == 204  # again: nothing changes
    assert counters(slot) == (0, 0)


def test_the_single_pet_form_is_unchanged(owner_client, pets, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)

    response = owner_client.post(URL, {"slot_id": str(slot.id), "pet_id": "dog-1"}, format="json")

    assert response.status_code == 201
    assert set(response.json()) == {"id", "slot_id", "pet_id", "status", "expires_at", "created_at"}
    assert Reservation.objects.get().group_id is None
    assert "group_id" not in Event.objects.get().payload


def test_group_events_match_the_analytics_schema(owner_client, pets, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)
    hold_group(owner_client, slot, ["dog-1", "dog-2"])

    for event in Event.objects.filter(aggregate_type="reservation"):
        message = analytics_message(domain_event(event))
        assert message.body["data"]["group_id"] == event.payload["group_id"]
        assert message_errors(message) == []
        event.payload["group_id"] = "not-a-uuid"
        assert message_errors(analytics_message(domain_event(event))) != []


def test_threads_holding_groups_never_overbook_and_each_group_is_all_or_nothing(
    clinic_service,
):
    capacity, owners = 7, 8
    slot = SlotFactory(service=clinic_service, capacity=capacity)
    sizes = [2, 3, 2, 4, 1, 3, 2, 2]
    for index in range(owners):
        for pet in range(sizes[index]):
            LocalPetFactory(owner__id=f"owner-{index}", id=f"pet-{index}-{pet}", species="dog")
    clients = [api_client_for(sub=f"owner-{i}", roles=["pet_owner"]) for i in range(owners)]

    def attempt(index: int) -> int:
        pet_ids = [f"pet-{index}-{pet}" for pet in range(sizes[index])]
        for _ in range(20):  # slot_busy is "retry"
            response = hold_group(clients[index], slot, pet_ids)
            if response.json().get("error", {}).get("code") != "slot_busy":
                return response.status_code
        return response.status_code

    results = released_together(owners, attempt)

    assert set(results) <= {201, 409}, results
    held = {
        index: Reservation.objects.filter(user_id=f"owner-{index}", status="held").count()
        for index in range(owners)
    }
    for index, status in enumerate(results):
        assert held[index] == (sizes[index] if status == 201 else 0), (index, status, held)
        if status == 201:
            groups = Reservation.objects.filter(user_id=f"owner-{index}")
            assert groups.values("group_id").distinct().count() == 1
            assert groups.values("expires_at").distinct().count() == 1
    taken = sum(held.values())
    assert taken <= capacity
    assert counters(slot) == (taken, 0)
    # Nothing fit that was refused: every refused group is larger than the room left.
    assert all(sizes[i] > capacity - taken for i, status in enumerate(results) if status == 409)


def test_a_group_takes_its_units_with_one_conditional_update(pets, clinic_service):
    owner = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
    slot = SlotFactory(service=clinic_service, capacity=4)

    with CaptureQueriesContext(connection) as captured:
        holds = reservation_create_group(actor=owner, slot_id=slot.id, pet_ids=pets[:3])

    slot_updates = [q["sql"] for q in captured.captured_queries if "UPDATE slots" in q["sql"]]
    assert len(slot_updates) == 1, slot_updates
    assert len(holds) == 3
    assert counters(slot) == (3, 0)
