"""Real concurrency against PostgreSQL and Redis: confirm racing expiry, crossing reschedules.

Threads each use their own database connection (closed after every call, so the pool serves
them all); the invariants are checked on the committed rows afterwards.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from bookings.models import Booking, BookingHistory, BookingStatus
from bookings.services import booking_confirm_reservation, booking_reschedule
from petpro_booking.core.errors import ApplicationError
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_create, reservation_expire_due
from slots.models import Slot

from ..factories import LocalPetFactory, SlotFactory
from .conftest import staff_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 10  # the connection pool's size: more threads would only queue for connections


def owner(index: int) -> Principal:
    return Principal(sub=f"owner-{index}", roles=frozenset({"pet_owner"}))


def in_thread(call):
    """Run `call` on a worker thread's own connection and give the connection back."""
    try:
        return call()
    finally:
        connection.close()


def assert_counters_match_rows(*slots: Slot) -> None:
    for slot in Slot.objects.filter(id__in=[s.id for s in slots]):
        live_bookings = Booking.objects.filter(slot=slot).exclude(status=BookingStatus.CANCELLED)
        held = Reservation.objects.filter(slot=slot, status=ReservationStatus.HELD)
        assert slot.booked_count == live_bookings.count(), slot
        assert slot.held_count == held.count(), slot
        assert slot.booked_count + slot.held_count <= slot.capacity


def test_confirm_racing_expiry_ends_confirmed_or_expired_never_both(clinic_service):
    holders, per_slot = 40, 5
    for index in range(1, holders + 1):
        LocalPetFactory(owner__id=f"owner-{index}", id=f"pet-{index}", species="dog")
    slots = [
        SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=per_slot)
        for _ in range(holders // per_slot)
    ]
    reservations = [
        reservation_create(
            actor=owner(i), slot_id=slots[(i - 1) % len(slots)].id, pet_id=f"pet-{i}"
        )
        for i in range(1, holders + 1)
    ]
    # Expiries 25 ms apart; each confirm lands within 40 ms of its own hold's expiry, while two
    # expiry jobs sweep without pause: every hold is fought over at its deadline.
    base = timezone.now() + dt.timedelta(milliseconds=700)
    targets: dict[uuid.UUID, dt.datetime] = {}
    for step, reservation in enumerate(reservations):
        expires_at = base + dt.timedelta(milliseconds=25 * step)
        Reservation.objects.filter(id=reservation.id).update(expires_at=expires_at)
        targets[reservation.id] = expires_at + dt.timedelta(milliseconds=random.randint(-40, 40))
    outcomes: dict[uuid.UUID, str] = {}
    stop_job = threading.Event()

    def confirm(index: int, reservation: Reservation) -> None:
        time.sleep(max(0.0, (targets[reservation.id] - timezone.now()).total_seconds()))
        try:
            booking_confirm_reservation(actor=owner(index), reservation_id=reservation.id)
            outcomes[reservation.id] = "confirmed"
        except ApplicationError as exc:
            outcomes[reservation.id] = exc.code

    def expiry_job() -> None:
        while not stop_job.is_set():
            reservation_expire_due()

    with ThreadPoolExecutor(max_workers=2) as jobs, ThreadPoolExecutor(WORKERS - 2) as pool:
        sweeps = [jobs.submit(in_thread, expiry_job) for _ in range(2)]
        ordered = sorted(enumerate(reservations, start=1), key=lambda ir: targets[ir[1].id])
        confirms = [pool.submit(in_thread, lambda i=i, r=r: confirm(i, r)) for i, r in ordered]
        for future in confirms:
            future.result()
        stop_job.set()
        for future in sweeps:
            future.result()
    reservation_expire_due()  # the job's next run, for holds whose confirm lost the race

    assert set(outcomes.values()) <= {"confirmed", "reservation_expired", "slot_busy"}
    statuses = dict(
        Reservation.objects.filter(slot__in=slots).values_list("id", "status").order_by()
    )
    assert set(statuses.values()) <= {ReservationStatus.CONFIRMED, ReservationStatus.EXPIRED}
    confirmed = {rid for rid, status in statuses.items() if status == ReservationStatus.CONFIRMED}
    booked = set(Booking.objects.filter(slot__in=slots).values_list("reservation_id", flat=True))
    assert booked == confirmed
    # What each caller was told is what happened.
    assert {rid for rid, outcome in outcomes.items() if outcome == "confirmed"} == confirmed
    ended_twice = (
        Event.objects.filter(
            aggregate_type="reservation",
            event_type__in=["ReservationConfirmed", "ReservationExpired"],
        )
        .values("aggregate_id")
        .annotate(endings=Count("id"))
        .filter(endings__gt=1)
    )
    assert not ended_twice.exists()
    assert_counters_match_rows(*slots)
    assert sum(s.held_count for s in Slot.objects.filter(id__in=[s.id for s in slots])) == 0
    # Every hold ended one way; how many each way depends on the machine's load (a busy
    # machine can make every confirm late), so no count of either outcome is asserted.
    assert len(outcomes) == holders


