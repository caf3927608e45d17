"""The outbox relay against the real RabbitMQ: a booking's whole life arrives on the right
queues with valid schemas, in order per aggregate, published once by concurrent relays, and a
message that breaks its schema is set aside without holding up the events behind it."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from bookings.reminders import appointment_reminders_send
from integrations.messaging.client import BrokerPublisher
from integrations.messaging.messages import OutboundMessage
from integrations.messaging.validation import message_errors
from petpro_booking.core import metrics
from petpro_booking.events.models import Event
from petpro_booking.events.relay import outbox_relay
from petpro_booking.events.selectors import outbox_backlog
from petpro_booking.events.services import event_append
from reservations.models import Reservation
from reservations.services import reservation_expire_due

from ..bookings.conftest import book_on
from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory
from .conftest import slot_events

pytestmark = pytest.mark.django_db(transaction=True)


def as_schema_message(tapped) -> OutboundMessage:
    kind = "analytics" if tapped.routing_key == "booking.events.analytics" else "notification"
    return OutboundMessage(
        kind=kind,
        routing_key=tapped.routing_key,
        message_id=tapped.message_id,
        event_type=tapped.properties["type"],
        body=tapped.body,
    )


def test_a_bookings_whole_life_arrives_on_the_right_queues(
    broker_tap, relay_on_commit, clinic_service
):
    # The owner wants email and push only, in Indonesian (User Service preferences, local
    # adapter here).
    LocalPetFactory(
        id="pet-1",
        owner__id="owner-1",
        owner__channels=["email", "push"],
        owner__locale="id",
        name="Rex",
    )
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])
    staff = api_client_for(
        sub="staff-1", roles=["clinic_staff"], clinic_ids=[clinic_service.clinic_id]
    )
    first, second, third = (SlotFactory(service=clinic_service) for _ in range(3))

    hold = owner.post(
        "/api/v1/reservations", {"slot_id": str(first.id), "pet_id": "pet-1"}, format="json"
    )
    assert hold.status_code == 201, hold.json()
    booking = owner.post(f"/api/v1/reservations/{hold.json()['id']}/confirm")
    assert booking.status_code == 201, booking.json()
    booking_id = booking.json()["id"]
    moved = owner.post(
        f"/api/v1/bookings/{booking_id}/reschedule", {"slot_id": str(second.id)}, format="json"
    )
    assert moved.status_code == 200, moved.json()
    cancelled = staff.post(
        f"/api/v1/bookings/{booking_id}/cancel",
        {"reason": "Vet is ill", "internal_note": "Owner shouted at reception"},
        format="json",
    )
    assert cancelled.status_code == 200, cancelled.json()
    # A second hold that is left to expire.
    lapsed = owner.post(
        "/api/v1/reservations", {"slot_id": str(third.id), "pet_id": "pet-1"}, format="json"
    )
    assert lapsed.status_code == 201
    Reservation.objects.filter(id=lapsed.json()["id"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert reservation_expire_due() == 1
    outbox_relay()  # the sweep (the nudges already published nearly everything)

    events = list(Event.objects.exclude(aggregate_type="slot").order_by("id"))
    assert all(event.published_at is not None for event in events)
    notifying = {"BookingConfirmed", "BookingRescheduled", "BookingCancelled", "ReservationExpired"}
    expected = len(events) + 2 * sum(event.event_type in notifying for event in events)
    slot_event_count = Event.objects.filter(aggregate_type="slot").count()
    messages = broker_tap.drain(expect=expected + slot_event_count)
    assert len(messages) == expected + slot_event_count

    for message in messages:
        assert message_errors(as_schema_message(message)) == []
        assert message.delivery_mode == 2
        assert message.properties["content_type"] == "application/json"

    analytics = [m for m in messages if m.routing_key == "booking.events.analytics"]
    assert {m.message_id for m in analytics} >= {str(e.event_id) for e in events}
    booking_analytics = [
        m.body["event_type"] for m in analytics if m.body["aggregate_id"] == booking_id
    ]
    assert booking_analytics == [
        "BookingCreated",
        "BookingConfirmed",
        "BookingRescheduled",
        "BookingCancelled",
    ]
    notes = [m for m in messages if m.routing_key.startswith("booking.notification.")]
    by_template = defaultdict(set)
    for note in notes:
        by_template[note.body["template"]].add(note.body["channel"])
    assert by_template == {
        "booking_confirmed": {"email", "push"},
        "booking_rescheduled": {"email", "push"},
        "booking_cancelled": {"email", "push"},
        "reservation_expired": {"email", "push"},
    }
    assert not [m for m in messages if m.routing_key == "booking.notification.sms"]
    cancel_note = next(n for n in notes if n.body["template"] == "booking_cancelled")
    assert cancel_note.body["reference"] == booking.json()["reference"]
    assert cancel_note.body["data"]["reason"] == "Vet is ill"
    assert cancel_note.body["data"]["pet_name"] == "Rex"
    assert cancel_note.body["data"]["clinic_name"] == clinic_service.clinic.name
    assert {n.body["language"] for n in notes} == {"id"}
    assert "dibatalkan" in cancel_note.body["text"]
    assert "Alasan: Vet is ill." in cancel_note.body["text"]
    # Who did it, as the owner may see it: a role, never the staff member's id, and never the
    # internal note (issue 12).
    cancel_notes = [n for n in notes if n.body["template"] == "booking_cancelled"]
    for note in cancel_notes:
        assert note.body["actor"] == {"type": "staff"}
        assert "staff-1" not in json.dumps(note.body)
        assert "shouted" not in json.dumps(note.body)
    roles = {n.body["template"]: n.body["actor"] for n in notes}
    assert roles == {
        "booking_confirmed": {"type": "user"},
        "booking_rescheduled": {"type": "user"},
        "booking_cancelled": {"type": "staff"},
        "reservation_expired": {"type": "system"},
    }
    # AMQP properties: message_id and type mirror the body.
    assert all(m.properties["message_id"] == m.body["message_id"] for m in messages)
    assert cancel_note.properties["type"] == "BookingCancelled"
    assert len({m.message_id for m in messages}) == len(messages)


def test_the_nudge_publishes_right_after_commit(broker_tap, relay_on_commit):
    slot_events("slot-nudged", 2)
    messages = broker_tap.drain(expect=2)
    assert [m.body["data"]["seq"] for m in messages] == [0, 1]
    assert outbox_backlog().unpublished == 0


def test_without_the_nudge_events_wait_for_the_sweep(broker_tap):
    slot_events("slot-waiting", 3)
    backlog = outbox_backlog()
    assert backlog.unpublished == 3
    assert backlog.oldest_age_seconds >= 0
    report = outbox_relay()
    assert (report.published, report.messages) == (3, 3)
    assert len(broker_tap.drain(expect=3)) == 3
    assert outbox_backlog().unpublished == 0


def test_order_per_aggregate_holds_with_small_batches_and_three_relays(broker_tap):
    aggregates = [f"slot-order-{index}" for index in range(6)]
    for round_ in range(8):  # interleaved: aggregate events are spread over the id range
        for aggregate_id in aggregates:
            with transaction.atomic():
                event_append(
                    aggregate_type="slot",
                    aggregate_id=aggregate_id,
                    event_type="SlotUpdated",
                    data={"slot_id": aggregate_id, "seq": round_},
                )
    errors: list[BaseException] = []

    def relay() -> None:
        publisher = BrokerPublisher(
            url=settings.EVENT_BROKER_URL, exchange_name=settings.EVENT_EXCHANGE
        )
        try:
            for _ in range(30):
                outbox_relay(publisher=publisher, batch_size=7)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            publisher.close()
            connections.close_all()

    threads = [threading.Thread(target=relay) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    messages = broker_tap.drain(expect=48)
    assert len(messages) == 48
    sequences = defaultdict(list)
    for message in messages:
        sequences[message.body["aggregate_id"]].append(message.body["data"]["seq"])
    assert sequences == {aggregate_id: list(range(8)) for aggregate_id in aggregates}


def test_two_relays_at_once_publish_every_event_exactly_once(broker_tap):
    for index in range(40):
        slot_events(f"slot-pair-{index}", 5)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def relay() -> None:
        publisher = BrokerPublisher(
            url=settings.EVENT_BROKER_URL, exchange_name=settings.EVENT_EXCHANGE
        )
        try:
            start.wait()
            while outbox_relay(publisher=publisher, batch_size=25).claimed:
                pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            publisher.close()
            connections.close_all()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    outbox_relay()  # anything both deferred (ordering) goes now
    messages = broker_tap.drain(expect=200)
    counts = Counter(m.message_id for m in messages)
    assert len(counts) == 200  # none skipped
    assert max(counts.values()) == 1  # none twice
    assert not Event.objects.filter(published_at__isnull=True).exists()


def test_an_invalid_message_is_set_aside_and_does_not_block_the_events_behind_it(broker_tap):
    invalid_before = metrics.RELAY_INVALID_MESSAGES.labels(kind="analytics")._value.get()
    with transaction.atomic():
        event_append(
            aggregate_type="booking",
            aggregate_id="3a1d8b52-0000-4000-8000-000000000001",
            event_type="BookingCreated",
            data={"booking_id": "3a1d8b52-0000-4000-8000-000000000001"},  # no reference
        )
    slot_events("slot-after-poison", 2)
    with transaction.atomic():
        event_append(
            aggregate_type="booking",
            aggregate_id="3a1d8b52-0000-4000-8000-000000000001",
            event_type="BookingPaid",
            data={"booking_id": "3a1d8b52-0000-4000-8000-000000000001", "reference": "PP-7K3F9Q"},
        )
    report = outbox_relay()
    assert (report.published, report.failed, report.invalid_messages) == (3, 1, 1)
    messages = broker_tap.drain(expect=3)
    assert sorted(m.body["event_type"] for m in messages) == [
        "BookingPaid",
        "SlotUpdated",
        "SlotUpdated",
    ]
    poison = Event.objects.get(event_type="BookingCreated")
    assert poison.published_at is None
    assert poison.failed_at is not None
    assert '"reference" is a required property' in poison.last_error
    assert (
        metrics.RELAY_INVALID_MESSAGES.labels(kind="analytics")._value.get() == invalid_before + 1
    )
    backlog = outbox_backlog()
    assert (backlog.unpublished, backlog.failed) == (0, 1)
    # The next sweep leaves it aside instead of retrying it forever.
    assert outbox_relay().claimed == 0


def test_an_invalid_notification_keeps_the_valid_analytics_message(broker_tap, owner_pet, slot):
    data = {
        "booking_id": "3a1d8b52-0000-4000-8000-000000000002",
        "reference": "PP-7K3F9Q",
        "user_id": "owner-1",
        "clinic_id": "clinic-berlin",
    }  # no clinic name, service, times, pet: nothing to tell the owner with
    with transaction.atomic():
        event_append(
            aggregate_type="booking",
            aggregate_id=data["booking_id"],
            event_type="BookingConfirmed",
            data=data,
        )
    report = outbox_relay()
    assert (report.failed, report.messages) == (1, 1)
    messages = broker_tap.drain(expect=1)
    assert [m.routing_key for m in messages] == ["booking.events.analytics"]
    assert "booking.notification.email" in Event.objects.get().last_error


def test_a_due_reminder_becomes_appointment_reminder_notifications(
    broker_tap, owner_pet, clinic_service
):
    start = timezone.now() + dt.timedelta(hours=10)
    booking = book_on(
        SlotFactory(service=clinic_service, start_at=start, end_at=start + dt.timedelta(minutes=30))
    )
    assert appointment_reminders_send() == 1
    outbox_relay()
    notes = [
        m
        for m in broker_tap.drain()
        if m.routing_key.startswith("booking.notification.")
        and m.body["template"] == "appointment_reminder"
    ]
    assert sorted(n.body["channel"] for n in notes) == ["email", "push"]  # the owner's choice
    for note in notes:
        assert message_errors(as_schema_message(note)) == []
        assert note.body["reference"] == booking.reference
        assert note.body["data"]["pet_name"] == owner_pet.name
        assert (
            note.body["data"]["start_local"]
            == start.astimezone(ZoneInfo("Europe/Berlin")).isoformat()
        )


def test_an_event_whose_messages_cannot_be_built_is_set_aside(broker_tap):
    with transaction.atomic():
        event_append(
            aggregate_type="booking",
            aggregate_id="3a1d8b52-0000-4000-8000-000000000003",
            event_type="BookingConfirmed",
            data=["not", "an", "object"],  # type: ignore[arg-type]
        )
    slot_events("slot-after-unbuildable", 1)
    report = outbox_relay()
    assert (report.published, report.failed) == (1, 1)
    assert [m.body["event_type"] for m in broker_tap.drain(expect=1)] == ["SlotUpdated"]
    assert Event.objects.get(event_type="BookingConfirmed").last_error.startswith("build: ")


def test_a_batch_looks_each_owner_up_once_for_channels_and_language(
    broker_tap, clinic_service, monkeypatch
):
    """Every notification of an owner gets their channels and language, from one profile
    lookup per owner in the batch (the language was once a second lookup per event)."""
    from integrations.messaging import preferences
    from petpro_booking.core.principal import Principal

    from ..bookings.conftest import book_on

    LocalPetFactory(id="pet-a", owner__id="owner-a", owner__channels=["email"], owner__locale="id")
    LocalPetFactory(
        id="pet-b", owner__id="owner-b", owner__channels=["push", "sms"], owner__locale="en"
    )
    for owner, pet in (("owner-a", "pet-a"), ("owner-b", "pet-b")):
        principal = Principal(sub=owner, roles=frozenset({"pet_owner"}))
        for _ in range(3):
            book_on(SlotFactory(service=clinic_service), owner=principal, pet_id=pet)
    looked_up: list[str] = []
    real_user_get = preferences.user_get

    def counted(*, user_id: str):
        looked_up.append(user_id)
        return real_user_get(user_id=user_id)

    monkeypatch.setattr(preferences, "user_get", counted)
    report = outbox_relay()
    assert report.failed == 0
    assert report.published == Event.objects.count()
    assert sorted(looked_up) == ["owner-a", "owner-b"]  # once each, for 3 confirmations each
    notes = [
        m
        for m in broker_tap.drain(expect=report.messages)
        if m.routing_key.startswith("booking.notification.")
    ]
    by_owner = defaultdict(set)
    for note in notes:
        assert note.body["template"] == "booking_confirmed"
        owner = note.body["recipient"]["user_id"]
        by_owner[owner].add((note.body["channel"], note.body["language"]))
    assert by_owner == {"owner-a": {("email", "id")}, "owner-b": {("push", "en"), ("sms", "en")}}
    assert Counter(n.body["recipient"]["user_id"] for n in notes) == {"owner-a": 3, "owner-b": 6}


def _claimable_events() -> tuple[int, int]:
    """(unpublished events, how many of them another session could lock now), asked on a
    connection of its own: fewer means a relay holds claimed rows."""
    import psycopg

    from petpro_booking.events.listener import listen_conninfo

    # One statement, so one snapshot: an event that commits between two separate counts
    # (the late booking does, while another owner's look-up runs) would read as more free
    # than unpublished.
    with psycopg.connect(**listen_conninfo(), autocommit=True) as own:
        counts = own.execute(
            "WITH free AS (SELECT 1 FROM events"
            " WHERE published_at IS NULL AND failed_at IS NULL FOR UPDATE SKIP LOCKED)"
            " SELECT (SELECT count(*) FROM events"
            " WHERE published_at IS NULL AND failed_at IS NULL), (SELECT count(*) FROM free)"
        ).fetchone()
    assert counts is not None
    total, free = counts
    return total, free


def test_owners_are_looked_up_before_the_claim_and_the_claim_takes_no_other_owner(
    broker_tap, clinic_service, monkeypatch
):
    """The User Service is a network call: the relay asks it before it claims, never while it
    holds claimed rows (docs/architecture.md), and it claims only the events whose owners it
    looked up. An owner whose events commit after that look-up (here: during it) is left for
    the next pass, which looks them up; their notifications follow their preferences."""
    from integrations.messaging import preferences
    from petpro_booking.core.principal import Principal

    LocalPetFactory(id="pet-a", owner__id="owner-a", owner__channels=["email"])
    LocalPetFactory(id="pet-b", owner__id="owner-b", owner__channels=["email"])
    LocalPetFactory(id="pet-late", owner__id="owner-late", owner__channels=["sms"])
    for owner, pet in (("owner-a", "pet-a"), ("owner-b", "pet-b")):
        book_on(
            SlotFactory(service=clinic_service),
            owner=Principal(sub=owner, roles=frozenset({"pet_owner"})),
            pet_id=pet,
        )
    late_slot = SlotFactory(service=clinic_service)

    def book_late() -> None:
        try:
            book_on(
                late_slot,
                owner=Principal(sub="owner-late", roles=frozenset({"pet_owner"})),
                pet_id="pet-late",
            )
        finally:
            connections.close_all()

    looked_up: list[str] = []
    claimable_while_asked: list[tuple[int, int]] = []
    real_user_get = preferences.user_get
    one_check_at_a_time = threading.Lock()  # the look-ups overlap; each check locks rows

    def watched(*, user_id: str):
        with one_check_at_a_time:
            claimable_while_asked.append(_claimable_events())
        if user_id == "owner-a" and not late_slot.booked_count:
            late_slot.booked_count = 1
            booker = threading.Thread(target=book_late)  # commits while the look-up runs
            booker.start()
            booker.join()
        looked_up.append(user_id)
        return real_user_get(user_id=user_id)

    monkeypatch.setattr(preferences, "user_get", watched)
    first = outbox_relay()
    late_events = Event.objects.filter(payload__user_id="owner-late")
    assert late_events.exists()
    assert sorted(looked_up) == ["owner-a", "owner-b"]
    assert first.failed == 0
    assert first.published == Event.objects.count() - late_events.count()
    assert late_events.filter(published_at__isnull=True).count() == late_events.count()

    second = outbox_relay()
    assert second.published == late_events.count()
    assert looked_up[2:] == ["owner-late"]
    assert all(total == free for total, free in claimable_while_asked), claimable_while_asked
    late_notes = [
        m
        for m in broker_tap.drain(expect=first.messages + second.messages)
        if m.routing_key.startswith("booking.notification.")
        and m.body["recipient"]["user_id"] == "owner-late"
    ]
    assert [m.body["channel"] for m in late_notes] == ["sms"]


def test_a_batch_the_broker_confirms_in_part_marks_only_the_confirmed_events(
    broker_tap, private_exchange
):
    """RabbitMQ refuses messages once a queue they route to is full (x-overflow
    reject-publish): a real nack in the middle of a batch. The events whose messages were
    confirmed are published; the rest stay in the outbox with the error and one attempt more,
    and the next pass publishes them once there is room."""
    from kombu import Connection, Queue

    from integrations.messaging.client import event_exchange

    full = Queue(
        f"test.full.{private_exchange}",
        exchange=event_exchange(private_exchange),
        routing_key="booking.events.analytics",
        durable=False,
        auto_delete=False,
        queue_arguments={"x-max-length": 3, "x-overflow": "reject-publish"},
    )
    with Connection(settings.EVENT_BROKER_URL) as connection:
        full(connection.default_channel).declare()
    try:
        slot_events("slot-partly-confirmed", 6)  # one analytics message each, in order
        report = outbox_relay()
        assert report.published == 3
        assert report.broker_error
        events = list(Event.objects.filter(aggregate_id="slot-partly-confirmed").order_by("id"))
        assert [e.published_at is not None for e in events] == [True] * 3 + [False] * 3
        for event in events[3:]:
            assert event.publish_attempts == 1
            assert event.last_error == report.broker_error
            assert event.failed_at is None  # not set aside: tried again
        with Connection(settings.EVENT_BROKER_URL) as connection:
            full(connection.default_channel).purge()
        assert outbox_relay().published == 3
        assert not Event.objects.filter(published_at__isnull=True).exists()
    finally:
        with Connection(settings.EVENT_BROKER_URL) as connection:
            full(connection.default_channel).delete()
    ids = {m.message_id for m in broker_tap.drain(expect=6)}
    assert len(ids) == 6
