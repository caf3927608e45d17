"""Owners see what is theirs to see (issue 12, point 6): history shown to an owner carries the
actor's role, never a staff member's id; an internal note is kept apart from the public reason
and never shown to the owner (nor put into the owner's notification)."""

from __future__ import annotations

import json

import pytest

from bookings.models import BookingHistory

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


def test_internal_note_is_not_in_the_owners_notification(booking, staff_client):
    from integrations.messaging.messages import TEMPLATE_FIELDS

    staff_client.post(
        f"/api/v1/bookings/{booking.id}/cancel",
        {"reason": "Closed.", "internal_note": "secret"},
        format="json",
    )
    assert "internal_note" not in TEMPLATE_FIELDS["booking_cancelled"]
