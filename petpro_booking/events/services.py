"""Appending domain events; call inside the transaction that makes the change."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import Max

from petpro_booking.core.principal import Principal

from .context import current_context
from .models import Event

_on_append_hooks: list = []


def on_event_appended(hook) -> None:
    """Register `hook(events)` to run after the appending transaction commits (relay nudge)."""
    _on_append_hooks.append(hook)


def event_append(
    *,
    aggregate_type: str,
    aggregate_id: str | uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    actor: Principal | None = None,
) -> Event:
    """Append one event. Must run inside the transaction of the change it records, so the
    event exists exactly when the change does (transactional outbox)."""
    connection = transaction.get_connection(Event.objects.db)
    if not connection.in_atomic_block:
        raise RuntimeError("event_append must run inside the transaction of its change")
    aggregate_key = str(aggregate_id)
    # The aggregate's row is locked by the caller, so max+1 is race-free; the unique
    # (aggregate_id, aggregate_version) constraint catches a caller that forgot the lock.
    last = Event.objects.filter(aggregate_id=aggregate_key).aggregate(v=Max("aggregate_version"))
    metadata = current_context()
    if actor is not None:
        metadata["actor"] = actor.actor
    metadata.setdefault("actor", {"type": "system", "id": "booking-service"})
    event = Event.objects.create(
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_key,
        aggregate_version=(last["v"] or 0) + 1,
        event_type=event_type,
        payload=data,
        metadata=metadata,
    )
    if _on_append_hooks:
        event_id = event.id
        transaction.on_commit(lambda: [hook([event_id]) for hook in _on_append_hooks])
    return event
