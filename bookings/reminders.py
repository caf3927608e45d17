"""Appointment reminders: 24 h before the start, once per booking and slot, as an
`AppointmentReminderDue` event that the outbox relay turns into `appointment_reminder`
notifications. The beat job runs every few minutes; running it twice, even at the same time,
sends nothing twice: the check runs again under the booking's row lock, in a SERIALIZABLE
transaction that is retried when a concurrent writer of the booking got there first."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from celery import shared_task
from django.db.models import CharField, Exists, OuterRef
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from petpro_booking.core.db import run_serializable
from petpro_booking.core.principal import SYSTEM
from petpro_booking.events.models import Event

from .models import Booking, BookingStatus
from .services import BookingEvent, booking_events_append

logger = logging.getLogger(__name__)

REMINDER_EVENT = "AppointmentReminderDue"
REMINDER_LEAD = dt.timedelta(hours=24)
REMINDER_BATCH = 500


def _reminders_of(booking_id, slot_id):
    """Reminder events of that booking for that slot (a rescheduled booking is reminded
    again for its new time)."""
    return Event.objects.annotate(slot_ref=KT("payload__slot_id")).filter(
        aggregate_id=booking_id, event_type=REMINDER_EVENT, slot_ref=slot_id
    )


def appointment_reminders_due(
    *, now: dt.datetime | None = None, limit: int = REMINDER_BATCH
) -> list[uuid.UUID]:
    """Confirmed bookings starting in (now, now + 24 h] not yet reminded for their slot."""
    now = now or timezone.now()
    reminded = _reminders_of(
        Cast(OuterRef("id"), CharField()), Cast(OuterRef("slot_id"), CharField())
    )
    return list(
        Booking.objects.filter(
            status=BookingStatus.CONFIRMED,
            slot__start_at__gt=now,
            slot__start_at__lte=now + REMINDER_LEAD,
        )
        .filter(~Exists(reminded))
        .order_by("slot__start_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def appointment_reminder_send(*, booking_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """Append the reminder event of one booking unless it is no longer due or was already
    sent; True when this call appended it."""
    now = now or timezone.now()

    def decision() -> bool:
        booking = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("slot__clinic", "slot__service", "reservation")
            .get(id=booking_id)
        )
        due = now < booking.slot.start_at <= now + REMINDER_LEAD
        if booking.status != BookingStatus.CONFIRMED or not due:
            return False
        if _reminders_of(str(booking.id), str(booking.slot_id)).exists():
            return False
        # Moves the booking's event_version in its row: any SERIALIZABLE writer of this
        # booking that waited on our lock fails with 40001 and retries on a fresh snapshot.
        booking_events_append(
            booking=booking, actor=SYSTEM, events=[BookingEvent(REMINDER_EVENT, booking.status)]
        )
        return True

    return run_serializable(decision, name="appointment_reminder")


def appointment_reminders_send(*, now: dt.datetime | None = None) -> int:
    """Remind every booking that is due; returns how many reminders this run appended."""
    sent = 0
    for booking_id in appointment_reminders_due(now=now):
        sent += appointment_reminder_send(booking_id=booking_id, now=now)
    if sent:
        logger.info("appointment reminders: %d due", sent)
    return sent


@shared_task(name="bookings.appointment_reminders_send")
def appointment_reminders_send_task() -> int:
    return appointment_reminders_send()
