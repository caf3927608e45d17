"""Owners see what is theirs to see (issue 12, point 6): history shown to an owner carries the
actor's role, never a staff member's id; an internal note is kept apart from the public reason
and never shown to the owner (nor put into the owner's notification)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from bookings.models import Booking, BookingHistory
from bookings.services import booking_cancel_for_payment_deadline
from integrations.messaging.messages import CHANNELS, messages_for
from integrations.messaging.validation import message_errors
from petpro_booking.events.models import Event
from petpro_booking.events.relay import domain_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_cancel_shows_the_owner_a_role_and_the_public_reason_only(
    booking, owner_client, staff_client
):
    response = staff_client.post(
        f"/api/v1/bookings/{booking.id}/cancel",
        {"reason": "The vet is ill today.", "internal_note": "Owner was rude on the phone."},
        format="json",
    )
    assert response.status_code == 200, response.content

    row = BookingHistory.objects.get(booking=booking, to_status="cancelled")
    assert (row.reason, row.internal_note) == (
        "The vet is ill today.",
        "Owner was rude on the phone.",
    )

    seen_by_owner = owner_client.get(f"/api/v1/bookings/{booking.id}/history").json()
    text = json.dumps(seen_by_owner)
    assert "staff-1" not in text
    assert "rude" not in text
    cancelled = next(i for i in seen_by_owner["results"] if i["event_type"] == "BookingCancelled")
    assert cancelled["actor"] == {"type": "staff"}
    assert cancelled["data"]["reason"] == "The vet is ill today."
    created = seen_by_owner["results"][0]
    assert created["actor"] == {"type": "user", "id": "owner-1"}  # their own id stays

    seen_by_staff = staff_client.get(f"/api/v1/bookings/{booking.id}/history").json()
    cancelled = next(i for i in seen_by_staff["results"] if i["event_type"] == "BookingCancelled")
    assert cancelled["actor"] == {"type": "staff", "id": "staff-1"}
    assert cancelled["data"]["internal_note"] == "Owner was rude on the phone."


def owner_notifications(booking, event_type: str) -> list[dict]:
    """The notification messages the relay builds for the booking's stored event, checked
    against their JSON Schema."""
    event = Event.objects.get(aggregate_id=str(booking.id), event_type=event_type)
    built = messages_for(domain_event(event), channels_of=lambda user_id: CHANNELS)
    notes = [message for message in built if message.kind == "notification"]
    assert notes
    for note in notes:
        assert message_errors(note) == []
    return [note.body for note in notes]


def test_staff_cancel_notification_says_staff_and_never_carries_an_id_or_the_note(
    booking, staff_client
):
    response = staff_client.post(
        f"/api/v1/bookings/{booking.id}/cancel",
        {"reason": "The vet is ill today.", "internal_note": "Owner was rude on the phone."},
        format="json",
    )
    assert response.status_code == 200, response.content
    # The event keeps the staff id and the note (staff's history view needs them)...
    stored = Event.objects.get(aggregate_id=str(booking.id), event_type="BookingCancelled")
    assert stored.metadata["actor"] == {"type": "staff", "id": "staff-1"}
    assert stored.payload["internal_note"] == "Owner was rude on the phone."
    # ...the owner's notification has the role and the public reason only.
    for body in owner_notifications(booking, "BookingCancelled"):
        assert body["actor"] == {"type": "staff"}
        assert body["data"]["reason"] == "The vet is ill today."
        text = json.dumps(body)
        assert "staff-1" not in text
        assert "rude" not in text
        assert "internal_note" not in text


def test_the_owners_own_cancel_is_notified_as_user(booking, owner_client):
    response = owner_client.post(
        f"/api/v1/bookings/{booking.id}/cancel", {"reason": "Rex is better."}, format="json"
    )
    assert response.status_code == 200, response.content
    for body in owner_notifications(booking, "BookingCancelled"):
        assert body["actor"] == {"type": "user"}
    (confirmed, *_) = owner_notifications(booking, "BookingConfirmed")
    assert confirmed["actor"] == {"type": "user"}


def test_a_support_reschedule_is_notified_as_support(booking, second_slot, support_client):
    response = support_client.post(
        f"/api/v1/bookings/{booking.id}/reschedule",
        {"slot_id": str(second_slot.id), "reason": "The vet asked for a later time."},
        format="json",
    )
    assert response.status_code == 200, response.content
    for body in owner_notifications(booking, "BookingRescheduled"):
        assert body["actor"] == {"type": "support"}
        assert "support-1" not in json.dumps(body)


def test_a_payment_deadline_cancel_is_notified_as_system(unpaid_booking):
    Booking.objects.filter(id=unpaid_booking.id).update(
        payment_deadline_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert booking_cancel_for_payment_deadline(booking_id=unpaid_booking.id) == "cancelled"
    for body in owner_notifications(unpaid_booking, "BookingCancelled"):
        assert body["actor"] == {"type": "system"}
        assert "booking-service" not in json.dumps(body)


@pytest.fixture
def both():
    """The owner's token with the staff role of another clinic (staff with a pet of their own)."""
    from ..conftest import api_client_for

    return api_client_for(
        sub="owner-1", roles=["pet_owner", "clinic_staff"], clinic_ids=["clinic-elsewhere"]
    )


