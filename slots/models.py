"""Clinics and their services (read-model of the Clinic Service) and bookable slots."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from .display import local_label


class Clinic(models.Model):
    # Ids of other services' entities are opaque strings.
    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, help_text="IANA name, e.g. Europe/Berlin")
    # Owners who chose no language in the User Service get notifications in this one.
    language = models.CharField(
        max_length=10, default="en", help_text="default language of notifications: en or id"
    )
    active = models.BooleanField(default=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "clinics"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


SPECIES_MAX = 20
SPECIES_NAME_MAX = 40


def validate_species(value: object) -> None:
    """A service's accepted species: a list of names. Anything else (a string, an object, a
    number in the list) broke every owner's species search and the holds' species check."""
    if (
        not isinstance(value, list)
        or len(value) > SPECIES_MAX
        or not all(
            isinstance(name, str) and 0 < len(name.strip()) <= SPECIES_NAME_MAX for name in value
        )
    ):
        raise ValidationError(
            f'A list of species names, e.g. ["dog", "cat"]: at most {SPECIES_MAX}, each 1 to '
            f"{SPECIES_NAME_MAX} characters; an empty list takes every species.",
            code="species",
        )


class ClinicService(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="services")
    name = models.CharField(max_length=200)
    duration_minutes = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    species = models.JSONField(
        default=list,
        validators=[validate_species],
        help_text='Species accepted, e.g. ["dog", "cat"]; empty: every species',
    )
    requires_payment = models.BooleanField(default=False)
    cancellation_window_hours = models.PositiveIntegerField(default=24)
    # Booking rules (slots/rules.py); empty means the setting BOOKING_<RULE> applies.
    min_notice_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="No hold on a slot starting sooner than this."
    )
    booking_horizon_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="No hold on a slot whose clinic-local date is more than this many days ahead.",
    )
    buffer_before_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Free time kept before each slot of this service."
    )
    buffer_after_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Free time kept after each slot (cleaning, theatre)."
    )
    active = models.BooleanField(default=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "clinic_services"
        ordering = ["clinic_id", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_minutes__gt=0), name="clinic_services_duration_positive"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="clinic_services_price_gte_0"),
            # What slots' (service, clinic) foreign key points at (migration 0005): a slot's
            # clinic is its service's clinic, in the database, not only in slot_create.
            models.UniqueConstraint(fields=["id", "clinic"], name="clinic_services_id_clinic_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.clinic.name})"


class ClinicStaff(models.Model):
    """Links a Django admin user to the clinics whose slots and bookings they manage."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clinic_links"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="staff_links")

    class Meta:
        db_table = "clinic_staff"
        constraints = [
            models.UniqueConstraint(fields=["user", "clinic"], name="clinic_staff_user_clinic_uniq")
        ]
        verbose_name_plural = "clinic staff"

    def __str__(self) -> str:
        return f"{self.user} @ {self.clinic.name}"


# Places in one slot: the API's bound, and every other entry point's (the admin, services).
CAPACITY_MAX = 1000


class SlotStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Slot(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of their own: the unique (clinic, service, start_at) leads with the clinic and
    # slots_service_start_idx with the service, and every index costs each new slot and each
    # update that is not HOT.
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, related_name="slots", db_index=False
    )
    service = models.ForeignKey(
        ClinicService, on_delete=models.PROTECT, related_name="slots", db_index=False
    )
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    capacity = models.PositiveIntegerField(default=1)
    booked_count = models.IntegerField(default=0)
    held_count = models.IntegerField(default=0)
    status = models.CharField(max_length=10, choices=SlotStatus.choices, default=SlotStatus.OPEN)
    version = models.PositiveIntegerField(default=1)
    # The aggregate version of the slot's last event (SlotCreated 1, each SlotUpdated one
    # more). `version` moves with every hold, which writes no slot event, so it cannot be that;
    # kept here, a writer passes it instead of reading max(aggregate_version) of the events
    # inside its transaction (a SERIALIZABLE read of the events' shared index pages, issue 11),
    # and versions never start again when retention has purged a slot's published events.
    event_version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "slots"
        ordering = ["start_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_at__gt=F("start_at")), name="slots_end_after_start"
            ),
            models.CheckConstraint(
                condition=Q(booked_count__gte=0) & Q(held_count__gte=0),
                name="slots_counts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(booked_count__lte=F("capacity") - F("held_count")),
                name="slots_taken_within_capacity",
            ),
            models.CheckConstraint(
                condition=Q(capacity__gte=1) & Q(capacity__lte=CAPACITY_MAX),
                name="slots_capacity_in_range",
            ),
            models.UniqueConstraint(
                fields=["clinic", "service", "start_at"], name="slots_clinic_service_start_uniq"
            ),
            # And on PostgreSQL a foreign key (service_id, clinic_id) -> clinic_services (id,
            # clinic_id), which Django cannot declare (migration 0005): a service with slots
            # cannot change clinic, and the owner's search selects by service alone.
        ]
        indexes = [
            # An owner's search: one service's slots in a range of starts (a service belongs
            # to one clinic). The search's plan must not depend on how many clinics and
            # services share the table: with only the unique index and a service_id index,
            # PostgreSQL walked the service_id index and filtered the range, or walked
            # slots_start_idx past other services' slots (docs/benchmarks.md).
            models.Index(fields=["service", "start_at"], name="slots_service_start_idx"),
            # Staff lists across clinics, ordered by start (the admin's changelist).
            models.Index(fields=["start_at"], name="slots_start_idx"),
        ]

    def __str__(self) -> str:
        # What people read (admin, choices): names and the clinic's wall-clock time.
        return f"{self.service.name} @ {local_label(self.start_at, self.clinic.timezone)}"

    @property
    def available_capacity(self) -> int:
        """Ignores holds past their expiry that the job has not expired yet (the search and the
        waiting list count those free; a hold expires them itself)."""
        return available_capacity(
            status=self.status,
            capacity=self.capacity,
            booked_count=self.booked_count,
            held_count=self.held_count,
        )


# The one place that counts what is left on a slot. Everything that shows or decides on it
# (API, search, admin, back office, waiting list, booking rules) goes through these, or
# through the SQL versions below where one statement counts every slot of a search.


def free_units(*, capacity: int, booked_count: int, held_count: int, expired_holds: int = 0) -> int:
    """Units no booking and no live hold takes: holds past their expiry (`expired_holds` of
    `held_count`, not yet expired by the job) count as free. What the booking rules compare
    with zero (a closed slot is refused for being closed, whatever is free)."""
    return capacity - booked_count - held_count + expired_holds


def available_capacity(
    *, status: str, capacity: int, booked_count: int, held_count: int, expired_holds: int = 0
) -> int:
    """What a hold could take: nothing on a closed slot, never below zero (a capacity lowered
    under what is taken)."""
    if status != SlotStatus.OPEN:
        return 0
    free = free_units(
        capacity=capacity,
        booked_count=booked_count,
        held_count=held_count,
        expired_holds=expired_holds,
    )
    return max(0, free)


def free_units_sql(*, slot: str, expired_holds: str) -> str:
    """`free_units` in SQL over the slot row aliased `slot`; `expired_holds` is an expression."""
    return f"{slot}.capacity - {slot}.booked_count - {slot}.held_count + ({expired_holds})"


def available_capacity_sql(*, status: str, free: str) -> str:
    """`available_capacity` in SQL (PostgreSQL), from a status and a `free_units` expression."""
    return f"CASE WHEN {status} = '{SlotStatus.OPEN.value}' THEN GREATEST(0, {free}) ELSE 0 END"
