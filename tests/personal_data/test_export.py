"""Right of access: GET /api/v1/me/data and the support admin action export one JSON document
with holds, bookings, payments, history and notifications, each with its event ids."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from bookings.models import Booking
from bookings.personal_data import person_data_export
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from petpro_booking.events.relay import outbox_relay
from reservations.services import reservation_create
from waitlist.services import waitlist_join

from ..conftest import api_client_for
from ..events.conftest import private_exchange  # noqa: F401  (fixture: this test's exchange)
from ..factories import LocalPetFactory
from .conftest import EMAIL, OWNER_REASON, PET_NAME

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_owner_gets_everything_we_hold_about_them_and_nothing_of_others(person):
    outbox_relay()  # the confirmation and cancellation notifications go out
    answer = api_client_for(sub="owner-1", roles=["pet_owner"]).get("/api/v1/me/data")
    assert answer.status_code == 200
    document = answer.json()
    assert document["profile"]["email"] == EMAIL
    assert document["profile"]["pets"] == [{"id": "pet-1", "name": PET_NAME, "species": "dog"}]
    statuses = sorted(b["status"] for b in document["bookings"])
    assert statuses == ["cancelled", "completed", "confirmed", "no_show", "pending_payment"]
    assert str(person.bystander_booking.id) not in json.dumps(document)
    assert {h["status"] for h in document["holds"]} >= {"confirmed", "released", "held"}
    assert [p["payment_id"] for p in document["payments"]] == ["pay_erasure_1"]
    assert OWNER_REASON in [item["reason"] for item in document["history"]]
    templates = sorted(n["template"] for n in document["notifications"])
    assert templates.count("booking_confirmed") == 4
    assert "booking_cancelled" in templates
    (waiting,) = document["waitlist"]
    assert (waiting["status"], waiting["pet_name"]) == ("waiting", PET_NAME)
    # Every event id names a real event of that very booking, hold or waiting-list entry.
    for item in document["bookings"] + document["holds"] + document["waitlist"]:
        stored = Event.objects.filter(aggregate_id=item["id"]).order_by("id")
        assert item["event_ids"] == [str(e.event_id) for e in stored]
        assert item["event_ids"]


def test_the_history_names_others_by_role_only(person):
    """Issue 12: a staff member's or support agent's id is internal, the owner's own stays."""
    document = api_client_for(sub="owner-1", roles=["pet_owner"]).get("/api/v1/me/data").json()
    actors = {(item["to_status"], json.dumps(item["actor"])) for item in document["history"]}
    assert ("completed", json.dumps({"type": "staff"})) in actors
    assert ("no_show", json.dumps({"type": "support"})) in actors
    assert ("cancelled", json.dumps({"type": "user", "id": "owner-1"})) in actors
    text = json.dumps(document)
    assert "staff-1" not in text
    assert "support-1" not in text
    assert "internal_note" not in text


def test_only_owners_may_ask_and_only_for_themselves(person):
    staff = api_client_for(sub="staff-1", roles=["clinic_staff"], clinic_ids=["clinic-berlin"])
    assert staff.get("/api/v1/me/data").status_code == 403
    stranger = api_client_for(sub="owner-77", roles=["pet_owner"]).get("/api/v1/me/data")
    assert stranger.status_code == 200
    assert stranger.json()["bookings"] == []
    assert stranger.json()["profile"] is None


def test_support_exports_an_owner_from_the_admin(client, person):
    client.force_login(User.objects.create_superuser("agent", "agent@example.com", "pw"))
    answer = client.post(
        "/admin/bookings/booking/",
        {"action": "export_owner_data", "_selected_action": [str(person.bystander_booking.id)]},
    )
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/json"
    (owner,) = json.loads(answer.content)["owners"]
    assert owner == {**person_data_export(user_id="owner-2"), "generated_at": owner["generated_at"]}
    assert owner["profile"]["pets"][0]["name"] == "Nala"


def test_support_exports_a_person_with_only_a_waiting_list_entry_from_the_command(owner_pet, slot):
    """Not in the bookings admin (no booking to pick): `manage.py export_person USER_ID`."""
    LocalPetFactory(id="pet-2", species="dog", owner__id="owner-2")
    other = Principal(sub="owner-2", roles=frozenset({"pet_owner"}))
    reservation_create(actor=other, slot_id=slot.id, pet_id="pet-2")  # the slot is full
    waitlist_join(
        actor=Principal(sub="owner-1", roles=frozenset({"pet_owner"})),
        slot_id=slot.id,
        pet_id="pet-1",
    )
    assert not Booking.objects.exists()
    out = io.StringIO()
    call_command("export_person", "owner-1", stdout=out)
    document = json.loads(out.getvalue())
    assert document == {
        **person_data_export(user_id="owner-1"),
        "generated_at": document["generated_at"],
    }
    assert [entry["pet_id"] for entry in document["waitlist"]] == ["pet-1"]
