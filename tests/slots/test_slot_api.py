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


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_detail_has_etag_and_patch_honours_if_match(staff_client, slot):
    detail = staff_client.get(f"/api/v1/slots/{slot.id}")
    assert detail.status_code == 200
    etag = detail.headers["ETag"]
    assert etag == f'"{slot.version}"'

    ok = staff_client.patch(
        f"/api/v1/slots/{slot.id}", {"capacity": 4}, format="json", HTTP_IF_MATCH=etag
    )
    assert ok.status_code == 200, ok.json()
    assert ok.json()["capacity"] == 4
    assert ok.headers["ETag"] == f'"{slot.version + 1}"'

    stale = staff_client.patch(
        f"/api/v1/slots/{slot.id}", {"capacity": 2}, format="json", HTTP_IF_MATCH=etag
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "version_conflict"
    slot.refresh_from_db()
    assert slot.capacity == 4


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_patch_below_taken_capacity_is_409(support_client, slot):
    Slot.objects.filter(id=slot.id).update(capacity=3, booked_count=2)
    response = support_client.patch(f"/api/v1/slots/{slot.id}", {"capacity": 1}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "capacity_conflict"


def test_patch_with_garbage_if_match_is_400(staff_client, slot):
    response = staff_client.patch(
        f"/api/v1/slots/{slot.id}", {"capacity": 2}, format="json", HTTP_IF_MATCH="yesterday"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_staff_of_other_clinic_gets_403_and_owner_cannot_patch(
    other_staff_client, owner_client, slot
):
    response = other_staff_client.patch(f"/api/v1/slots/{slot.id}", {"capacity": 2}, format="json")
    assert response.status_code == 403
    assert owner_client.patch(f"/api/v1/slots/{slot.id}", {}, format="json").status_code == 403


def test_unknown_slot_is_404_envelope(owner_client):
    response = owner_client.get("/api/v1/slots/6d4c8a30-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_generate_endpoint_counts_new_slots_only(staff_client, clinic_service):
    body = {
        "clinic_id": clinic_service.clinic_id,
        "service_id": clinic_service.id,
        "date_from": "2027-01-04",
        "date_to": "2027-01-10",
        "capacity": 2,
        "weekly": [{"weekday": 1, "start": "09:00", "end": "10:00"}],
    }
    first = staff_client.post("/api/v1/slots/generate", body, format="json")
    assert first.status_code == 201, first.json()
    assert first.json() == {"created": 2}
    again = staff_client.post("/api/v1/slots/generate", body, format="json")
    assert again.json() == {"created": 0}
    assert Slot.objects.filter(capacity=2).count() == 2


def test_generate_validates_weekly_windows(staff_client, clinic_service):
    body = {
        "clinic_id": clinic_service.clinic_id,
        "service_id": clinic_service.id,
        "date_from": "2027-01-04",
        "date_to": "2027-01-10",
        "weekly": [{"weekday": 8, "start": "9am", "end": "10:00"}],
    }
    response = staff_client.post("/api/v1/slots/generate", body, format="json")
    assert response.status_code == 400
    assert "weekly" in response.json()["error"]["details"]


def test_search_filters_and_available_flag(owner_client, clinic_service):
    from ..factories import SlotFactory

    full = SlotFactory(service=clinic_service, capacity=1, booked_count=1)
    open_slot = SlotFactory(service=clinic_service, capacity=2)
    params = {"clinic_id": clinic_service.clinic_id, "service_id": clinic_service.id}
    available = owner_client.get("/api/v1/slots", {**params, "available": "true"}).json()
    assert [r["id"] for r in available["results"]] == [str(open_slot.id)]
    unavailable = owner_client.get("/api/v1/slots", {**params, "available": "false"}).json()
    assert [r["id"] for r in unavailable["results"]] == [str(full.id)]
    window = owner_client.get(
        "/api/v1/slots",
        {
            **params,
            "start_from": open_slot.start_at.isoformat(),
            "start_to": (open_slot.start_at + dt.timedelta(minutes=1)).isoformat(),
        },
    ).json()
    assert window["count"] == 1


def test_search_paginates(owner_client, clinic_service):
    from ..factories import SlotFactory

    SlotFactory.create_batch(5, service=clinic_service)
    first = owner_client.get("/api/v1/slots", {"page_size": 2}).json()
    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["previous"] is None
    assert "page=2" in first["next"]
    last = owner_client.get("/api/v1/slots", {"page_size": 2, "page": 3}).json()
    assert last["next"] is None
    assert len(last["results"]) == 1


def test_reversed_time_range_is_400(owner_client):
    response = owner_client.get(
        "/api/v1/slots",
        {"start_from": "2027-01-02T00:00:00+00:00", "start_to": "2027-01-01T00:00:00+00:00"},
    )
    assert response.status_code == 400
    assert "start_to" in response.json()["error"]["details"]


def test_clinic_endpoints(owner_client, clinic_service):
    clinics = owner_client.get("/api/v1/clinics").json()
    assert clinics["count"] == 1
    assert clinics["results"][0]["timezone"] == "Europe/Berlin"
    detail = owner_client.get(f"/api/v1/clinics/{clinic_service.clinic_id}")
    assert detail.json()["name"] == clinic_service.clinic.name
    services = owner_client.get(f"/api/v1/clinics/{clinic_service.clinic_id}/services").json()
    assert services["count"] == 1
    assert services["results"][0]["id"] == clinic_service.id
    assert services["results"][0]["price"] == "45.00"
    assert owner_client.get("/api/v1/clinics/nope").status_code == 404
    assert owner_client.get("/api/v1/clinics/nope/services").status_code == 404


def test_bad_json_is_400_envelope(staff_client):
    response = staff_client.post("/api/v1/slots", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_unknown_api_path_is_json_404(owner_client):
    response = owner_client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.fixture
def someone_writing(slot_lock_taken):
    """Another writer holds the slot's Redis lock (a hold, a confirm) until the test ends; the
    lock wait is short (tests/conftest.py, `slot_lock_taken`)."""
    return slot_lock_taken


def test_a_slot_edit_goes_through_the_slot_lock_like_every_counter_write(
    staff_client, slot, someone_writing
):
    """A raised capacity or a reopened slot gives the waiting list its turn, whose offers take
    units: the edit took only the row lock, not the slot-write gateway's Redis lock and
    SERIALIZABLE transaction."""
    response = staff_client.patch(f"/api/v1/slots/{slot.id}", {"capacity": 5}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slot_busy"
    assert response.headers["Retry-After"]
    assert Slot.objects.get(id=slot.id).capacity == slot.capacity
    assert not Event.objects.filter(aggregate_id=str(slot.id), event_type="SlotUpdated").exists()


def test_the_admins_close_action_says_which_slot_was_busy(client, slot, someone_writing):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    client.force_login(user)
    response = client.post(
        "/admin/slots/slot/",
        {"action": "close_slots", "_selected_action": [str(slot.id)]},
        follow=True,
    )
    assert response.status_code == 200
    said = [str(message) for message in response.context["messages"]]
    assert "0 slots closed." in said
    assert any(m.startswith("Not closed, try again:") for m in said), said
    assert Slot.objects.get(id=slot.id).status == "open"
