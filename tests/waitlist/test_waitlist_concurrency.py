"""Real concurrency on PostgreSQL and Redis: many units freed at once (releases, the expiry
job in two workers, cancels) on slots with long lines, outsiders grabbing at the same time.
Afterwards every freed unit is a hold offered to the line, in FIFO order, no outsider got
one, no owner holds two offers, and no slot is over its capacity."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Count
from django.utils import timezone

from bookings.models import Booking
from bookings.services import booking_cancel, booking_confirm_reservation
from petpro_booking.core.errors import ApplicationError
from petpro_booking.core.principal import Principal
from reservations.models import Reservation
from reservations.services import reservation_create, reservation_expire_due, reservation_release
from slots.locking import SlotBusy
from slots.models import Slot
from waitlist.models import EntryStatus, WaitlistEntry
from waitlist.services import waitlist_join

from ..factories import LocalPetFactory, SlotFactory
from ..reservations.test_contention import released_together

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SLOTS, CAPACITY, LINE = 4, 3, 6


def owner(name: str) -> Principal:
    LocalPetFactory(owner__id=name, id=f"pet-{name}", species="dog")
    return Principal(sub=name, roles=frozenset({"pet_owner"}))


def assert_invariants(slots: list[Slot]) -> None:
    for slot in slots:
        slot.refresh_from_db()
        held = Reservation.objects.filter(slot=slot, status="held").count()
        booked = Booking.objects.filter(slot=slot).exclude(status="cancelled").count()
        assert (slot.held_count, slot.booked_count) == (held, booked)
        assert held + booked <= slot.capacity
    live_offers = (
        WaitlistEntry.objects.filter(status=EntryStatus.OFFERED)
        .values("user_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not live_offers.exists()


def line_of(slot: Slot) -> list[WaitlistEntry]:
    return list(WaitlistEntry.objects.filter(slot=slot).order_by("joined_at", "id"))


def test_many_freed_units_go_to_the_lines_in_fifo_order(clinic_service):
    slots = [SlotFactory(service=clinic_service, capacity=CAPACITY) for _ in range(SLOTS)]
    holders = {}
    for s, slot in enumerate(slots):
        for unit in range(CAPACITY):
            who = owner(f"holder-{s}-{unit}")
            holders[who.sub] = (
                who,
                reservation_create(actor=who, slot_id=slot.id, pet_id=f"pet-{who.sub}"),
            )
    waiting = {}
    for s, slot in enumerate(slots):
        for place in range(LINE):
            who = owner(f"waiter-{s}-{place}")
            waiting[who.sub] = who
            waitlist_join(actor=who, slot_id=slot.id, pet_id=f"pet-{who.sub}")
    outsiders = [owner(f"outsider-{i}") for i in range(6)]

    # Wave 1: every holder's unit freed at once (two thirds released, one third confirmed and
    # then cancelled), plus outsiders trying to hold each slot at the same instant.
    booked = {}
    for sub, (who, hold) in list(holders.items()):
        if sub.endswith("-2"):
            booked[sub] = booking_confirm_reservation(actor=who, reservation_id=hold.id)

    def wave_one(index: int):
        if index < len(holders):
            sub = list(holders)[index]
            who, hold = holders[sub]
            for _ in range(20):  # what a client does with 409 slot_busy: retry
                try:
                    if sub in booked:
                        return booking_cancel(actor=who, booking_id=booked[sub].id)
                    return reservation_release(actor=who, reservation_id=hold.id)
                except SlotBusy:
                    continue
            raise AssertionError("still busy after 20 attempts")
        who = outsiders[(index - len(holders)) % len(outsiders)]
        slot = slots[(index - len(holders)) % SLOTS]
        try:
            return reservation_create(actor=who, slot_id=slot.id, pet_id=f"pet-{who.sub}")
        except ApplicationError as exc:
            return exc.code

    results = released_together(len(holders) + 12, wave_one)
    assert not [r for r in results[: len(holders)] if isinstance(r, Exception)]  # all freed
    assert all(r in ("slot_unavailable", "slot_busy") for r in results[len(holders) :])
    assert_invariants(slots)
    for slot in slots:
        line = line_of(slot)
        assert [e.status for e in line] == ["offered"] * CAPACITY + ["waiting"] * (LINE - CAPACITY)
        assert (
            Reservation.objects.filter(
                slot=slot, status="held", user_id__startswith="outsider"
            ).count()
            == 0
        )

    # Wave 2: every offer lapses; two expiry workers and the outsiders race. Each unit goes to
    # the next in line (the first three lapsed, the next three offered).
    Reservation.objects.filter(status="held").update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    def wave_two(index: int):
        if index < 2:
            return reservation_expire_due(batch_size=5)
        who = outsiders[index % len(outsiders)]
        try:
            return reservation_create(
                actor=who, slot_id=slots[index % SLOTS].id, pet_id=f"pet-{who.sub}"
            )
        except ApplicationError as exc:
            return exc.code

    results = released_together(2 + 8, wave_two)
    assert not [
        r for r in results if isinstance(r, Exception) and not isinstance(r, ApplicationError)
    ]
    reservation_expire_due()  # what a busy slot's SKIP LOCKED left for the next run
    assert_invariants(slots)
    for slot in slots:
        line = line_of(slot)
        assert [e.status for e in line] == ["offer_expired"] * CAPACITY + ["offered"] * CAPACITY
        held = Reservation.objects.filter(slot=slot, status="held")
        assert sorted(held.values_list("user_id", flat=True)) == sorted(
            e.user_id for e in line[CAPACITY:]
        )
        slot.refresh_from_db()
        assert slot.held_count == CAPACITY  # no unit lost, none to an outsider
