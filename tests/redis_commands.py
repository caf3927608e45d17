"""Counting what redis-py sends: one packet per round trip (a pipeline is one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis


@contextmanager
def redis_round_trips() -> Iterator[list[bytes]]:
    """The packets redis-py sends while the block runs, each as the bytes on the wire."""
    sent: list[bytes] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(b"".join(command) if isinstance(command, list) else command)
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counted
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = original
