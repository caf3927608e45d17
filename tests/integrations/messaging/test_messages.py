"""The message builder and the JSON Schemas: analytics for every event, notifications for the
events an owner cares about, on the channels they prefer, validated before publishing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest

from integrations.messaging.messages import (
    CHANNELS,
    DomainEvent,
    analytics_message,
    messages_for,
    notification_messages,
)
from integrations.messaging.preferences import notification_channels
from integrations.messaging.validation import message_errors
from petpro_booking.core import crypto
from petpro_booking.core.crypto import owner_key

from ...factories import LocalUserFactory

OCCURRED = dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)
METADATA = {
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "correlation_id": "c0ffee00-0000-4000-8000-000000000001",
    "actor": {"type": "user", "id": "owner-1"},
}


def appointment(**overrides) -> dict:
    data = {
        "clinic_id": "clinic-berlin",
        "clinic_name": "Berlin Vet",
        "clinic_timezone": "Europe/Berlin",
        "service_id": "svc-checkup",
        "service_name": "Check-up",
        "slot_id": str(uuid.uuid4()),
        "start_at": "2026-03-29T08:00:00+00:00",
        "end_at": "2026-03-29T08:30:00+00:00",
        "start_local": "2026-03-29T10:00:00+02:00",
        "user_id": "owner-1",
        "pet_id": "pet-1",
        "pet_name": "Rex",
    }
    data.update(overrides)
    return data


def booking_event(event_type: str = "BookingConfirmed", **data_overrides) -> DomainEvent:
    booking_id = str(uuid.uuid4())
    data = {
        "booking_id": booking_id,
        "reference": "PP-7K3F9Q",
        "reservation_id": str(uuid.uuid4()),
        "status": "confirmed",
        "from_status": "",
        "amount": "45.00",
        "currency": "EUR",
        **appointment(),
    }
    data.update(data_overrides)
    return DomainEvent(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        aggregate_type="booking",
        aggregate_id=booking_id,
        occurred_at=OCCURRED,
        data=data,
        metadata=METADATA,
    )


def test_analytics_message_has_exactly_the_design_fields_and_is_valid():
    event = booking_event("BookingCreated")
    message = analytics_message(event)
    assert message.routing_key == "booking.events.analytics"
    assert message.message_id == event.event_id
    assert set(message.body) == {
        "message_id",
        "event_type",
        "occurred_at",
        "schema_version",
        "aggregate_type",
        "aggregate_id",
        "data",
        "metadata",
    }
    assert message.body["occurred_at"] == "2026-03-28T23:30:00+00:00"
    owner = owner_key("owner-1")
    assert message.body["metadata"] == {**METADATA, "actor": {"type": "user", "id": owner}}
    assert message.body["data"]["reference"] == "PP-7K3F9Q"
    assert message_errors(message) == []


def test_analytics_carries_pseudonymous_keys_never_the_owner_or_the_pet(settings):
    event = booking_event("BookingCancelled", reason="Rex bit the postman")
    data = analytics_message(event).body["data"]
    assert {"user_id", "pet_id", "pet_name", "reason"}.isdisjoint(data)
    assert data["owner_key"] == owner_key("owner-1")
    assert "owner-1" not in json.dumps(analytics_message(event).body)
    assert "Rex" not in json.dumps(analytics_message(event).body)
    # Rotation: a new key in front changes every key (and the key id before the dot).
    settings.ANALYTICS_PSEUDONYM_KEYS = ["new-key", "old-key"]
    crypto.reset_keys()
    try:
        rotated = analytics_message(event).body["data"]["owner_key"]
    finally:
        crypto.reset_keys()
    assert rotated.split(".")[0] != data["owner_key"].split(".")[0]
    assert rotated != data["owner_key"]


def test_analytics_with_a_raw_owner_id_breaks_the_schema():
    message = analytics_message(booking_event("BookingCreated"))
    message.body["data"]["user_id"] = "owner-1"
    assert message_errors(message)


def test_booking_analytics_without_reference_breaks_the_schema():
    event = booking_event("BookingCreated")
    del event.data["reference"]
    problems = message_errors(analytics_message(event))
    assert problems == ['data: "reference" is a required property']


@pytest.mark.parametrize(
    ("event_type", "template"),
    [
        ("BookingConfirmed", "booking_confirmed"),
        ("BookingCancelled", "booking_cancelled"),
        ("AppointmentReminderDue", "appointment_reminder"),
    ],
)
def test_notification_per_channel_names_its_template_and_carries_what_it_needs(
    event_type, template
):
    event = booking_event(event_type, reason="Owner is ill", refund_requested=False)
    messages = notification_messages(event, channels=("email", "sms"))
    assert [m.routing_key for m in messages] == [
        "booking.notification.email",
        "booking.notification.sms",
    ]
    for message in messages:
        body = message.body
        assert message_errors(message) == []
        assert body["template"] == template
        assert body["recipient"] == {"user_id": "owner-1"}
        assert body["booking_id"] == event.data["booking_id"]
        assert body["reference"] == "PP-7K3F9Q"
        assert body["data"]["clinic_name"] == "Berlin Vet"
        assert body["data"]["service_name"] == "Check-up"
        assert body["data"]["start_local"] == "2026-03-29T10:00:00+02:00"
        assert body["data"]["pet_name"] == "Rex"
    # One message_id per message, the same on every rebuild (a re-delivery is recognisable).
    ids = [m.message_id for m in messages]
    assert len(set(ids)) == 2
    assert event.event_id not in ids
    assert ids == [m.message_id for m in notification_messages(event, channels=("email", "sms"))]
    if template == "booking_cancelled":
        assert messages[0].body["data"]["reason"] == "Owner is ill"


def test_rescheduled_notification_carries_old_and_new_local_time():
    event = booking_event(
        "BookingRescheduled",
        previous_slot_id=str(uuid.uuid4()),
        previous_start_at="2026-03-28T08:00:00+00:00",
    )
    (message,) = notification_messages(event, channels=("push",))
    assert message_errors(message) == []
    # Derived in the clinic's zone when the payload lacks it: the day before DST, +01:00.
    assert message.body["data"]["previous_start_local"] == "2026-03-28T09:00:00+01:00"
    assert message.body["data"]["start_local"] == "2026-03-29T10:00:00+02:00"


def test_expired_hold_notification_has_no_booking():
    reservation_id = str(uuid.uuid4())
    event = DomainEvent(
        event_id=str(uuid.uuid4()),
        event_type="ReservationExpired",
        aggregate_type="reservation",
        aggregate_id=reservation_id,
        occurred_at=OCCURRED,
        data={
            "reservation_id": reservation_id,
            "status": "expired",
            "expires_at": "2026-03-28T23:29:00+00:00",
            **appointment(),
        },
        metadata=METADATA,
    )
    messages = messages_for(event, channels_of=lambda user_id: CHANNELS)
    assert [m.kind for m in messages] == [
        "analytics",
        "notification",
        "notification",
        "notification",
    ]
    for message in messages:
        assert message_errors(message) == []
    assert messages[1].body["booking_id"] is None
    assert messages[1].body["template"] == "reservation_expired"


def test_notification_missing_pet_name_is_invalid():
    event = booking_event(pet_name=None)
    (message,) = notification_messages(event, channels=("email",))
    assert message_errors(message) == ['data: "pet_name" is a required property']


def acted_by(event: DomainEvent, actor: dict | None) -> DomainEvent:
    metadata = {**METADATA, "actor": actor} if actor is not None else {}
    return dataclasses.replace(event, metadata=metadata)


@pytest.mark.parametrize(
    ("actor", "role"),
    [
        ({"type": "user", "id": "owner-1"}, "user"),
        ({"type": "staff", "id": "staff-7"}, "staff"),
        ({"type": "support", "id": "admin:3"}, "support"),
        ({"type": "system", "id": "booking-service"}, "system"),
        (None, "system"),  # an event written before events carried an actor
    ],
)
def test_notification_names_the_actors_role_and_no_id(actor, role):
    event = acted_by(booking_event("BookingCancelled", reason="Closed today"), actor)
    (message,) = notification_messages(event, channels=("email",))
    assert message.body["actor"] == {"type": role}
    assert message_errors(message) == []
    if actor is not None and actor["type"] != "user":
        assert actor["id"] not in json.dumps(message.body)


def test_staff_cancel_notification_carries_the_reason_never_the_internal_note():
    event = acted_by(
        booking_event(
            "BookingCancelled",
            reason="The vet is ill today.",
            internal_note="Owner was rude on the phone.",
            refund_requested=True,
        ),
        {"type": "staff", "id": "staff-7"},
    )
    messages = messages_for(event, channels_of=lambda user_id: CHANNELS)
    notes = [m for m in messages if m.kind == "notification"]
    assert len(notes) == 3
    for note in notes:
        assert message_errors(note) == []
        assert note.body["actor"] == {"type": "staff"}
        assert note.body["data"]["reason"] == "The vet is ill today."
        assert "The vet is ill today." in note.body["text"]
        text = json.dumps(note.body)
        assert "staff-7" not in text
        assert "rude" not in text
        assert "internal_note" not in text


def test_the_schema_refuses_an_actor_id_or_an_internal_note_in_a_notification():
    (message,) = notification_messages(booking_event("BookingCancelled"), channels=("sms",))
    message.body["actor"] = {"type": "staff", "id": "staff-7"}
    assert message_errors(message)
    message.body["actor"] = {"type": "receptionist"}
    assert message_errors(message)
    del message.body["actor"]
    assert message_errors(message) == ['(message): "actor" is a required property']
    (message,) = notification_messages(booking_event("BookingCancelled"), channels=("sms",))
    message.body["data"]["internal_note"] = "Owner was rude."
    assert message_errors(message)


def test_events_without_a_template_only_go_to_analytics():
    event = booking_event("BookingCreated")
    messages = messages_for(event, channels_of=lambda user_id: CHANNELS)
    assert [m.routing_key for m in messages] == ["booking.events.analytics"]


def test_channels_follow_the_owners_preferences(db):
    LocalUserFactory(id="owner-email-only", channels=["email"])
    LocalUserFactory(id="owner-no-choice", channels=[])
    assert notification_channels(user_id="owner-email-only") == ("email",)
    # The local adapter reads an empty choice as "no preference": every channel.
    assert notification_channels(user_id="owner-no-choice") == CHANNELS
    assert notification_channels(user_id="nobody-knows-them") == CHANNELS


def test_channels_are_all_three_when_the_user_service_is_down(db, settings):
    settings.USER_SERVICE_URL = "http://127.0.0.1:9"  # nothing listens: connection refused
    settings.SERVICE_CALL_RETRIES = 0
    assert notification_channels(user_id="owner-1") == CHANNELS
