"""The outbox relay: claims unpublished events, publishes their messages, marks them published
(docs/events.md).

At-least-once by construction: the claim, the publish (awaiting the broker's confirms) and the
mark happen inside one transaction that holds the claimed rows (`FOR UPDATE SKIP LOCKED`), so
a crash after the publish and before the commit leaves the events unpublished and the next run
sends them again with the same `message_id` -- a duplicate, never a loss. A broker outage leaves
the rows untouched (apart from the attempt count) for the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from integrations.messaging.client import Publisher, PublishFailed, publisher_get
from integrations.messaging.messages import (
    CHANNELS,
    NOTIFYING_EVENT_TYPES,
    DomainEvent,
    OutboundMessage,
    messages_for,
)
from integrations.messaging.preferences import notification_preferences
from integrations.messaging.validation import message_errors
from petpro_booking.core import metrics

from .models import Event

logger = logging.getLogger(__name__)

# Owners' channel preferences are looked up this many at a time (User Service calls overlap).
PREFERENCE_LOOKUPS_AT_ONCE = 8

CLAIM_FIELDS = (
    "id",
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "event_type",
    "payload",
    "metadata",
    "created_at",
)


@dataclass
class RelayReport:
    claimed: int = 0
    published: int = 0  # events marked published
    failed: int = 0  # events set aside: a message could not be built or broke its schema
    deferred: int = 0  # claimed, but an earlier event of the same aggregate is not ready
    messages: int = 0  # messages confirmed by the broker
    invalid_messages: int = 0
    broker_error: str = ""

    def add(self, other: RelayReport) -> None:
        for item in fields(self):
            if item.name == "broker_error":
                self.broker_error = other.broker_error or self.broker_error
            else:
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self) -> dict[str, int | str]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass
class _Plan:
    event: Event
    messages: list[OutboundMessage]
    errors: list[str]


def domain_event(event: Event) -> DomainEvent:
    return DomainEvent(
        event_id=str(event.event_id),
        event_type=event.event_type,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        occurred_at=event.created_at,
        data=event.payload,
        metadata=event.metadata,
    )


def _in_aggregate_order(claimed: Sequence[Event]) -> tuple[list[Event], int]:
    """Keep, per aggregate, only the claimed events that come before its first unpublished
    event we did not claim (locked by another relay, or committed after our claim): those
    must go first. Returns the events to publish now and how many were deferred."""
    claimed_ids = {event.id for event in claimed}
    aggregates = {event.aggregate_id for event in claimed}
    pending = (
        Event.objects.filter(
            published_at__isnull=True,
            failed_at__isnull=True,
            aggregate_id__in=aggregates,
            id__lte=claimed[-1].id,
        )
        .order_by("id")
        .values_list("id", "aggregate_id")
    )
    first_gap: dict[str, int] = {}
    for event_pk, aggregate_id in pending:
        if event_pk not in claimed_ids and aggregate_id not in first_gap:
            first_gap[aggregate_id] = event_pk
    ready = [event for event in claimed if event.id < first_gap.get(event.aggregate_id, 1 << 62)]
    return ready, len(claimed) - len(ready)


# An owner's notification channels and language.
Preferences = tuple[tuple[str, ...], str | None]


def _preferences_of_owner(user_id: str) -> Preferences:
    try:
        return notification_preferences(user_id=user_id)
    finally:
        connections.close_all()  # this pool thread's own connections (local adapter)


def _events_ahead(batch_size: int) -> list[tuple[int, str, object]]:
    """The next batch's events as (id, event type, payload's user_id): the first `batch_size`
    unpublished events no other relay holds, locked only for this short transaction. The
    claim takes only these, so it holds nothing whose owner was not looked up; run at the same
    time, two relays' reads take different events, as their claims do."""
    with transaction.atomic():
        return list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True, failed_at__isnull=True)
            .order_by("id")
            .values_list("id", "event_type", "payload__user_id")[:batch_size]
        )


def _owner_preferences(owners: Iterable[str]) -> dict[str, Preferences]:
    """The channels and language of each owner, one profile lookup per owner, looked up
    concurrently: a cold User Service cache would otherwise cost one round trip per owner, in
    sequence (and the language was once a second lookup per event). A network call: never
    made while the relay holds claimed rows."""
    owners = sorted(set(owners))
    if len(owners) <= 1:
        return {owner: notification_preferences(user_id=owner) for owner in owners}
    workers = min(PREFERENCE_LOOKUPS_AT_ONCE, len(owners))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay-prefs") as pool:
        return dict(zip(owners, pool.map(_preferences_of_owner, owners), strict=True))


