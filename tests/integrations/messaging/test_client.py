"""The publishers: RabbitMQ with publisher confirms and persistent messages, a fast failure
when the broker is unreachable, and the log sink of the embedded default."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
from django.conf import settings
from kombu import Connection, Queue

from integrations.messaging.client import (
    BrokerPublisher,
    LogSinkPublisher,
    PublishFailed,
    event_exchange,
)
from integrations.messaging.messages import OutboundMessage


def message(index: int, routing_key: str = "booking.events.analytics") -> OutboundMessage:
    return OutboundMessage(
        kind="analytics",
        routing_key=routing_key,
        message_id=str(uuid.uuid4()),
        event_type="SlotUpdated",
        body={"seq": index, "name": "Rüde"},
        correlation_id="corr-1",
    )


@pytest.fixture
def private_exchange():
    """An exchange of this test only, with a queue taking every routing key."""
    name = f"test.exchange.{uuid.uuid4().hex[:8]}"
    queue = Queue(f"{name}.all", exchange=event_exchange(name), routing_key="#", durable=False)
    with Connection(settings.EVENT_BROKER_URL) as connection:
        event_exchange(name)(connection.default_channel).declare()
        queue(connection.default_channel).declare()
    yield name, queue
    with Connection(settings.EVENT_BROKER_URL) as connection:
        queue(connection.default_channel).delete()
        event_exchange(name)(connection.default_channel).delete()


def test_every_message_is_confirmed_persistent_and_in_order(private_exchange):
    name, queue = private_exchange
    publisher = BrokerPublisher(url=settings.EVENT_BROKER_URL, exchange_name=name)
    sent = [message(index) for index in range(2500)]  # more than one confirm window
    try:
        publisher.publish(sent)
        publisher.publish(sent[:3])  # the connection is reused for the next batch
    finally:
        publisher.close()
    received = []
    with Connection(settings.EVENT_BROKER_URL) as connection:
        bound = queue(connection.default_channel)
        while (got := bound.get(no_ack=True)) is not None:
            received.append(got)
    assert len(received) == 2503
    assert [json.loads(m.body)["seq"] for m in received[:2500]] == list(range(2500))
    first = received[0]
    assert first.properties["message_id"] == sent[0].message_id
    assert first.properties["type"] == "SlotUpdated"
    assert first.properties["delivery_mode"] == 2
    assert first.properties["correlation_id"] == "corr-1"
    assert first.content_type == "application/json"
    assert json.loads(first.body)["name"] == "Rüde"


def test_an_unreachable_broker_fails_fast_with_nothing_confirmed():
    publisher = BrokerPublisher(
        url="amqp://guest:guest@127.0.0.1:1//", exchange_name="petpro.booking"
    )
    started = time.monotonic()
    with pytest.raises(PublishFailed) as failure:
        publisher.publish([message(1)])
    assert failure.value.confirmed == 0
    assert time.monotonic() - started < 2


def test_log_sink_writes_one_json_line_per_message(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="petpro.events.sink")
    path = tmp_path / "var" / "events.log"
    sink = LogSinkPublisher(path=str(path))
    sink.publish([message(1), message(2, "booking.notification.email")])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["routing_key"] for line in lines] == [
        "booking.events.analytics",
        "booking.notification.email",
    ]
    assert lines[1]["body"] == {"seq": 2, "name": "Rüde"}
    assert "booking.notification.email" in caplog.text
    assert lines[1]["message_id"] in caplog.text
    # The bodies (names, reasons, recipients) stay in the sink file, out of the log.
    assert "Rüde" not in caplog.text