@pytest.mark.parametrize("lock", ["redis", "database only"])
def test_crossing_reschedules_never_deadlock(clinic_service, settings, lock):
    if lock == "database only":
        # Nothing listens there: the lock manager falls back to the database guard alone.
        settings.REDIS_URL = "redis://127.0.0.1:1/0"
    LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")
    LocalPetFactory(owner__id="owner-2", id="pet-2", species="dog")
    first = SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=2)
    second = SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=2)

    def book(index: int, slot: Slot) -> Booking:
        hold = reservation_create(actor=owner(index), slot_id=slot.id, pet_id=f"pet-{index}")
        return booking_confirm_reservation(actor=owner(index), reservation_id=hold.id)

    a, b = book(1, first), book(2, second)
    staff = staff_of(clinic_service.clinic_id)
    rounds = 15
    errors: list[BaseException] = []

    def move(booking_id, targets: list[Slot], barrier: threading.Barrier) -> None:
        for target in targets:
            barrier.wait()
            try:
                booking_reschedule(
                    actor=staff, booking_id=booking_id, slot_id=target.id, reason="swap"
                )
            except BaseException as exc:  # any error surfacing is a failure of the test
                errors.append(exc)

    barrier = threading.Barrier(2)
    a_targets = [second if i % 2 == 0 else first for i in range(rounds)]
    b_targets = [first if i % 2 == 0 else second for i in range(rounds)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(in_thread, lambda: move(a.id, a_targets, barrier)),
            pool.submit(in_thread, lambda: move(b.id, b_targets, barrier)),
        ]
        for future in futures:
            future.result()

    assert errors == []
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.slot_id == a_targets[-1].id
    assert b.slot_id == b_targets[-1].id
    assert a.version == b.version == 1 + rounds
    assert_counters_match_rows(first, second)
    assert (
        Event.objects.filter(
            aggregate_id__in=[str(a.id), str(b.id)], event_type="BookingRescheduled"
        ).count()
        == 2 * rounds
    )


