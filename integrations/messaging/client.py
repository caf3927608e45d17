"""Publishing messages: to RabbitMQ with kombu (durable topic exchange, durable queues,
persistent messages, publisher confirms) or, with `EVENT_BROKER_URL` unset, to a local log
sink (a JSON-lines file plus the log) so the embedded default shows what would be sent."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue
from tenacity import retry_if_exception

from petpro_booking.core.retrying import retry_policy
from petpro_booking.core.tls import amqp_ssl_options

from .messages import QUEUE_NAMES, OutboundMessage

logger = logging.getLogger(__name__)
sink_logger = logging.getLogger("petpro.events.sink")

# Confirms are awaited every this many messages, which bounds what is in flight.
CONFIRM_WINDOW = 1000


class PublishFailed(Exception):
    """The broker did not confirm every message; the first `confirmed` of them were."""

    def __init__(self, message: str, *, confirmed: int) -> None:
        super().__init__(message)
        self.confirmed = confirmed


class ConnectionLost(PublishFailed):
    """The connection broke during a publish (not a refusal by the broker)."""


class Publisher(Protocol):
    def declare(self) -> None: ...

    def publish(self, messages: Sequence[OutboundMessage]) -> None: ...

    def close(self) -> None: ...


def event_exchange(name: str) -> Exchange:
    return Exchange(name, type="topic", durable=True)


def event_queues(exchange: Exchange) -> list[Queue]:
    return [Queue(name, exchange=exchange, routing_key=name, durable=True) for name in QUEUE_NAMES]


class BrokerPublisher:
    """One connection and one confirm-mode channel per process, reused across batches.

    Messages are published back to back and their confirms awaited in windows (streaming
    confirms, the way RabbitMQ recommends for throughput): `publish` returns only when the
    broker has confirmed every message, i.e. written each persistent message to its durable
    queues. Anything else raises `PublishFailed` with the length of the confirmed prefix.
    """

    def __init__(
        self,
        *,
        url: str,
        exchange_name: str,
        connect_timeout: float = 2.0,
        confirm_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.exchange = event_exchange(exchange_name)
        self.connect_timeout = connect_timeout
        self.confirm_timeout = confirm_timeout
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._channel = None
        self._producer: Producer | None = None
        self._next_tag = 1  # delivery tag of the next publish on the channel
        self._first_tag = 1  # delivery tag of the first message of the current batch
        self._acked_upto = 0  # every tag <= this is confirmed
        self._acked_singles: set[int] = set()
        self._nacked = 0

    # --- connection -----------------------------------------------------------------------
    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._acked_upto = max(self._acked_upto, delivery_tag)
        else:
            self._acked_singles.add(delivery_tag)
        while self._acked_upto + 1 in self._acked_singles:
            self._acked_upto += 1
            self._acked_singles.discard(self._acked_upto)
        self._acked_singles = {tag for tag in self._acked_singles if tag > self._acked_upto}

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        # The first refused tag: a `multiple` nack refuses every tag not yet confirmed up to it.
        first = self._acked_upto + 1 if multiple else delivery_tag
        self._nacked = min(self._nacked, first) if self._nacked else first

    def _connected(self) -> tuple[Connection, Producer]:
        if self._connection is not None and self._producer is not None:
            return self._connection, self._producer
        return self._connect()

    def _connect(self) -> tuple[Connection, Producer]:
        connection = Connection(
            self.url,
            connect_timeout=self.connect_timeout,
            ssl=amqp_ssl_options(self.url, ca_file=settings.BROKER_CA_FILE),
        )
        try:
            connection.ensure_connection(max_retries=0)  # fail fast; the sweep retries
            channel = connection.channel()
            self._declare_on(channel)
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
        except Exception:
            connection.release()
            raise
        producer = Producer(channel, exchange=self.exchange)
        self._connection, self._channel, self._producer = connection, channel, producer
        self._next_tag, self._acked_upto, self._acked_singles, self._nacked = 1, 0, set(), 0
        return connection, producer

    def _declare_on(self, channel) -> None:
        self.exchange(channel).declare()
        for queue in event_queues(self.exchange):
            queue(channel).declare()

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # the connection is already broken; dropping it is the point
                logger.debug("closing a broken broker connection failed", exc_info=True)
        self._connection = self._channel = self._producer = None

    def declare(self) -> None:
        """Declare the exchange and the queues (connects if needed)."""
        with self._lock:
            if self._connection is None:
                self._connect()
            else:
                self._declare_on(self._channel)

    def close(self) -> None:
        with self._lock:
            self._reset()

    # --- publishing -----------------------------------------------------------------------
    def _await_confirms(self, connection: Connection, upto: int, deadline: float) -> None:
        while self._acked_upto < upto and not self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("broker did not confirm in time")
            connection.drain_events(timeout=remaining)
        if self._nacked:
            # Confirms come in no set order: a refusal (a full queue) is sent at once, the acks
            # of the persistent messages before it once they are on disk. Wait for those (within
            # the deadline) so the confirmed prefix counts and is not published again.
            while self._acked_upto < self._nacked - 1:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    connection.drain_events(timeout=remaining)
                except TimeoutError:
                    break
            raise PublishFailed(
                f"broker rejected message #{self._nacked}", confirmed=self._confirmed()
            )

    def _confirmed(self) -> int:
        return max(0, self._acked_upto - self._first_tag + 1)

    def _publish_all(self, messages: Sequence[OutboundMessage]) -> None:
        connection, producer = self._connected()
        self._first_tag = self._next_tag
        deadline = time.monotonic() + self.confirm_timeout
        for index, message in enumerate(messages, start=1):
            producer.publish(
                message.encoded(),
                routing_key=message.routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=message.message_id,
                type=message.event_type,
                correlation_id=message.correlation_id,
            )
            self._next_tag += 1
            if index % CONFIRM_WINDOW == 0:
                self._await_confirms(connection, self._next_tag - 1, deadline)
        self._await_confirms(connection, self._next_tag - 1, deadline)

    def _publish_once(self, messages: Sequence[OutboundMessage]) -> None:
        try:
            self._publish_all(messages)
        except PublishFailed:
            self._reset()
            raise
        except Exception as exc:
            confirmed = self._confirmed() if self._connection is not None else 0
            self._reset()
            raise ConnectionLost(f"{type(exc).__name__}: {exc}", confirmed=confirmed) from exc

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        with self._lock:
            # A connection kept from an earlier batch may have died while idle: one more try on
            # a fresh one (the `broker_reconnect` policy; confirmed messages go again with the
            # same message_id). A fresh connection that fails, or a refused message, is left to
            # the next sweep.
            reused = self._connection is not None
            retrying = retry_policy("broker_reconnect").retrying(
                retry=retry_if_exception(lambda exc: reused and isinstance(exc, ConnectionLost))
            )
            retrying(self._publish_once, messages)


class LogSinkPublisher:
    """The embedded default: one JSON line per message in `path`, and a log line."""

    def __init__(self, *, path: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def declare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        lines = []
        for message in messages:
            record = {
                "routing_key": message.routing_key,
                "message_id": message.message_id,
                "type": message.event_type,
                "body": message.body,
            }
            lines.append(json.dumps(record, ensure_ascii=False))
            # The body (pet names, reasons, recipients) goes to the sink file only, as a
            # broker would hold it; the log names the message.
            sink_logger.info(
                "message %s %s %s", message.routing_key, message.event_type, message.message_id
            )
        with self._lock:
            self.declare()
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write("\n".join(lines) + "\n")

    def close(self) -> None:
        return None


_publishers: dict[tuple, Publisher] = {}
_publishers_lock = threading.Lock()


def publisher_get() -> Publisher:
    """This process's publisher for the current settings (a forked worker gets its own)."""
    url = settings.EVENT_BROKER_URL
    key = (os.getpid(), url, settings.EVENT_EXCHANGE, settings.EVENT_LOG_SINK_PATH)
    with _publishers_lock:
        publisher = _publishers.get(key)
        if publisher is None:
            if url:
                publisher = BrokerPublisher(
                    url=url,
                    exchange_name=settings.EVENT_EXCHANGE,
                    connect_timeout=settings.EVENT_CONNECT_TIMEOUT_SECONDS,
                    confirm_timeout=settings.EVENT_CONFIRM_TIMEOUT_SECONDS,
                )
            else:
                publisher = LogSinkPublisher(path=settings.EVENT_LOG_SINK_PATH)
            _publishers[key] = publisher
        return publisher
