"""Entries of the waiting list: one owner and pet in line for one slot, and the offer made."""

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from petpro_booking.core.model_fields import EncryptedTextField
from reservations.models import Reservation
from slots.models import Slot


class EntryStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    OFFERED = "offered", "Offered"  # a hold was made for the owner; it may be confirmed
    BOOKED = "booked", "Booked"  # the offered hold was confirmed into a booking
    OFFER_EXPIRED = "offer_expired", "Offer expired"
    LEFT = "left", "Left"  # the owner left (or declined the offer by releasing its hold)
    REMOVED = "removed", "Removed"  # by staff, with a reason
    # Ended by the service, `end_reason` says why: the slot started (`slot_started`) or its
    # notice began (`too_late_to_book`) before a unit came free, or the owner holds or booked
    # the slot for that pet already (`already_held`, `already_booked`).
    ENDED = "ended", "Ended"


LIVE_STATUSES = (EntryStatus.WAITING, EntryStatus.OFFERED)


class WaitlistEntry(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="waitlist_entries")
    user_id = models.CharField(max_length=64)
    pet_id = models.CharField(max_length=64)
    # Personal data, encrypted at rest like a hold's (docs/security.md, Personal data).
    pet_name = EncryptedTextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=EntryStatus.choices, default=EntryStatus.WAITING
    )
    # FIFO key: the database clock at insert, so every web process orders alike.
    joined_at = models.DateTimeField(db_default=Now())
    reservation = models.OneToOneField(
        Reservation, on_delete=models.PROTECT, null=True, blank=True, related_name="offer"
    )
    offered_at = models.DateTimeField(null=True, blank=True)
    offer_expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = EncryptedTextField(blank=True, default="")
    version = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "waitlist_entries"
        ordering = ["joined_at", "id"]
        constraints = [
            # One place in a slot's line per owner.
            models.UniqueConstraint(
                fields=["slot", "user_id"],
                condition=Q(status__in=["waiting", "offered"]),
                name="waitlist_one_live_entry_per_owner_slot",
            ),
            # One live offer per owner at a time, whichever the slot (first come, first served:
            # no owner holding two offered units while others wait).
            models.UniqueConstraint(
                fields=["user_id"],
                condition=Q(status="offered"),
                name="waitlist_one_offer_per_owner",
            ),
        ]
        indexes = [
            models.Index(
                fields=["slot", "joined_at"],
                name="waitlist_slot_waiting_idx",
                condition=Q(status__in=["waiting", "offered"]),
            ),
            models.Index(fields=["user_id", "joined_at"], name="waitlist_user_idx"),
            # The admin's search by pet id (core/admin_search.py: one index per field searched).
            models.Index(fields=["pet_id"], name="waitlist_pet_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"
