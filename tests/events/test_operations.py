"""Operating the outbox: backlog metric, `manage.py outbox` and `setup_broker`, the admin view
and its re-publish form, and the log sink of the embedded default."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import Client
from kombu import Connection

from integrations.messaging.messages import QUEUE_NAMES
from petpro_booking.events.models import Event
from petpro_booking.events.relay import outbox_relay
from petpro_booking.events.selectors import outbox_backlog

from .conftest import slot_events

pytestmark = pytest.mark.django_db(transaction=True)


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_backlog_is_exposed_as_metrics(anon_client):
    slot_events("slot-metrics", 3)
    text = anon_client.get("/metrics").content.decode()
    assert metric(text, "petpro_outbox_backlog") == 3
    assert metric(text, "petpro_outbox_oldest_age_seconds") >= 0
    outbox_relay()
    text = anon_client.get("/metrics").content.decode()
    assert metric(text, "petpro_outbox_backlog") == 0
    assert metric(text, "petpro_outbox_oldest_age_seconds") == 0
    assert metric(text, 'petpro_relay_events_published_total{event_type="SlotUpdated"}') >= 3


def test_outbox_command_shows_relays_and_republishes(broker_tap):
    slot_events("slot-command", 2)
    out = io.StringIO()
    call_command("outbox", "status", "--json", stdout=out)
    assert json.loads(out.getvalue())["unpublished"] == 2

    out = io.StringIO()
    call_command("outbox", "relay", stdout=out)
    assert json.loads(out.getvalue())["published"] == 2
    first = broker_tap.drain(expect=2)

    ids = sorted(Event.objects.values_list("id", flat=True))
    out = io.StringIO()
    call_command(
        "outbox",
        "republish",
        "--from-id",
        str(ids[0]),
        "--to-id",
        str(ids[-1]),
        "--relay",
        stdout=out,
    )
    assert "re-queued 2 event(s)" in out.getvalue()
    again = broker_tap.drain(expect=2)
    assert [m.message_id for m in again] == [m.message_id for m in first]

    out = io.StringIO()
    call_command("outbox", "status", stdout=out)
    assert "unpublished events: 0" in out.getvalue()


def test_setup_broker_declares_the_durable_queues(settings):
    out = io.StringIO()
    call_command("setup_broker", stdout=out)
    assert "booking.notification.email" in out.getvalue()
    with Connection(settings.EVENT_BROKER_URL) as connection:
        channel = connection.default_channel
        for name in QUEUE_NAMES:
            # passive: fails unless it exists; durable queues survive a broker restart
            assert channel.queue_declare(queue=name, passive=True).queue == name


@pytest.fixture
def support_admin(db) -> Client:
    user = User.objects.create_user("support-agent", password="x", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    client = Client()
    client.force_login(user)
    return client


def test_admin_shows_backlog_and_republishes_a_range(support_admin):
    slot_events("slot-admin", 3)
    outbox_relay(publisher=_NullPublisher())
    slot_events("slot-admin-2", 1)
    page = support_admin.get("/admin/events/event/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "<strong>1</strong> event(s) waiting for the relay" in text

    ids = sorted(Event.objects.values_list("id", flat=True))
    response = support_admin.post(
        "/admin/events/event/republish/", {"from_id": ids[0], "to_id": ids[1]}
    )
    assert response.status_code == 302
    assert outbox_backlog().unpublished == 3
    assert list(
        Event.objects.filter(published_at__isnull=True).order_by("id").values_list("id", flat=True)
    ) == [ids[0], ids[1], ids[3]]


def test_admin_outbox_is_for_support_only(support_admin):
    slot_events("slot-admin-refused", 2)
    outbox_relay(publisher=_NullPublisher())  # published: what a re-publish would re-queue
    published = dict(Event.objects.values_list("id", "published_at"))
    assert len(published) == 2
    assert None not in published.values()
    ids = sorted(published)
    staff = User.objects.create_user("clinic-staff", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/events/event/").status_code == 403

    response = client.post("/admin/events/event/republish/", {"from_id": ids[0], "to_id": ids[1]})

    assert response.status_code == 302
    assert response["Location"] == "/admin/"  # a page they may see, which shows the refusal
    assert dict(Event.objects.values_list("id", "published_at")) == published
    refusal = "Only support may re-publish events."
    assert [str(m) for m in get_messages(response.wsgi_request)] == [refusal]
    assert refusal in client.get(response["Location"]).content.decode()

    # The same request by support re-queues them.
    done = support_admin.post(
        "/admin/events/event/republish/", {"from_id": ids[0], "to_id": ids[1]}
    )
    assert done.status_code == 302
    assert not Event.objects.filter(published_at__isnull=False).exists()
    assert outbox_backlog().unpublished == 2


def test_without_a_broker_messages_go_to_the_log_sink(settings, tmp_path, relay_on_commit):
    settings.EVENT_BROKER_URL = ""
    settings.EVENT_LOG_SINK_PATH = str(tmp_path / "events.log")
    slot_events("slot-embedded", 2)  # the nudge relays after each commit
    lines = [json.loads(line) for line in (tmp_path / "events.log").read_text().splitlines()]
    assert [line["routing_key"] for line in lines] == ["booking.events.analytics"] * 2
    assert [line["body"]["data"]["seq"] for line in lines] == [0, 1]
    assert outbox_backlog().unpublished == 0


class _NullPublisher:
    """Accepts everything (marks events published without a broker), for admin tests."""

    def declare(self) -> None:
        return None

    def publish(self, messages) -> None:
        return None

    def close(self) -> None:
        return None