def test_cancel_racing_a_reschedule_of_the_same_booking_ends_one_way(
    clinic_service, staff_client, support_client, monkeypatch
):
    """Support cancels while staff reschedules the same booking, both released together.
    Whoever takes the slot lock second sees the other's change: a cancel that read the booking
    on its old slot must refuse (412, `_lock_booking`: it holds the wrong slot's locks) rather
    than give back a unit of a slot the booking left; a reschedule of a cancelled booking is
    409. Never a 500, counters equal rows, one final status. The cancel starts a little later
    in some rounds, so the reschedule also wins the lock while the cancel waits for it."""
    home = SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=40)
    target = SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=40)
    delays = [0.0, 0.002, 0.005, 0.01, 0.02]  # the cancel's late start, per round, cycled
    min_rounds, max_rounds = 10, 40
    outcomes: list[tuple[tuple[int, str | None], tuple[int, str | None]]] = []

    def answer(response) -> tuple[int, str | None]:
        body = response.json()
        if response.status_code == 200:
            return 200, None
        assert response.status_code in (409, 412), (response.status_code, body)
        assert set(body) == {"error"}, body
        assert body["error"]["message"], body
        return response.status_code, body["error"]["code"]

    def race(booking_id, delay: float):
        barrier = threading.Barrier(2)

        def cancel():
            barrier.wait()
            time.sleep(delay)
            return support_client.post(
                f"/api/v1/bookings/{booking_id}/cancel", {"reason": "vet ill"}, format="json"
            )

        def reschedule():
            barrier.wait()
            return staff_client.post(
                f"/api/v1/bookings/{booking_id}/reschedule",
                {"slot_id": str(target.id), "reason": "moved by the clinic"},
                format="json",
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            cancelled, moved = pool.submit(in_thread, cancel), pool.submit(in_thread, reschedule)
            return answer(cancelled.result()), answer(moved.result())

    for index in range(1, max_rounds + 1):
        LocalPetFactory(owner__id=f"owner-{index}", id=f"pet-{index}", species="dog")
        hold = reservation_create(actor=owner(index), slot_id=home.id, pet_id=f"pet-{index}")
        booking = booking_confirm_reservation(actor=owner(index), reservation_id=hold.id)
        cancelled, moved = race(booking.id, delays[index % len(delays)])
        outcomes.append((cancelled, moved))

        booking.refresh_from_db()
        if cancelled[0] == 200:
            assert booking.status == BookingStatus.CANCELLED
            # Cancel first: the reschedule that waited for the lock finds it cancelled. (Or
            # the reschedule committed before the cancel read the booking: both went through.)
            assert moved in ((200, None), (409, "invalid_transition"), (409, "slot_busy"))
        else:
            assert booking.status == BookingStatus.CONFIRMED
            assert cancelled in ((412, "version_conflict"), (409, "slot_busy"))
        assert booking.slot_id == (target.id if moved[0] == 200 else home.id)
        history = list(
            BookingHistory.objects.filter(booking=booking).values_list("from_status", "to_status")
        )
        cancels = history.count(("confirmed", "cancelled"))
        assert cancels == (1 if cancelled[0] == 200 else 0), history
        events = Event.objects.filter(aggregate_id=str(booking.id))
        assert events.filter(event_type="BookingCancelled").count() == cancels
        moves = events.filter(event_type="BookingRescheduled").count()
        assert moves == (1 if moved[0] == 200 else 0)
        assert_counters_match_rows(home, target)
        lost = any(c == (412, "version_conflict") for c, _ in outcomes)
        won = any(c[0] == 200 for c, _ in outcomes)
        if index >= min_rounds and lost and won:
            break
    assert any(c[0] == 200 for c, _ in outcomes), outcomes

    # The guard itself, whatever the rounds' timing gave: the cancel reads the booking on
    # `home`, then the whole reschedule commits before the cancel goes for its locks.
    from bookings.services import lifecycle

    read_it, moved_it = threading.Event(), threading.Event()
    original = lifecycle._booking_for_change

    def read_then_wait(**kwargs):
        seen = original(**kwargs)
        if threading.current_thread().name == "cancel":
            read_it.set()
            assert moved_it.wait(30), "the reschedule did not finish"
        return seen

    monkeypatch.setattr(lifecycle, "_booking_for_change", read_then_wait)
    LocalPetFactory(owner__id="owner-forced", id="pet-forced", species="dog")
    forced = Principal(sub="owner-forced", roles=frozenset({"pet_owner"}))
    hold = reservation_create(actor=forced, slot_id=home.id, pet_id="pet-forced")
    booking = booking_confirm_reservation(actor=forced, reservation_id=hold.id)

    def cancel_forced():
        threading.current_thread().name = "cancel"
        return support_client.post(
            f"/api/v1/bookings/{booking.id}/cancel", {"reason": "vet ill"}, format="json"
        )

    def reschedule_forced():
        assert read_it.wait(30), "the cancel did not read the booking"
        try:
            return staff_client.post(
                f"/api/v1/bookings/{booking.id}/reschedule",
                {"slot_id": str(target.id), "reason": "moved by the clinic"},
                format="json",
            )
        finally:
            moved_it.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        cancelled = pool.submit(in_thread, cancel_forced)
        moved = pool.submit(in_thread, reschedule_forced)
        assert answer(moved.result()) == (200, None)
        assert answer(cancelled.result()) == (412, "version_conflict")
    booking.refresh_from_db()
    assert (booking.status, booking.slot_id) == (BookingStatus.CONFIRMED, target.id)
    assert_counters_match_rows(home, target)