def test_an_owner_who_is_staff_elsewhere_sees_their_own_booking_as_an_owner(
    booking, staff_client, both
):
    """One token may carry both roles: staff of another clinic booking a visit for their own
    pet. At the booking's clinic they are its owner: roles only, no internal note, and a note
    they send themselves is not kept (only staff of the booking's clinic write one)."""
    response = staff_client.post(
        f"/api/v1/bookings/{booking.id}/cancel",
        {"reason": "The vet is ill today.", "internal_note": "Owner was rude on the phone."},
        format="json",
    )
    assert response.status_code == 200, response.content

    seen = both.get(f"/api/v1/bookings/{booking.id}/history")
    assert seen.status_code == 200, seen.content
    text = json.dumps(seen.json())
    assert "staff-1" not in text
    assert "rude" not in text
    cancelled = next(i for i in seen.json()["results"] if i["event_type"] == "BookingCancelled")
    assert cancelled["actor"] == {"type": "staff"}
    # Staff of the booking's clinic still see it whole.
    whole = staff_client.get(f"/api/v1/bookings/{booking.id}/history").json()
    assert "rude" in json.dumps(whole)


def test_an_owner_who_is_staff_elsewhere_writes_no_internal_note(booking, both):
    response = both.post(
        f"/api/v1/bookings/{booking.id}/cancel",
        {"reason": "Rex is better.", "internal_note": "A note only staff would keep."},
        format="json",
    )
    assert response.status_code == 200, response.content
    row = BookingHistory.objects.get(booking=booking, to_status="cancelled")
    assert row.internal_note == ""
    stored = Event.objects.get(aggregate_id=str(booking.id), event_type="BookingCancelled")
    assert "internal_note" not in stored.payload
    # At this clinic they acted as its owner: history and the event say so.
    assert (row.actor_type, row.actor_id) == ("user", "owner-1")
    assert stored.metadata["actor"] == {"type": "user", "id": "owner-1"}


def test_staff_of_the_clinic_who_also_own_a_pet_keep_their_internal_note(booking):
    """The other way round: staff of the booking's clinic whose token also has the owner role
    (they have a pet of their own) act as staff here, and their note is kept."""
    from ..conftest import api_client_for

    staff_with_a_pet = api_client_for(
        sub="staff-2", roles=["pet_owner", "clinic_staff"], clinic_ids=[booking.clinic_id]
    )
    response = staff_with_a_pet.post(
        f"/api/v1/bookings/{booking.id}/cancel",
        {"reason": "The vet is ill today.", "internal_note": "Called twice, no answer."},
        format="json",
    )
    assert response.status_code == 200, response.content
    row = BookingHistory.objects.get(booking=booking, to_status="cancelled")
    assert row.internal_note == "Called twice, no answer."
    history = staff_with_a_pet.get(f"/api/v1/bookings/{booking.id}/history").json()
    cancelled = next(i for i in history["results"] if i["event_type"] == "BookingCancelled")
    assert cancelled["data"]["internal_note"] == "Called twice, no answer."


def test_staff_booking_their_own_pet_are_written_as_its_owner(owner_pet, slot):
    """Holding, confirming and releasing one's own pet's visit are an owner's acts, whatever
    else the token may do: history and events say "user", so the owner's notifications do
    not say that staff did it."""
    from ..conftest import api_client_for

    both = api_client_for(
        sub="owner-1", roles=["pet_owner", "clinic_staff"], clinic_ids=[slot.clinic_id]
    )
    held = both.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert held.status_code == 201, held.content
    hold_id = held.json()["id"]
    confirmed = both.post(f"/api/v1/reservations/{hold_id}/confirm")
    assert confirmed.status_code == 201, confirmed.content
    booking_id = confirmed.json()["id"]
    events = Event.objects.filter(aggregate_id__in=[hold_id, booking_id])
    assert {tuple(sorted(e.metadata["actor"].items())) for e in events} == {
        (("id", "owner-1"), ("type", "user"))
    }
    row = BookingHistory.objects.get(booking_id=booking_id)
    assert (row.actor_type, row.actor_id) == ("user", "owner-1")
