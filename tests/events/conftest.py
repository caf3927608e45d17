"""Fixtures of the relay tests: a tap on the real RabbitMQ exchange, switching the on-commit
relay on, and stopping/starting the broker for fault tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from amqp.exceptions import NotFound
from django.conf import settings
from django.db import connection, transaction
from kombu import Connection, Queue

from integrations.messaging.client import event_exchange, event_queues, publisher_get
from integrations.messaging.messages import QUEUE_NAMES
from petpro_booking.events.services import event_append


@dataclass(frozen=True)
class TappedMessage:
    routing_key: str
    body: dict
    properties: dict
    delivery_mode: int | None

    @property
    def message_id(self) -> str:
        return self.properties["message_id"]


class BrokerTap:
    """Private durable queues bound to the event exchange with the routing keys of the real
    queues, so a test sees every message without taking them from anyone else. Durable, so
    they survive a broker restart; they expire on their own if a run dies before teardown."""

    def __init__(self, *, url: str, exchange_name: str) -> None:
        self.url = url
        self.exchange = event_exchange(exchange_name)
        self.prefix = f"test.tap.{uuid.uuid4().hex[:10]}"
        self.queues = {
            routing_key: Queue(
                f"{self.prefix}.{routing_key}",
                exchange=self.exchange,
                routing_key=routing_key,
                durable=True,
                queue_arguments={"x-expires": 600_000},
            )
            for routing_key in QUEUE_NAMES
        }

    def declare(self) -> None:
        with Connection(self.url) as connection:
            channel = connection.default_channel
            self.exchange(channel).declare()
            for queue in [*event_queues(self.exchange), *self.queues.values()]:
                queue(channel).declare()

    def delete(self) -> None:
        with Connection(self.url) as connection:
            channel = connection.default_channel
            for queue in self.queues.values():
                queue(channel).delete()

    def _take_all(self, channel, into: list[TappedMessage]) -> bool:
        got = False
        for routing_key, queue in self.queues.items():
            bound = queue(channel)
            while (message := bound.get(no_ack=True)) is not None:
                got = True
                into.append(
                    TappedMessage(
                        routing_key=routing_key,
                        body=json.loads(message.body),
                        properties=dict(message.properties),
                        delivery_mode=message.properties.get("delivery_mode"),
                    )
                )
        return got

    def drain(
        self, *, expect: int | None = None, timeout: float = 10.0, settle: float = 0.3
    ) -> list[TappedMessage]:
        """Every message on the tap queues. With `expect`, waits until that many arrived (or
        the timeout) and then `settle` seconds more, so a surplus (a duplicate) shows too;
        without, until nothing new came for half a second."""
        received: list[TappedMessage] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        with Connection(self.url) as connection:
            channel = connection.default_channel
            while True:
                if self._take_all(channel, received):
                    last_new = time.monotonic()
                now = time.monotonic()
                quiet = now - last_new
                if now >= deadline:
                    break
                if expect is not None and len(received) >= expect and quiet >= settle:
                    break
                if expect is None and quiet >= 0.5:
                    break
                time.sleep(0.05)
        return received


@pytest.fixture(autouse=True)
def private_exchange(settings) -> Iterator[str]:
    """An exchange of this test only: other test runs on the same RabbitMQ (a colleague's
    whole suite) publish elsewhere, so a tap sees exactly what this test sent."""
    name = f"petpro.booking.test-{uuid.uuid4().hex[:10]}"
    settings.EVENT_EXCHANGE = name
    yield name
    with Connection(settings.EVENT_BROKER_URL) as connection:
        exchange = event_exchange(name)
        for queue in event_queues(exchange):  # what the relay sent to the real queues goes too
            channel = connection.channel()  # a missing queue closes its channel
            try:
                queue(channel).purge()
            except NotFound:  # a fresh broker that never declared it: nothing to purge
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
        exchange(connection.default_channel).delete()


@pytest.fixture
def broker_tap(private_exchange) -> Iterator[BrokerTap]:
    tap = BrokerTap(url=settings.EVENT_BROKER_URL, exchange_name=private_exchange)
    tap.declare()
    yield tap
    tap.delete()


@pytest.fixture
def relay_on_commit(settings):
    """Relay after every commit that appended events (off in the rest of the suite)."""
    settings.EVENT_RELAY_ON_COMMIT = True
    return settings


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _wait_port(host: str, port: int, *, open_: bool, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _port_open(host, port) != open_:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host}:{port} still {'closed' if open_ else 'open'}")
        time.sleep(0.2)


@contextlib.contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    """Stop the RabbitMQ application (the node stays up) and always start it again; waits
    for port 5672 both ways (rabbitmqctl answers before the port listens)."""
    parsed = urlparse(settings.EVENT_BROKER_URL)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5672
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        _wait_port(host, port, open_=False)
        yield
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        _wait_port(host, port, open_=True)


@pytest.fixture
def stop_rabbitmq():
    """`with stop_rabbitmq(): ...` -- the broker is down inside the block, up again after."""
    yield rabbitmq_stopped
    publisher_get().close()  # drop the connection the outage broke


def child_process_env(**extra: str) -> dict[str, str]:
    """The environment of a service process this test starts (a Celery worker, a relay): the
    test settings on this test's database, broker and exchange."""
    database = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "petpro_booking.settings.test",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "EVENT_BROKER_URL": settings.EVENT_BROKER_URL,
        "EVENT_EXCHANGE": settings.EVENT_EXCHANGE,
        **extra,
    }


def slot_events(aggregate_id: str, count: int) -> None:
    """`count` events of one slot aggregate, each in its own transaction (as in real life)."""
    for index in range(count):
        with transaction.atomic():
            event_append(
                aggregate_type="slot",
                aggregate_id=aggregate_id,
                event_type="SlotUpdated",
                data={"slot_id": aggregate_id, "seq": index},
            )
