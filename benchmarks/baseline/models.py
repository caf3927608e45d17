import uuid

from django.db import models


class Slot(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    clinic_id = models.CharField(max_length=64)
    service_id = models.CharField(max_length=64)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    capacity = models.PositiveIntegerField(default=1)
    booked_count = models.IntegerField(default=0)
    held_count = models.IntegerField(default=0)

    class Meta:
        db_table = "baseline_slots"
        indexes = [models.Index(fields=["clinic_id", "service_id", "start_at"])]

    def __str__(self) -> str:
        return f"slot {self.id}"


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
