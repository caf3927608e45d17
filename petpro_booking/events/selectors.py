"""Reads of the event store for operations: the outbox backlog and the events set aside."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from petpro_booking.core import metrics

from .models import Event


@dataclass(frozen=True)
class OutboxBacklog:
    unpublished: int  # waiting for the relay (not set aside)
    oldest_created_at: dt.datetime | None
    failed: int  # set aside: a message broke its schema; support re-publishes them

    @property
    def oldest_age_seconds(self) -> float:
        if self.oldest_created_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_created_at).total_seconds())


def outbox_backlog() -> OutboxBacklog:
    """One query over the partial index of unpublished events."""
    row = Event.objects.filter(published_at__isnull=True).aggregate(
        unpublished=Count("id", filter=Q(failed_at__isnull=True)),
        oldest=Min("created_at", filter=Q(failed_at__isnull=True)),
        failed=Count("id", filter=Q(failed_at__isnull=False)),
    )
    return OutboxBacklog(
        unpublished=row["unpublished"], oldest_created_at=row["oldest"], failed=row["failed"]
    )


def outbox_failed_events(*, limit: int = 20) -> list[Event]:
    """The most recent events set aside, newest first."""
    return list(
        Event.objects.filter(failed_at__isnull=False, published_at__isnull=True).order_by("-id")[
            :limit
        ]
    )


def outbox_gauges_refresh() -> None:
    """The outbox gauges, set at every scrape (registered in apps.py)."""
    backlog = outbox_backlog()
    metrics.OUTBOX_BACKLOG.set(backlog.unpublished)
    metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds)
    metrics.OUTBOX_FAILED.set(backlog.failed)


def outbox_id_bounds(*, from_id: int | None, to_id: int | None) -> tuple[int, int]:
    """The event ids a republish range really covers (open ends closed by the table)."""
    bounds = Event.objects.aggregate(first=Min("id"), last=Max("id"))
    first = from_id if from_id is not None else (bounds["first"] or 0)
    last = to_id if to_id is not None else (bounds["last"] or -1)
    return first, last
