"""Appointment reminders: due 24 h before the start, sent once per booking and slot even when
the job runs twice at the same time, again after a reschedule, never for cancelled ones."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connections
from django.utils import timezone

from bookings.reminders import REMINDER_EVENT, appointment_reminders_due, appointment_reminders_send
from bookings.services import booking_cancel, booking_reschedule
from petpro_booking.events.models import Event

from ..factories import SlotFactory
from .conftest import SUPPORT, book_on

pytestmark = pytest.mark.django_db(transaction=True)


def slot_in(clinic_service, hours: float):
    start = timezone.now() + dt.timedelta(hours=hours)
    return SlotFactory(
        service=clinic_service, start_at=start, end_at=start + dt.timedelta(minutes=30)
    )


def reminders_of(booking) -> list[Event]:
    return list(
        Event.objects.filter(aggregate_id=str(booking.id), event_type=REMINDER_EVENT).order_by("id")
    )


def test_a_booking_starting_within_a_day_is_reminded_once(owner_pet, clinic_service):
    soon = book_on(slot_in(clinic_service, 10))
    later = book_on(slot_in(clinic_service, 30))
    assert appointment_reminders_due() == [soon.id]
    assert appointment_reminders_send() == 1
    assert appointment_reminders_send() == 0
    (reminder,) = reminders_of(soon)
    assert reminder.payload["reference"] == soon.reference
    assert reminder.payload["pet_name"] == owner_pet.name
    assert reminder.payload["start_local"].endswith(("+01:00", "+02:00"))  # Europe/Berlin
    assert reminders_of(later) == []
    # A day later the other one is due.
    assert appointment_reminders_send(now=timezone.now() + dt.timedelta(hours=10)) == 1
    assert len(reminders_of(later)) == 1


def test_two_jobs_at_once_send_each_reminder_once(owner_pet, clinic_service):
    bookings = [book_on(slot_in(clinic_service, 2 + index)) for index in range(4)]
    start = threading.Barrier(2)
    sent: list[int] = []
    errors: list[BaseException] = []

    def job() -> None:
        try:
            start.wait()
            sent.append(appointment_reminders_send())
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(sent) == 4
    assert [len(reminders_of(booking)) for booking in bookings] == [1, 1, 1, 1]


def test_cancelled_bookings_are_not_reminded_and_a_reschedule_is_reminded_again(
    owner_pet, clinic_service
):
    cancelled = book_on(slot_in(clinic_service, 5))
    booking_cancel(actor=SUPPORT, booking_id=cancelled.id, reason="Clinic closed")
    moved = book_on(slot_in(clinic_service, 6))
    assert appointment_reminders_send() == 1
    booking_reschedule(
        actor=SUPPORT,
        booking_id=moved.id,
        slot_id=slot_in(clinic_service, 8).id,
        reason="Owner asked by phone",
    )
    assert appointment_reminders_send() == 1
    assert reminders_of(cancelled) == []
    first, second = reminders_of(moved)
    assert first.payload["slot_id"] != second.payload["slot_id"]
