"""Real concurrency on PostgreSQL and Redis: many owners released together on one slot get
exactly `capacity` holds, the rest a clean 409 — with Redis up and with Redis stopped — and
the slot's counters always equal the rows they count."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from petpro_booking.core.locking import REDIS_DOWN_COOLDOWN_SECONDS
from petpro_booking.events.models import Event
from reservations.models import Reservation
from reservations.services import (
    reservation_create,
    reservation_expire_due,
    reservation_mark_confirmed,
)
from slots.locking import slot_rows_lock
from slots.models import Slot
from slots.services import slot_convert_hold

from ..conftest import api_client_for
from ..factories import SlotFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ATTEMPTS = 55


def released_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `count` threads that start at the same instant; results in order
    (an exception is returned as the result)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # reported by the caller's assertions
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


# A contender told slot_busy ("retry in a moment") tries again, as a client would.
BUSY_RETRIES = 40
BUSY_PAUSE_SECONDS = 0.05


def hold_over_http(slot: Slot) -> Callable[[int], tuple[int, str | None]]:
    clients = [api_client_for(sub=f"owner-{i + 1}", roles=["pet_owner"]) for i in range(ATTEMPTS)]

    def work(index: int) -> tuple[int, str | None]:
        for _ in range(BUSY_RETRIES):
            response = clients[index].post(
                "/api/v1/reservations",
                {"slot_id": str(slot.id), "pet_id": f"pet-{index + 1}"},
                format="json",
            )
            code = (response.json().get("error") or {}).get("code")
            if code != "slot_busy":
                break
            # The test client keeps the thread's pooled connection (a server gives it back
            # after each request): give it back, or the waiting ones starve the others.
            connections.close_all()
            time.sleep(BUSY_PAUSE_SECONDS)
        return response.status_code, code

    return work


def assert_counters_match_rows(slot: Slot) -> None:
    slot.refresh_from_db()
    held = Reservation.objects.filter(slot=slot, status="held").count()
    confirmed = Reservation.objects.filter(slot=slot, status="confirmed").count()
    assert slot.held_count == held
    assert slot.booked_count == confirmed
    assert slot.booked_count + slot.held_count <= slot.capacity


def assert_exactly(results: list[tuple[int, str | None]], *, holds: int) -> None:
    """Exactly capacity holds, every other attempt a 409 the client understands. Contenders
    retried slot_busy (a lock wait that ran out on a loaded machine is "retry", not "no"), so
    the units all went: a contender may end on slot_busy only once nothing is left."""
    statuses = collections.Counter(status for status, _ in results)
    codes = {code for status, code in results if status == 409}
    assert set(statuses) <= {201, 409}, results
    assert statuses[201] + statuses[409] == ATTEMPTS
    assert codes <= {"slot_unavailable", "slot_busy"}, results
    assert statuses[201] == holds, results


@pytest.mark.parametrize("capacity", [1, 3])
def test_many_owners_at_once_get_exactly_capacity_holds(many_owners, clinic_service, capacity):
    slot = SlotFactory(service=clinic_service, capacity=capacity)
    results = released_together(ATTEMPTS, hold_over_http(slot))
    assert_exactly(results, holds=capacity)
    assert_counters_match_rows(slot)
    created = sum(1 for status, _ in results if status == 201)
    assert Event.objects.filter(event_type="ReservationCreated").count() == created


@pytest.mark.fault
@pytest.mark.parametrize("capacity", [1, 3])
def test_with_redis_stopped_the_database_alone_still_refuses_overbooking(
    many_owners, clinic_service, capacity, private_redis, settings
):
    settings.REDIS_URL = private_redis.url  # the lock manager's Redis; the cache stays as is
    labels = {"operation": "slot_lock"}
    fallbacks = REGISTRY.get_sample_value("petpro_redis_unavailable_fallbacks_total", labels)
    private_redis.stop()
    try:
        slot = SlotFactory(service=clinic_service, capacity=capacity)
        results = released_together(ATTEMPTS, hold_over_http(slot))
    finally:
        private_redis.start()
    assert_exactly(results, holds=capacity)
    assert_counters_match_rows(slot)
    after = REGISTRY.get_sample_value("petpro_redis_unavailable_fallbacks_total", labels)
    assert after >= (fallbacks or 0) + ATTEMPTS

    # Redis back: holds take real leases again.
    time.sleep(REDIS_DOWN_COOLDOWN_SECONDS + 0.05)
    another = SlotFactory(service=clinic_service, capacity=1)
    assert hold_over_http(another)(capacity) == (201, None)
    assert REGISTRY.get_sample_value("petpro_redis_unavailable_fallbacks_total", labels) == after


def test_expiry_job_in_two_workers_expires_each_hold_once(many_owners, clinic_service):
    slots = [SlotFactory(service=clinic_service, capacity=5) for _ in range(20)]
    past = timezone.now() - dt.timedelta(seconds=5)
    Reservation.objects.bulk_create(
        Reservation(slot=slot, user_id="owner-1", pet_id="pet-1", pet_name="Rex", expires_at=past)
        for slot in slots
        for _ in range(5)
    )
    Slot.objects.filter(id__in=[s.id for s in slots]).update(held_count=5)

    results = released_together(2, lambda _: reservation_expire_due(batch_size=10))
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 100
    assert Reservation.objects.filter(status="expired").count() == 100
    per_hold = collections.Counter(
        Event.objects.filter(event_type="ReservationExpired").values_list("aggregate_id", flat=True)
    )
    assert len(per_hold) == 100
    assert set(per_hold.values()) == {1}
    for slot in slots:
        assert_counters_match_rows(slot)


def test_confirm_racing_expiry_ends_confirmed_or_expired_never_both(many_owners, clinic_service):
    slots = [SlotFactory(service=clinic_service, capacity=2) for _ in range(15)]
    holds = [
        reservation_create(actor=owner, slot_id=slot.id, pet_id=f"pet-{index + 1}")
        for index, (slot, owner) in enumerate(zip(slots * 2, many_owners, strict=False))
    ]
    # Every hold runs out in the middle of the race.
    deadline = timezone.now() + dt.timedelta(milliseconds=300)
    Reservation.objects.filter(id__in=[h.id for h in holds]).update(expires_at=deadline)

    refusals: list[str] = []

    def confirm_all(_: int) -> int:
        confirmed = 0
        for hold in holds:
            try:
                with transaction.atomic():
                    reservation_mark_confirmed(
                        reservation=hold,
                        actor=many_owners[0],
                        slot=slot_rows_lock(hold.slot_id)[hold.slot_id],
                        seen_version=1,
                    )
                    slot_convert_hold(slot_id=hold.slot_id)
                confirmed += 1
            except Exception as exc:
                refusals.append(getattr(exc, "code", repr(exc)))
            time.sleep(0.01)
        return confirmed

    def expire_repeatedly(_: int) -> int:
        expired = 0
        stop = time.monotonic() + 1.5
        while time.monotonic() < stop:
            expired += reservation_expire_due(batch_size=5)
            time.sleep(0.005)
        return expired

    confirmed, expired = released_together(
        2, lambda i: confirm_all(i) if i == 0 else expire_repeatedly(i)
    )
    assert isinstance(confirmed, int), confirmed
    assert isinstance(expired, int), expired
    # Invariants only: how the race splits depends on the machine's load, not on the code.
    assert confirmed + expired == len(holds)
    assert set(refusals) <= {"reservation_expired", "reservation_not_held"}
    for hold in holds:
        hold.refresh_from_db()
        assert hold.status in {"confirmed", "expired"}
        kinds = set(
            Event.objects.filter(aggregate_id=str(hold.id))
            .exclude(event_type="ReservationCreated")
            .values_list("event_type", flat=True)
        )
        assert kinds == {
            "ReservationConfirmed" if hold.status == "confirmed" else "ReservationExpired"
        }
    for slot in slots:
        assert_counters_match_rows(slot)
