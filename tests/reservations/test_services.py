"""Hold services: the fenced confirm step, the expiry job and its command and task."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.errors import ReservationExpired, ReservationNotHeld
from reservations.models import Reservation
from reservations.services import (
    reservation_create,
    reservation_expire_due,
    reservation_mark_confirmed,
    reservation_release,
)
from reservations.tasks import reservations_expire_due
from slots.locking import slot_rows_lock
from slots.models import Slot

from ..factories import SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)
OWNER = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))


def locked_slot(reservation: Reservation) -> Slot:
    """The hold's slot row-locked as the slot-write gateway hands it to a decision."""
    return slot_rows_lock(reservation.slot_id)[reservation.slot_id]


def expire_now(*reservations: Reservation) -> None:
    Reservation.objects.filter(id__in=[r.id for r in reservations]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )


def test_confirm_step_moves_a_held_reservation_once(owner_pet, slot):
    reservation = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    with transaction.atomic():
        confirmed = reservation_mark_confirmed(
            reservation=reservation, actor=OWNER, slot=locked_slot(reservation)
        )
    assert (confirmed.status, confirmed.version) == ("confirmed", 2)
    assert Event.objects.filter(
        aggregate_id=str(reservation.id), event_type="ReservationConfirmed"
    ).exists()
    # The counters are the caller's business (slot_convert_hold): untouched here.
    assert Slot.objects.get(id=slot.id).held_count == 1
    with pytest.raises(ReservationNotHeld) as second, transaction.atomic():
        reservation_mark_confirmed(
            reservation=reservation, actor=OWNER, slot=locked_slot(reservation), seen_version=2
        )
    assert second.value.details["status"] == "confirmed"


def test_confirm_step_is_fenced_on_the_version_seen(owner_pet, slot):
    reservation = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    stale_copy = Reservation.objects.get(id=reservation.id)
    reservation_release(actor=OWNER, reservation_id=reservation.id)
    with pytest.raises(ReservationNotHeld), transaction.atomic():
        reservation_mark_confirmed(
            reservation=stale_copy, actor=OWNER, slot=locked_slot(stale_copy)
        )
    assert Reservation.objects.get(id=reservation.id).status == "released"


def test_confirm_step_refuses_a_hold_past_expiry(owner_pet, slot):
    reservation = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    expire_now(reservation)
    with pytest.raises(ReservationExpired), transaction.atomic():
        reservation_mark_confirmed(
            reservation=reservation, actor=OWNER, slot=locked_slot(reservation)
        )
    assert Reservation.objects.get(id=reservation.id).status == "held"  # the job's to expire


def test_confirm_step_needs_the_callers_transaction(owner_pet, slot):
    reservation = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    with pytest.raises(RuntimeError):
        reservation_mark_confirmed(reservation=reservation, actor=OWNER, slot=slot)


def test_expiry_job_expires_due_holds_in_batches(owner_pet, clinic_service):
    slots = [SlotFactory(service=clinic_service, capacity=2) for _ in range(3)]
    holds = [
        reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
        for slot in slots
        for _ in range(2)
    ]
    live = reservation_create(
        actor=OWNER, slot_id=SlotFactory(service=clinic_service).id, pet_id="pet-1"
    )
    expire_now(*holds)
    assert reservation_expire_due(batch_size=4) == 6
    assert set(
        Reservation.objects.filter(id__in=[h.id for h in holds]).values_list("status", flat=True)
    ) == {"expired"}
    assert Reservation.objects.get(id=live.id).status == "held"
    assert list(
        Slot.objects.filter(id__in=[s.id for s in slots]).values_list("held_count", flat=True)
    ) == [0, 0, 0]
    assert Event.objects.filter(event_type="ReservationExpired").count() == 6
    assert reservation_expire_due() == 0  # nothing left, nothing twice


def test_expire_holds_command_and_task(owner_pet, slot):
    reservation = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    expire_now(reservation)
    out = StringIO()
    call_command("expire_holds", stdout=out)
    assert "Expired 1 hold(s)." in out.getvalue()
    assert Reservation.objects.get(id=reservation.id).status == "expired"
    assert reservations_expire_due.delay().get() == 0
