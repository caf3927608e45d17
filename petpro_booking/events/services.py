"""Appending domain events; call inside the transaction that makes the change."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Max

from petpro_booking.core.db import RowInserter
from petpro_booking.core.principal import SYSTEM, Principal

from .context import current_context
from .models import Event

logger = logging.getLogger(__name__)
_on_append_hooks: list = []
# Every change appends an event (every hold too): its INSERT is built once, not per call.
EVENT_INSERTER = RowInserter(Event)


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
    aggregate_version: int | None = None,
) -> Event:
    """Append one event. Must run inside the transaction of the change it records, so the
    event exists exactly when the change does (transactional outbox). A caller that knows
    the aggregate's new version (its row's `version` moves with each event) passes it and
    saves the query for the last one; the unique constraint still guards it.

    Every writer that runs at SERIALIZABLE passes it (docs/architecture.md): the `SELECT MAX` read
    takes predicate locks on the shared index pages of `events` and was one of the sources of
    serialization failures between holds and confirms (issue 11)."""
    _require_transaction("event_append")
    if aggregate_version is None:
        # The aggregate's row is locked by the caller, so max+1 is race-free; the unique
        # (aggregate_id, aggregate_version) constraint catches a caller that forgot the lock.
        last = Event.objects.filter(aggregate_id=str(aggregate_id)).aggregate(
            v=Max("aggregate_version")
        )
        aggregate_version = (last["v"] or 0) + 1
    return event_write(
        event_new(
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            event_type=event_type,
            data=data,
            actor=actor,
            aggregate_version=aggregate_version,
        )
    )


def event_write(event: Event) -> Event:
    """Write one event built with `event_new` (its prepared INSERT)."""
    EVENT_INSERTER.insert(event)
    events_appended([event])
    return event


def _require_transaction(caller: str) -> None:
    connection = transaction.get_connection(Event.objects.db)
    if not connection.in_atomic_block:
        raise RuntimeError(f"{caller} must run inside the transaction of its change")


def event_new(
    *,
    aggregate_type: str,
    aggregate_id: str | uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    aggregate_version: int,
    actor: Principal | None = None,
) -> Event:
    """An event not yet written, with the request's metadata, for a writer that inserts it
    in the statement of its change (`EVENT_INSERTER` with `core.db.insert_when`, the hold); that
    writer calls `events_appended` once it is written. Everyone else calls `event_append`."""
    _require_transaction("event_new")
    metadata = current_context()
    if actor is not None:
        metadata["actor"] = actor.actor
    metadata.setdefault("actor", SYSTEM.actor)
    return Event(
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        aggregate_version=aggregate_version,
        event_type=event_type,
        payload=data,
        metadata=metadata,
    )


def events_appended(events: list[Event]) -> None:
    """After these events were written: their hooks (the relay nudge) run once the
    transaction commits."""
    if _on_append_hooks:
        event_ids = [event.id for event in events]
        transaction.on_commit(lambda: [hook(event_ids) for hook in _on_append_hooks])


def events_append(
    *,
    aggregate_type: str,
    event_type: str,
    items: list[tuple[str | uuid.UUID, dict[str, Any]]],
    versions: list[int] | None = None,
    actor: Principal | None = None,
) -> list[Event]:
    """Append one `event_type` event to each of many aggregates (`items`: aggregate id and
    data), like `event_append` but with one version query and one INSERT for the whole batch
    (the hold expiry job). Same rules: inside the transaction of the change, with the
    aggregates' rows locked by the caller; `versions` (one per item) saves the version query."""
    if not items:
        return []
    _require_transaction("events_append")
    keys = [str(aggregate_id) for aggregate_id, _ in items]
    if versions is None:
        last = dict(
            Event.objects.filter(aggregate_id__in=keys)
            .values("aggregate_id")
            .annotate(v=Max("aggregate_version"))
            .values_list("aggregate_id", "v")
        )
        versions = [(last.get(key) or 0) + 1 for key in keys]
    metadata = current_context()
    metadata["actor"] = (actor or SYSTEM).actor
    return events_insert(
        [
            Event(
                aggregate_type=aggregate_type,
                aggregate_id=key,
                aggregate_version=version,
                event_type=event_type,
                payload=data,
                metadata=metadata,
            )
            for key, (_, data), version in zip(keys, items, versions, strict=True)
        ]
    )


def events_insert(events: list[Event]) -> list[Event]:
    """Write events built with `event_new`, in one INSERT, in the order given (their ids,
    which the relay publishes by, follow it); a change that records several events (a
    confirm: the hold's and the booking's) writes them in one round trip."""
    _require_transaction("events_insert")
    written = Event.objects.bulk_create(events)
    events_appended(written)
    return written


def outbox_republish(
    *,
    actor: Principal,
    from_id: int | None = None,
    to_id: int | None = None,
    event_ids: list[int] | None = None,
    failed_only: bool = False,
) -> int:
    """Put events back in the outbox so the relay publishes them again, in order per
    aggregate, with their original `message_id`s (consumers drop what they already have).
    Takes an id range (inclusive) and/or explicit ids; returns how many events were queued."""
    if from_id is None and to_id is None and not event_ids:
        raise ValueError("outbox_republish needs an id range or event ids")
    events = Event.objects.all()
    if from_id is not None:
        events = events.filter(id__gte=from_id)
    if to_id is not None:
        events = events.filter(id__lte=to_id)
    if event_ids:
        events = events.filter(id__in=event_ids)
    events = events.filter(failed_at__isnull=False) if failed_only else events
    with transaction.atomic():
        count = events.update(published_at=None, failed_at=None, last_error="")
        if count and _on_append_hooks:
            transaction.on_commit(lambda: [hook([]) for hook in _on_append_hooks])
    logger.warning(
        "outbox: %s re-queued %d event(s) (ids %s..%s%s, failed only: %s)",
        actor.actor,
        count,
        from_id,
        to_id,
        f", {len(event_ids)} picked" if event_ids else "",
        failed_only,
    )
    return count
