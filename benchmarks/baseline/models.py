import uuid

from django.db import models


class SlotColumns(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    clinic_id = models.CharField(max_length=64)
    service_id = models.CharField(max_length=64)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    capacity = models.PositiveIntegerField(default=1)
    booked_count = models.IntegerField(default=0)
    held_count = models.IntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"slot {self.id}"


class Slot(SlotColumns):
    class Meta:
        db_table = "baseline_slots"
        indexes = [models.Index(fields=["clinic_id", "service_id", "start_at"])]


class Hold(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT)
    user_id = models.CharField(max_length=64)
    pet_id = models.CharField(max_length=64)
    status = models.CharField(max_length=10, default="held")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "baseline_holds"

    def __str__(self) -> str:
        return f"hold {self.id}"


# The guarded hold's own tables (`views.GuardedHoldCreate`): a copy of the slots, so it takes
# the same slots as the bare hold and the service in the same round without meeting the bare
# hold's rows.
class GuardedSlot(SlotColumns):
    class Meta:
        db_table = "guarded_slots"


class GuardedHold(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    slot = models.ForeignKey(GuardedSlot, on_delete=models.PROTECT)
    user_id = models.CharField(max_length=64)
    pet_id = models.CharField(max_length=64)
    status = models.CharField(max_length=10, default="held")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "guarded_holds"
        indexes = [
            # the fair-use count: one owner's live holds
            models.Index(
                fields=["user_id", "expires_at"],
                condition=models.Q(status="held"),
                name="guarded_holds_owner_held_idx",
            )
        ]

    def __str__(self) -> str:
        return f"guarded hold {self.id}"


class GuardedEvent(models.Model):
    """The outbox row written with the hold (nothing publishes it here)."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True)  # the message id
    aggregate_id = models.CharField(max_length=64)
    aggregate_version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "guarded_events"
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_id", "aggregate_version"], name="guarded_events_version_uniq"
            )
        ]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(published_at__isnull=True),
                name="guarded_events_unpublished_idx",
            )
        ]

    def __str__(self) -> str:
        return f"guarded event {self.id}"
