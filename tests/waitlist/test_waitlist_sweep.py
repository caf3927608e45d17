"""The minute sweep of the waiting list: it settles offers whose hold ended, offers a unit an
owner was passed over for, and leaves full slots with a line alone (no slot write for them);
and the expiry job's batch, which asks the waiting list once for all its slots."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from petpro_booking.events.models import Event
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_expire_due
from slots.models import Slot
from waitlist.models import EntryStatus, WaitlistEntry
from waitlist.services import _slots_due, waitlist_sweep

from ..factories import SlotFactory
from .conftest import hold, join

pytestmark = pytest.mark.django_db(transaction=True)


def status_of(entry: dict) -> str:
    return WaitlistEntry.objects.get(id=entry["id"]).status


def test_the_sweep_settles_a_confirmed_offer(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    entry = join(owners[2], slot, "pet-2").json()
    owners[1].delete(f"/api/v1/reservations/{held['id']}")
    offer = WaitlistEntry.objects.get(id=entry["id"]).reservation_id
    assert owners[2].post(f"/api/v1/reservations/{offer}/confirm").status_code == 201
    assert status_of(entry) == EntryStatus.OFFERED  # the confirm leaves the entry to the sweep
    assert waitlist_sweep() == {"ended": 0, "offered": 0}
    assert status_of(entry) == EntryStatus.BOOKED


def test_the_sweep_offers_a_unit_an_owner_was_passed_over_for(owners, clinic_service):
    first_slot, second_slot = (
        SlotFactory(service=clinic_service),
        SlotFactory(service=clinic_service),
    )
    holds = [hold(owners[1], s, "pet-1").json() for s in (first_slot, second_slot)]
    on_first = join(owners[2], first_slot, "pet-2").json()
    on_second = join(owners[2], second_slot, "pet-2").json()
    for held in holds:
        owners[1].delete(f"/api/v1/reservations/{held['id']}")
    assert status_of(on_first) == EntryStatus.OFFERED
    assert status_of(on_second) == EntryStatus.WAITING  # passed over: one live offer per owner
    # Declining the first offer frees the first slot's unit (nobody else waits for it); the
    # second slot's free unit waits for the sweep.
    assert owners[2].delete(f"/api/v1/waitlist/{on_first['id']}").status_code == 204
    assert status_of(on_second) == EntryStatus.WAITING
    assert waitlist_sweep() == {"ended": 0, "offered": 1}
    assert status_of(on_second) == EntryStatus.OFFERED
    assert waitlist_sweep() == {"ended": 0, "offered": 0}


def test_full_slots_with_a_line_cost_the_sweep_the_same_statements_however_many(
    owners, clinic_service
):
    def full_slot_with_a_line() -> None:
        slot = SlotFactory(service=clinic_service)
        assert hold(owners[1], slot, "pet-1").status_code == 201
        assert join(owners[2], slot, "pet-2").status_code == 201
        assert join(owners[3], slot, "pet-3").status_code == 201

    def sweep_statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert waitlist_sweep() == {"ended": 0, "offered": 0}
        return len(queries)

    full_slot_with_a_line()
    one = sweep_statements()
    for _ in range(3):
        full_slot_with_a_line()
    # A live offer (its hold still held) is nothing to settle either.
    offered = SlotFactory(service=clinic_service)
    held = hold(owners[4], offered, "pet-4").json()
    entry = join(owners[5], offered, "pet-5").json()
    owners[4].delete(f"/api/v1/reservations/{held['id']}")
    assert status_of(entry) == EntryStatus.OFFERED
    assert sweep_statements() == one


def _expire_all_holds() -> int:
    Reservation.objects.filter(status=ReservationStatus.HELD).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    return reservation_expire_due()


def test_the_expiry_job_asks_the_waiting_list_once_per_batch(owners, clinic_service):
    """Holds expiring on many slots cost the waiting list one read, not one per slot."""

    def expiry_statements(slots: int) -> int:
        for _ in range(slots):
            assert hold(owners[1], SlotFactory(service=clinic_service), "pet-1").status_code == 201
        with CaptureQueriesContext(connection) as queries:
            assert _expire_all_holds() == slots
        lines = [q["sql"] for q in queries if 'FROM "waitlist_entries"' in q["sql"]]
        assert len(lines) == 1
        assert lines[0].startswith("SELECT DISTINCT")
        # One row per slot, not per entry: no ordering column in the DISTINCT.
        assert "joined_at" not in lines[0]
        assert "ORDER BY" not in lines[0]
        return len(queries)

    assert expiry_statements(1) == expiry_statements(4)


def test_one_expiry_batch_offers_the_units_of_every_slot_with_a_line(owners, clinic_service):
    slots = [SlotFactory(service=clinic_service) for _ in range(3)]
    for slot in slots:
        assert hold(owners[1], slot, "pet-1").status_code == 201
    first = join(owners[2], slots[0], "pet-2").json()
    third = join(owners[3], slots[2], "pet-3").json()
    assert _expire_all_holds() == 3
    assert (status_of(first), status_of(third)) == (EntryStatus.OFFERED, EntryStatus.OFFERED)
    offered = {
        WaitlistEntry.objects.get(id=entry["id"]).reservation.slot_id for entry in (first, third)
    }
    assert offered == {slots[0].id, slots[2].id}
    free = Slot.objects.get(id=slots[1].id)
    assert (free.held_count, free.booked_count) == (0, 0)


def _started_slot_with_a_line(owners, clinic_service, waiting: list[int]) -> Slot:
    slot = SlotFactory(service=clinic_service)
    assert hold(owners[1], slot, "pet-1").status_code == 201
    for index in waiting:
        assert join(owners[index], slot, f"pet-{index}").status_code == 201
    Slot.objects.filter(id=slot.id).update(start_at=timezone.now() - dt.timedelta(minutes=1))
    return slot


def test_the_lines_of_started_slots_end_in_one_slot_write_each(owners, clinic_service):
    def sweep_statements(slot: Slot, ended: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert waitlist_sweep() == {"ended": ended, "offered": 0}
        assert set(slot.waitlist_entries.values_list("status", flat=True)) == {EntryStatus.ENDED}
        return len(queries)

    short = _started_slot_with_a_line(owners, clinic_service, [2])
    one = sweep_statements(short, 1)
    long = _started_slot_with_a_line(owners, clinic_service, [2, 3, 4, 5])
    assert sweep_statements(long, 4) == one
    for entry in WaitlistEntry.objects.filter(slot=long):
        assert (entry.end_reason, entry.version, entry.ended_at is not None) == (
            "slot_started",
            2,
            True,
        )
        left = Event.objects.get(aggregate_id=str(entry.id), event_type="WaitlistLeft")
        assert (left.aggregate_version, left.payload["reason"]) == (2, "slot_started")
        assert left.payload["status"] == EntryStatus.ENDED


def test_an_offer_on_a_started_slot_keeps_its_hold_and_settles_once_confirmed(
    owners, clinic_service
):
    slot = SlotFactory(service=clinic_service)
    held = hold(owners[1], slot, "pet-1").json()
    offered = join(owners[2], slot, "pet-2").json()
    waiting = join(owners[3], slot, "pet-3").json()
    owners[1].delete(f"/api/v1/reservations/{held['id']}")
    Slot.objects.filter(id=slot.id).update(start_at=timezone.now() - dt.timedelta(minutes=1))
    assert waitlist_sweep()["ended"] == 1
    assert (status_of(offered), status_of(waiting)) == (EntryStatus.OFFERED, EntryStatus.ENDED)
    hold_of_offer = WaitlistEntry.objects.get(id=offered["id"]).reservation
    assert hold_of_offer.status == ReservationStatus.HELD
    # Confirmed in the slot's last minutes: the sweep still settles it, so the owner's one
    # live offer is free again.
    confirmed = owners[2].post(f"/api/v1/reservations/{hold_of_offer.id}/confirm")
    assert confirmed.status_code == 201, confirmed.json()
    assert waitlist_sweep() == {"ended": 0, "offered": 0}
    assert status_of(offered) == EntryStatus.BOOKED


def test_the_slots_due_are_read_once_each_however_long_the_line(owners, clinic_service):
    """A free slot with three people waiting is one slot to visit (the entries' default
    ordering must not make the DISTINCT one row per entry)."""
    slot = SlotFactory(service=clinic_service, capacity=2)
    for index in (2, 3, 4):
        WaitlistEntry.objects.create(
            slot=slot, user_id=f"owner-{index}", pet_id=f"pet-{index}", pet_name="Rex"
        )
    assert list(_slots_due(timezone.now())) == [slot.id]


def test_a_sweep_visits_a_bounded_number_of_slots_and_the_next_one_the_rest(
    owners, clinic_service, monkeypatch
):
    """Offers confirmed on two slots (say, a backlog after a deploy): with room for one slot a
    run, one sweep settles one and the next sweep the other."""
    monkeypatch.setattr("waitlist.services.DUE_SLOTS_PER_SWEEP", 1)
    entries = []
    for index in (2, 3):
        slot = SlotFactory(service=clinic_service)
        held = hold(owners[1], slot, "pet-1").json()
        entries.append(join(owners[index], slot, f"pet-{index}").json())
        owners[1].delete(f"/api/v1/reservations/{held['id']}")
        offer = WaitlistEntry.objects.get(id=entries[-1]["id"]).reservation_id
        assert owners[index].post(f"/api/v1/reservations/{offer}/confirm").status_code == 201
    waitlist_sweep()
    assert sorted(status_of(entry) for entry in entries) == [
        EntryStatus.BOOKED,
        EntryStatus.OFFERED,
    ]
    waitlist_sweep()
    assert [status_of(entry) for entry in entries] == [EntryStatus.BOOKED, EntryStatus.BOOKED]
