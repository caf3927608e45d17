"""Bookings, their payment records and their history (docs/bookings.md, docs/payments.md)."""

import uuid

from django.db import models
from django.db.models import Q

from petpro_booking.core.model_fields import EncryptedTextField
from reservations.models import Reservation
from slots.models import Slot


class BookingStatus(models.TextChoices):
    PENDING_PAYMENT = "pending_payment", "Pending payment"
    CONFIRMED = "confirmed", "Confirmed"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    NO_SHOW = "no_show", "No show"


class CancelReason(models.TextChoices):
    """Why a booking was cancelled, where behaviour depends on it (a late payment re-books a
    booking the payment deadline cancelled); the words of the person go to the history."""

    NONE = "", "Not cancelled"
    REQUESTED = "requested", "Cancelled by the owner, staff or support"
    PAYMENT_DEADLINE = "payment_deadline", "Not paid by the payment deadline"


class Booking(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # "PP-" and 6 characters; unique by a constraint in Meta, not `unique=True`, which on
    # PostgreSQL adds a LIKE index that no query uses (every lookup is an equality).
    reference = models.CharField(max_length=9)
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="bookings")
    reservation = models.OneToOneField(
        Reservation, on_delete=models.PROTECT, related_name="booking"
    )
    clinic_id = models.CharField(max_length=64)  # denormalised from the slot for scoping
    service_id = models.CharField(max_length=64)
    user_id = models.CharField(max_length=64)
    pet_id = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=BookingStatus.choices)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    cancel_reason = models.CharField(
        max_length=20,
        choices=CancelReason.choices,
        blank=True,
        default=CancelReason.NONE,
        db_default=CancelReason.NONE,
    )
    version = models.PositiveIntegerField(default=1)
    # When an unpaid booking is cancelled; empty: created_at + PAYMENT_DEADLINE_SECONDS. Moved
    # by starting to pay and by a payment the provider still processes (payment_deadline.py).
    payment_deadline_at = models.DateTimeField(null=True, blank=True)
    # The aggregate_version of the booking's last event (bookings/services/history.py).
    event_version = models.PositiveIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The group of its hold (several pets booked and paid together, issue 15); kept when one
    # pet is rescheduled or cancelled on its own. Null for a single pet's booking.
    group_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "bookings"
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="bookings_amount_gte_0"),
            # "reference" in the name: a clash is told apart by it (_reference_clash_retried).
            models.UniqueConstraint(fields=["reference"], name="bookings_reference_uniq"),
        ]
        indexes = [
            models.Index(fields=["user_id", "created_at"], name="bookings_user_idx"),
            models.Index(fields=["clinic_id", "created_at"], name="bookings_clinic_idx"),
            # The admin's search by pet id (core/admin_search.py: one index per field searched).
            models.Index(fields=["pet_id"], name="bookings_pet_idx"),
            models.Index(
                fields=["created_at"],
                name="bookings_unpaid_idx",
                condition=Q(status="pending_payment"),
            ),
            models.Index(
                fields=["group_id"], name="bookings_group_idx", condition=Q(group_id__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.reference


class PaymentStatus(models.TextChoices):
    CREATED = "created", "Created"
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class PaymentRecord(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.ForeignKey(Booking, on_delete=models.PROTECT, related_name="payments")
    payment_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    # Fixed at the first attempt and reused on every retry of that attempt.
    idempotency_key = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=10, choices=PaymentStatus.choices, default=PaymentStatus.CREATED
    )
    checkout_url = models.URLField(max_length=500, blank=True)
    last_payload = models.JSONField(default=dict, blank=True)
    # Set when the payer is owed their money back (late payment, cancelled paid booking, wrong
    # amount); the refund is done when status becomes refunded. Swept until then.
    refund_requested_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The payment of a group's bookings (issue 15): one record for the sum, attached to the
    # booking its owner paid from (`booking`); null for a single booking's payment.
    group_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "payment_records"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["updated_at"],
                name="payment_records_pending_idx",
                condition=Q(status__in=["created", "pending"]),
            ),
            models.Index(
                fields=["refund_requested_at"],
                name="payment_records_refund_idx",
                condition=Q(status="succeeded", refund_requested_at__isnull=False),
            ),
            models.Index(
                fields=["group_id"],
                name="payment_records_group_idx",
                condition=Q(group_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id or self.idempotency_key} ({self.status})"


class ActorType(models.TextChoices):
    USER = "user", "User"
    STAFF = "staff", "Clinic staff"
    SUPPORT = "support", "Support"
    SYSTEM = "system", "System"


class BookingHistory(models.Model):
    id = models.BigAutoField(primary_key=True)
    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64)
    # `reason` is written for the owner (shown in their history and notifications);
    # `internal_note` is for staff and support only (issue 12). Both free text: encrypted.
    reason = EncryptedTextField(blank=True)
    internal_note = EncryptedTextField(blank=True, default="", db_default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "booking_history"
        ordering = ["at", "id"]
        verbose_name_plural = "booking history"

    def __str__(self) -> str:
        return f"{self.booking_id}: {self.from_status} -> {self.to_status}"


class ProcessedWebhook(models.Model):
    """Payment webhooks already handled, so a replayed `event_id` changes nothing."""

    event_id = models.CharField(primary_key=True, max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "processed_webhooks"

    def __str__(self) -> str:
        return self.event_id


class ErasureRequest(models.Model):
    """An erasure asked for and not finished (right to erasure): written and committed before
    anything of the person changes, deleted in the erasure's last transaction. One that stopped
    half-way (a crash, a slot another change kept busy) is finished by the
    `bookings.erasure_resume` job. It holds the person's id until then: that is what is to be
    erased."""

    user_id = models.CharField(max_length=64, primary_key=True)
    requested_by_id = models.CharField(max_length=64)  # the support agent, as in the audit
    requested_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)  # that stopped before the end
    last_error = models.CharField(max_length=64, blank=True)  # an error code, never a message

    class Meta:
        db_table = "erasure_requests"
        ordering = ["requested_at"]

    def __str__(self) -> str:
        return f"erasure asked by {self.requested_by_id} at {self.requested_at:%Y-%m-%d %H:%M}"


class PersonErasure(models.Model):
    """Audit of an erasure (right to be forgotten): who erased whom and when, without the
    erased data. `subject_key` is the person's pseudonymous owner key (the one analytics
    consumers know), `pseudonym` the id that replaced theirs in our rows."""

    id = models.BigAutoField(primary_key=True)
    subject_key = models.CharField(max_length=64, db_index=True)
    pseudonym = models.CharField(max_length=64, unique=True)
    erased_by_type = models.CharField(max_length=10, choices=ActorType.choices)
    erased_by_id = models.CharField(max_length=64)
    erased_at = models.DateTimeField(auto_now_add=True)
    # How many rows were cancelled / pseudonymised, per kind (numbers only).
    counts = models.JSONField(default=dict)
    # The event archive's files (RETENTION_EVENTS_ARCHIVE_DIR) are rewritten by a job of
    # their own (`person_archive_erase`): when it took this person out of them, and until
    # then each pet's pseudonym under the keyed hash of the pet's id (no id kept), so the
    # archive gets the pseudonyms the event store got. Emptied once the archive is done.
    archive_erased_at = models.DateTimeField(null=True, blank=True)
    pet_keys = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "person_erasures"
        ordering = ["-erased_at", "-id"]

    def __str__(self) -> str:
        return f"{self.subject_key} erased by {self.erased_by_type}:{self.erased_by_id}"
