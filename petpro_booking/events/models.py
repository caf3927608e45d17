"""Domain events: the history of every aggregate and the outbox of messages (docs/events.md)."""

import uuid

from django.db import models
from django.db.models.functions import Now


class Event(models.Model):
    # The bigserial orders events globally for the relay; event_id is the public, stable id
    # (the message_id of the analytics message).
    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    aggregate_type = models.CharField(max_length=40)
    aggregate_id = models.CharField(max_length=64)
    aggregate_version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=60)
    payload = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_default=Now())
    published_at = models.DateTimeField(null=True, blank=True)
    # Relay bookkeeping: an event whose messages cannot be built or fail their schema is set
    # aside (failed_at) so it never blocks the events behind it; support re-publishes it.
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "events"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_id", "aggregate_version"], name="events_aggregate_version_uniq"
            ),
        ]
        indexes = [
            models.Index(
                fields=["aggregate_id", "created_at"], name="events_aggregate_created_idx"
            ),
            models.Index(fields=["created_at"], name="events_created_idx"),
            # The relay's claim: exactly its predicate, so the index holds only what is still
            # to publish (a few rows however large the table), not every unpublished-or-failed
            # row. Its churn (every row enters and leaves it) is why the table has its own
            # autovacuum settings (migration 0003).
            models.Index(
                fields=["id"],
                name="events_outbox_pending_idx",
                condition=models.Q(published_at__isnull=True, failed_at__isnull=True),
            ),
            models.Index(
                fields=["id"],
                name="events_failed_idx",
                condition=models.Q(failed_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.aggregate_type}:{self.aggregate_id}"
