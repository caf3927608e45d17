"""Temporary holds on one unit of a slot's capacity (docs/holds.md)."""

import uuid

from django.db import models
from django.db.models import Q

from petpro_booking.core.model_fields import EncryptedTextField, LookupHashField
from slots.models import Slot

# A pet group (issue 15): at most this many pets held, confirmed and paid together.
GROUP_MAX_PETS = 4


class ReservationStatus(models.TextChoices):
    HELD = "held", "Held"
    CONFIRMED = "confirmed", "Confirmed"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Reservation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: reservations_slot_status_idx (slot, status) serves every lookup by
    # slot, and each hold's INSERT would pay for a second one.
    slot = models.ForeignKey(
        Slot, on_delete=models.PROTECT, related_name="reservations", db_index=False
    )
    user_id = models.CharField(max_length=64)
    pet_id = models.CharField(max_length=64)
    # Snapshot taken when the hold is made: events (expiry by the job, notifications) need the
    # pet's name without calling the User Service. Encrypted at rest; searched by its hash.
    pet_name = EncryptedTextField(blank=True, default="")
    pet_name_lookup = LookupHashField(source="pet_name")
    status = models.CharField(
        max_length=10, choices=ReservationStatus.choices, default=ReservationStatus.HELD
    )
    expires_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Holds made together for several pets of one owner (issue 15): same slot, same expiry,
    # confirmed together. Null for a single pet's hold.
    group_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "reservations"
        ordering = ["created_at", "id"]
        indexes = [
            # The expiry job and the lazy expiry scan only live holds by expiry time.
            models.Index(
                fields=["expires_at"],
                name="reservations_held_expiry_idx",
                condition=Q(status="held"),
            ),
            models.Index(fields=["slot", "status"], name="reservations_slot_status_idx"),
            # The lazy expiry inside a SERIALIZABLE write (a full slot's hold, reschedule, a
            # late payment) reads one slot's held holds past expiry: a small index whose
            # predicate locks cover only those rows, not the slot's whole history.
            models.Index(
                fields=["slot", "expires_at"],
                name="reservations_slot_held_idx",
                condition=Q(status="held"),
            ),
            models.Index(fields=["user_id", "created_at"], name="reservations_user_idx"),
            # The fair-use count of every hold (reservations/limits.py): one owner's live holds,
            # whatever the number of holds of everyone else (and whatever the statistics say).
            models.Index(
                fields=["user_id", "expires_at"],
                name="reservations_owner_held_idx",
                condition=Q(status="held"),
            ),
            models.Index(
                fields=["group_id"],
                name="reservations_group_idx",
                condition=Q(group_id__isnull=False),
            ),
            # Support's admin search by a pet's name (equality on its keyed hash).
            models.Index(fields=["pet_name_lookup"], name="reservations_pet_name_lkp_idx"),
            # The admin's search by pet id (core/admin_search.py: one index per field searched).
            models.Index(fields=["pet_id"], name="reservations_pet_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class OwnerLimit(models.Model):
    """Support's per-owner override of the fair-use limits (reservations/limits.py); an empty
    field keeps the default from settings."""

    user_id = models.CharField(max_length=64, unique=True)
    max_live_holds = models.PositiveIntegerField(null=True, blank=True)
    max_unpaid_bookings = models.PositiveIntegerField(null=True, blank=True)
    max_bookings_per_pet_per_day = models.PositiveIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True, help_text="why this owner may do more")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "owner_limits"
        ordering = ["user_id"]

    def __str__(self) -> str:
        return self.user_id
