"""Retention of bookings data (beat jobs, batches claimed with SKIP LOCKED): processed payment
webhooks past RETENTION_WEBHOOKS_DAYS are deleted; the history of bookings closed more than
RETENTION_HISTORY_YEARS ago is pseudonymised (people's reasons and staff's internal notes emptied,
actor ids replaced by their keyed hash). docs/security.md, "Retention"."""

from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from petpro_booking.core.crypto import owner_key

from .models import ActorType, BookingHistory, BookingStatus, ProcessedWebhook

CLOSED = (BookingStatus.CANCELLED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW)
PSEUDONYM_PATTERN = r"^[0-9a-f]{8}\.[0-9a-f]{32}$"


def _claim(queryset, batch_size: int):
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True)
    return queryset[:batch_size]


def processed_webhooks_purge(*, now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.RETENTION_WEBHOOKS_DAYS)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                _claim(
                    ProcessedWebhook.objects.filter(received_at__lt=cutoff).order_by("event_id"),
                    settings.RETENTION_BATCH_SIZE,
                ).values_list("event_id", flat=True)
            )
            if not ids:
                return deleted
            deleted += ProcessedWebhook.objects.filter(event_id__in=ids).delete()[0]


def booking_history_pseudonymise_closed(*, now: dt.datetime | None = None) -> int:
    """History rows of bookings closed (cancelled, completed, no-show) and untouched for
    RETENTION_HISTORY_YEARS: reasons and internal notes people wrote are emptied (system
    reasons stay), the ids of people who acted become keyed hashes. Statuses and times stay.
    Returns rows changed."""
    years = settings.RETENTION_HISTORY_YEARS
    cutoff = (now or timezone.now()) - dt.timedelta(days=365 * years)
    to_do = (
        BookingHistory.objects.filter(booking__status__in=CLOSED, booking__updated_at__lt=cutoff)
        .exclude(actor_type=ActorType.SYSTEM)
        .filter(~Q(reason="") | ~Q(internal_note="") | ~Q(actor_id__regex=PSEUDONYM_PATTERN))
        .order_by("id")
    )
    changed = 0
    while True:
        with transaction.atomic():
            rows = list(_claim(to_do, settings.RETENTION_BATCH_SIZE).values_list("id", "actor_id"))
            if not rows:
                return changed
            # One UPDATE per person who acted in the batch, not one per row.
            by_pseudonym: dict[str, list[int]] = {}
            for row_id, actor_id in rows:
                pseudonym = actor_id if _is_pseudonym(actor_id) else owner_key(f"actor:{actor_id}")
                by_pseudonym.setdefault(pseudonym, []).append(row_id)
            for pseudonym, row_ids in by_pseudonym.items():
                BookingHistory.objects.filter(id__in=row_ids).update(
                    reason="", internal_note="", actor_id=pseudonym
                )
            changed += len(rows)


def _is_pseudonym(value: str) -> bool:
    return re.match(PSEUDONYM_PATTERN, value) is not None
