"""GET /slots/{id}/availability: each reason set up for real, and the answer checked."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from ..conftest import api_client_for
from ..factories import ClinicServiceFactory, LocalPetFactory, SlotFactory
from .conftest import hold, join

pytestmark = pytest.mark.django_db(transaction=True)


def availability(client, slot, **query):
    response = client.get(f"/api/v1/slots/{slot.id}/availability", query)
    assert response.status_code == 200, response.json()
    return response.json()


def codes(answer) -> list[str]:
    return [reason["code"] for reason in answer["reasons"]]


def test_a_free_slot_is_bookable_and_lists_next_slots(owners, slot):
    later = [SlotFactory(service=slot.service, capacity=2) for _ in range(7)]
    answer = availability(owners[1], slot, pet_id="pet-1")
    assert answer["bookable"] is True
    assert answer["reasons"] == []
    assert answer["waitlist_position"] is None
    assert [row["id"] for row in answer["next_slots"]] == [str(s.id) for s in later[:5]]
    assert all(row["available_capacity"] > 0 for row in answer["next_slots"])


def test_full_says_how_many_are_held_and_when_the_first_hold_expires(owners, slot):
    held = hold(owners[2], slot, "pet-2")
    assert held.status_code == 201
    assert join(owners[1], slot, "pet-1").status_code == 201
    answer = availability(owners[1], slot)
    assert answer["bookable"] is False
    assert codes(answer) == ["slot_full"]
    full = answer["reasons"][0]
    assert full["details"]["held"] == 1
    assert full["details"]["booked"] == 0
    assert full["details"]["earliest_hold_expires_at"] == held.json()["expires_at"]
    assert "1 held" in full["message"]
    assert answer["waitlist_position"] == 1
    # The holder itself is told it already holds the slot, as a note: the slot is full.
    mine = availability(owners[2], slot)
    assert codes(mine) == ["slot_full"]
    assert [note["code"] for note in mine["notes"]] == ["already_held"]


def test_a_hold_past_its_expiry_counts_free_before_the_job(owners, slot):
    from reservations.models import Reservation

    assert hold(owners[2], slot, "pet-2").status_code == 201
    Reservation.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert availability(owners[1], slot)["bookable"] is True


def test_closed_by_the_clinic_says_when_from_the_event_store(owners, slot, staff_client):
    closed = staff_client.patch(f"/api/v1/slots/{slot.id}", {"status": "closed"}, format="json")
    assert closed.status_code == 200, closed.json()
    answer = availability(owners[1], slot)
    assert codes(answer) == ["slot_closed"]
    assert answer["reasons"][0]["details"]["closed_by"] == "staff"
    assert answer["reasons"][0]["details"]["closed_at"].startswith(str(timezone.now().year))


def test_too_soon_and_beyond_the_horizon(owners, clinic):
    service = ClinicServiceFactory(
        clinic=clinic, min_notice_minutes=120, booking_horizon_days=10, species=["dog"]
    )
    soon = SlotFactory(service=service, start_at=timezone.now() + dt.timedelta(minutes=60))
    far = SlotFactory(service=service, start_at=timezone.now() + dt.timedelta(days=20))
    answer = availability(owners[1], soon)
    assert codes(answer) == ["too_late_to_book"]
    assert answer["reasons"][0]["details"]["min_notice_minutes"] == 120
    answer = availability(owners[1], far)
    assert codes(answer) == ["beyond_booking_horizon"]
    assert answer["reasons"][0]["details"]["booking_horizon_days"] == 10


def test_started_and_inactive_clinic(owners, slot):
    past = SlotFactory(service=slot.service, start_at=timezone.now() - dt.timedelta(minutes=5))
    assert codes(availability(owners[1], past)) == ["slot_started"]
    slot.clinic.active = False
    slot.clinic.save()
    assert codes(availability(owners[1], slot)) == ["clinic_inactive"]


def test_species_and_someone_elses_pet(owners, clinic):
    service = ClinicServiceFactory(clinic=clinic, species=["cat"])
    cats_only = SlotFactory(service=service)
    answer = availability(owners[1], cats_only, pet_id="pet-1")
    assert codes(answer) == ["species_not_accepted"]
    assert answer["reasons"][0]["details"]["accepted"] == ["cat"]
    assert codes(availability(owners[1], cats_only, pet_id="pet-2")) == ["invalid_pet"]
    LocalPetFactory(owner__id="owner-1", id="cat-1", species="cat")
    assert availability(owners[1], cats_only, pet_id="cat-1")["bookable"] is True


def test_already_booked_by_you(owners, clinic_service):
    roomy = SlotFactory(service=clinic_service, capacity=3)
    held = hold(owners[1], roomy, "pet-1")
    booked = owners[1].post(f"/api/v1/reservations/{held.json()['id']}/confirm")
    assert booked.status_code == 201
    answer = availability(owners[1], roomy)
    # Information, not a refusal: the owner's hold (another pet, or the same pet again: the
    # per-day limit is the confirm's) would be made, so the slot is bookable.
    assert answer["bookable"] is True
    assert answer["reasons"] == []
    assert [note["code"] for note in answer["notes"]] == ["already_booked"]
    assert answer["notes"][0]["details"]["reference"] == booked.json()["reference"]
    assert hold(owners[1], roomy, "pet-1").status_code == 201
    assert availability(owners[2], roomy)["bookable"] is True
    assert availability(owners[2], roomy)["notes"] == []


def test_unknown_or_malformed_slot_is_404_and_anonymous_401(owners, slot, anon_client):
    for path in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = owners[1].get(f"/api/v1/slots/{path}/availability")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert anon_client.get(f"/api/v1/slots/{slot.id}/availability").status_code == 401
    staff = api_client_for(sub="staff-1", roles=["clinic_staff"], clinic_ids=[slot.clinic_id])
    assert staff.get(f"/api/v1/slots/{slot.id}/availability").status_code == 200


def test_your_limit(owners, clinic_service, settings):
    settings.FAIR_USE_MAX_LIVE_HOLDS = 1
    first, second = SlotFactory(service=clinic_service), SlotFactory(service=clinic_service)
    assert hold(owners[1], first, "pet-1").status_code == 201
    answer = availability(owners[1], second)
    assert codes(answer) == ["limit_exceeded"]
    assert answer["reasons"][0]["details"] == {"limit": "live_holds_per_owner", "max": 1}
    assert availability(owners[2], second)["bookable"] is True
