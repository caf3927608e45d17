"""The waiting list's events through the real relay and RabbitMQ: every message valid against
its JSON Schema, and the offer notified as `waitlist_offer` with the expiry in clinic time."""

from __future__ import annotations

from collections import defaultdict

import pytest

from integrations.messaging.messages import notification_template
from integrations.messaging.validation import message_errors
from petpro_booking.events.models import Event
from petpro_booking.events.relay import outbox_relay
from reservations.models import Reservation

from ..factories import LocalPetFactory, SlotFactory
from ..waitlist.conftest import hold, join, owner_client_n
from .test_relay import as_schema_message

pytestmark = pytest.mark.django_db(transaction=True)


def test_waitlist_events_and_the_offer_notification_are_valid(broker_tap, clinic_service):
    for index in (1, 2, 3):
        LocalPetFactory(
            owner__id=f"owner-{index}", owner__channels=["email"], id=f"pet-{index}", name="Mia"
        )
    clients = {index: owner_client_n(index) for index in (1, 2, 3)}
    slot = SlotFactory(service=clinic_service)
    held = hold(clients[1], slot, "pet-1").json()
    first = join(clients[2], slot, "pet-2").json()
    join(clients[3], slot, "pet-3")
    clients[1].delete(f"/api/v1/reservations/{held['id']}")  # offered to owner-2
    clients[2].delete(f"/api/v1/waitlist/{first['id']}")  # declined: to owner-3
    outbox_relay()

    events = list(Event.objects.all())
    waitlist_types = sorted(e.event_type for e in events if e.aggregate_type == "waitlist_entry")
    assert waitlist_types == [
        "WaitlistJoined",
        "WaitlistJoined",
        "WaitlistLeft",
        "WaitlistOffered",
        "WaitlistOffered",
    ]
    offers = sum(e.event_type == "WaitlistOffered" for e in events)
    notes_expected = offers + sum(e.event_type == "ReservationExpired" for e in events)
    messages = broker_tap.drain(expect=len(events) + notes_expected)
    for message in messages:
        assert message_errors(as_schema_message(message)) == []
    by_template = defaultdict(list)
    for message in messages:
        if message.routing_key.startswith("booking.notification."):
            by_template[message.body["template"]].append(message)
    offered = sorted(by_template["waitlist_offer"], key=lambda m: m.body["recipient"]["user_id"])
    assert [m.body["recipient"]["user_id"] for m in offered] == ["owner-2", "owner-3"]
    note = offered[1]
    hold_row = Reservation.objects.get(id=note.body["data"]["reservation_id"])
    assert hold_row.user_id == "owner-3"
    # The expiry in the clinic's time zone (Europe/Berlin in the fixtures): +01:00 or +02:00.
    assert note.body["data"]["expires_local"][-6:] in ("+01:00", "+02:00")
    assert note.body["channel"] == "email"
    assert "waiting list" in note.body["text"]
    # The service made the offer (issue 12: the actor's role, never an id).
    assert {m.body["actor"]["type"] for m in offered} == {"system"}


def test_an_offer_withdrawn_by_a_closed_slot_is_notified(broker_tap, clinic_service):
    from bookings.services import booking_cancel_slot_visits

    from ..bookings.conftest import staff_of

    for index in (1, 2):
        LocalPetFactory(
            owner__id=f"owner-{index}", owner__channels=["email"], id=f"pet-{index}", name="Mia"
        )
    clients = {index: owner_client_n(index) for index in (1, 2)}
    slot = SlotFactory(service=clinic_service, capacity=1)
    held = hold(clients[1], slot, "pet-1").json()
    entry = join(clients[2], slot, "pet-2").json()
    clients[1].delete(f"/api/v1/reservations/{held['id']}")  # offered to owner-2
    booking_cancel_slot_visits(actor=staff_of(slot.clinic_id), slot_id=slot.id, reason="vet ill")
    outbox_relay()

    events = list(Event.objects.all())
    notifying = [e for e in events if notification_template(e.event_type, e.payload)]
    messages = broker_tap.drain(expect=len(events) + len(notifying))
    for message in messages:
        assert message_errors(as_schema_message(message)) == []
    notes = {
        message.body["template"]: message
        for message in messages
        if message.routing_key.startswith("booking.notification.")
    }
    assert sorted(notes) == ["waitlist_offer", "waitlist_offer_withdrawn"]
    withdrawn = notes["waitlist_offer_withdrawn"]
    assert withdrawn.body["recipient"]["user_id"] == "owner-2"
    assert withdrawn.body["data"]["entry_id"] == entry["id"]
    assert withdrawn.body["booking_id"] is None
    assert "keep your place on the waiting list" in withdrawn.body["text"]
    assert withdrawn.body["actor"]["type"] == "system"


def test_an_offer_that_lapsed_is_told_by_its_hold_alone():
    # Its hold's ReservationExpired tells the owner; the entry's own event notifies no one.
    assert notification_template("WaitlistOfferExpired", {"reason": ""}) is None
    assert notification_template("ReservationExpired", {}) == "reservation_expired"
    assert notification_template("WaitlistOfferExpired", {"reason": "slot_closed"}) == (
        "waitlist_offer_withdrawn"
    )