def _plan(event: Event, preferences: dict[str, Preferences]) -> _Plan:
    # Every owner a claimed event notifies was looked up (_relay_batch); the default is what
    # an owner gets whom the User Service cannot tell about.
    def channels_of(user_id: str) -> tuple[str, ...]:
        return preferences.get(user_id, (CHANNELS, None))[0]

    def language_of(user_id: str) -> str | None:
        return preferences.get(user_id, (CHANNELS, None))[1]

    try:
        built = messages_for(domain_event(event), channels_of=channels_of, language_of=language_of)
    except Exception as exc:
        logger.exception("event %s (%s): messages not built", event.event_id, event.event_type)
        metrics.RELAY_INVALID_MESSAGES.labels(kind="unbuildable").inc()
        return _Plan(event=event, messages=[], errors=[f"build: {type(exc).__name__}: {exc}"])
    valid, errors = [], []
    for message in built:
        problems = message_errors(message)
        if problems:
            metrics.RELAY_INVALID_MESSAGES.labels(kind=message.kind).inc()
            logger.error(
                "event %s (%s): %s message to %s not published, schema: %s",
                event.event_id,
                event.event_type,
                message.kind,
                message.routing_key,
                "; ".join(problems),
            )
            errors.append(f"{message.routing_key}: {'; '.join(problems)}")
        else:
            valid.append(message)
    return _Plan(event=event, messages=valid, errors=errors)


def _relay_batch(*, publisher: Publisher, batch_size: int) -> tuple[RelayReport, int]:
    """One batch: the events ahead read and their owners' preferences looked up, then those
    events claimed, published and marked in one transaction. Returns its report and how many
    events were ahead (fewer than `batch_size`: nothing more for this relay to take)."""
    report = RelayReport()
    ahead = _events_ahead(batch_size)
    if not ahead:
        return report, 0
    # The User Service is asked before the claim: the transaction that holds the claimed rows
    # waits on the broker's confirms, never on another service (docs/architecture.md).
    preferences = _owner_preferences(
        str(user_id)
        for _, event_type, user_id in ahead
        if event_type in NOTIFYING_EVENT_TYPES and user_id
    )
    with transaction.atomic():
        claimed = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(
                published_at__isnull=True,
                failed_at__isnull=True,
                id__in=[event_pk for event_pk, _, _ in ahead],
            )
            .order_by("id")
            .only(*CLAIM_FIELDS)
        )
        report.claimed = len(claimed)
        if not claimed:  # another relay took them meanwhile
            return report, len(ahead)
        ready, report.deferred = _in_aggregate_order(claimed)
        plans = [_plan(event, preferences) for event in ready]
        outgoing = [message for plan in plans for message in plan.messages]
        try:
            publisher.publish(outgoing)
            confirmed = len(outgoing)
        except PublishFailed as exc:
            confirmed = exc.confirmed
            report.broker_error = str(exc)[:500] or type(exc).__name__
            metrics.RELAY_BROKER_FAILURES.inc()
            logger.warning(
                "outbox relay: broker failed after %d/%d messages: %s",
                confirmed,
                len(outgoing),
                report.broker_error,
            )
        now = timezone.now()
        published, unconfirmed, position = [], [], 0
        for plan in plans:
            position += len(plan.messages)
            if position > confirmed:
                unconfirmed.append(plan.event.id)
            elif plan.errors:
                Event.objects.filter(id=plan.event.id).update(
                    failed_at=now,
                    last_error="\n".join(plan.errors)[:4000],
                    publish_attempts=F("publish_attempts") + 1,
                )
                report.failed += 1
                report.invalid_messages += len(plan.errors)
            else:
                published.append(plan.event.id)
                metrics.RELAY_EVENTS_PUBLISHED.labels(event_type=plan.event.event_type).inc()
        if published:
            Event.objects.filter(id__in=published).update(
                published_at=now, publish_attempts=F("publish_attempts") + 1, last_error=""
            )
        if unconfirmed:
            Event.objects.filter(id__in=unconfirmed).update(
                publish_attempts=F("publish_attempts") + 1, last_error=report.broker_error
            )
        report.published = len(published)
        report.messages = confirmed
        metrics.RELAY_MESSAGES_PUBLISHED.inc(confirmed)
    return report, len(ahead)


def outbox_relay(
    *,
    publisher: Publisher | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
    max_seconds: float | None = None,
) -> RelayReport:
    """Publish the outbox in batches until it is empty, the broker fails, or the time budget
    (`EVENT_RELAY_MAX_SECONDS`) is spent. Safe to run in several processes at once."""
    publisher = publisher or publisher_get()
    batch_size = batch_size or settings.EVENT_RELAY_BATCH_SIZE
    budget = settings.EVENT_RELAY_MAX_SECONDS if max_seconds is None else max_seconds
    deadline = time.monotonic() + budget
    report, batches = RelayReport(), 0
    while True:
        batch, ahead = _relay_batch(publisher=publisher, batch_size=batch_size)
        report.add(batch)
        batches += 1
        if (
            batch.broker_error
            or ahead < batch_size
            or (batch.claimed and batch.published + batch.failed == 0)
            or (max_batches is not None and batches >= max_batches)
            or time.monotonic() >= deadline
        ):
            break
    if report.claimed:
        logger.info("outbox relay: %s", report.as_dict())
    return report
