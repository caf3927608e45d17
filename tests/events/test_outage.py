"""At-least-once under real faults: RabbitMQ stopped while bookings are made, and a relay
process killed between the broker's confirm and the commit that marks the events."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter

import pytest
from django.conf import settings

from petpro_booking.events.models import Event
from petpro_booking.events.relay import outbox_relay
from petpro_booking.events.selectors import outbox_backlog

from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory
from .conftest import child_process_env, slot_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.fault
def test_bookings_made_while_rabbitmq_is_down_are_all_published_after_it_returns(
    broker_tap, relay_on_commit, stop_rabbitmq, clinic_service
):
    LocalPetFactory(id="pet-1", owner__id="owner-1")
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])
    slots = [SlotFactory(service=clinic_service) for _ in range(4)]
    with stop_rabbitmq():
        for slot in slots:
            hold = owner.post(
                "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
            )
            assert hold.status_code == 201, hold.json()
            booked = owner.post(f"/api/v1/reservations/{hold.json()['id']}/confirm")
            assert booked.status_code == 201, booked.json()
        # Every nudge and a sweep failed: nothing is marked published, nothing is lost.
        report = outbox_relay()
        assert report.broker_error
        assert report.published == 0
        events = list(Event.objects.order_by("id"))
        assert events
        assert all(event.published_at is None for event in events)
        assert outbox_backlog().unpublished == len(events)
        assert all(event.publish_attempts >= 1 for event in events)
    assert broker_tap.drain(timeout=1) == []  # nothing slipped out during the outage

    report = outbox_relay()  # the beat sweep after the broker is back
    assert report.published == len(events)
    confirmed = sum(event.event_type == "BookingConfirmed" for event in events)
    expected = len(events) + 2 * confirmed  # analytics + email and push per confirmation
    messages = broker_tap.drain(expect=expected)
    analytics = Counter(
        m.message_id for m in messages if m.routing_key == "booking.events.analytics"
    )
    assert analytics == Counter({str(event.event_id): 1 for event in events})
    assert len(messages) == expected
    assert outbox_backlog().unpublished == 0


CRASHING_RELAY = textwrap.dedent(
    """
    import os

    import django

    django.setup()

    from integrations.messaging.client import publisher_get
    from petpro_booking.events.relay import outbox_relay


    class DiesAfterPublishing:
        def __init__(self, inner):
            self.inner = inner

        def publish(self, messages):
            self.inner.publish(messages)  # returns once the broker confirmed every message
            os._exit(17)  # killed before the transaction that marks them commits


    outbox_relay(publisher=DiesAfterPublishing(publisher_get()))
    """
)


def test_a_relay_killed_between_publish_and_mark_causes_duplicates_not_losses(broker_tap):
    for index in range(3):
        slot_events(f"slot-crash-{index}", 4)
    env = child_process_env()
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RELAY],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert crashed.returncode == 17, crashed.stderr.decode()[-2000:]
    first = broker_tap.drain(expect=12)
    assert len(first) == 12
    assert Event.objects.filter(published_at__isnull=True).count() == 12  # never marked

    assert outbox_relay().published == 12
    second = broker_tap.drain(expect=12)
    delivered = Counter(m.message_id for m in first + second)
    assert set(delivered) == {str(e) for e in Event.objects.values_list("event_id", flat=True)}
    assert set(delivered.values()) == {2}  # each one duplicated, with the same message_id
    assert outbox_backlog().unpublished == 0
