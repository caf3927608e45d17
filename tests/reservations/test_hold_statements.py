"""The hot paths' statement counts: the slot-write gateway adds no round trip to a hold and
takes reads out of the confirm (issue 13 point 1, issue 11 point 4); and a hold's Redis round
trips."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bookings.models import Booking, BookingHistory
from bookings.services import booking_confirm_reservation
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.services import reservation_create

from ..factories import SlotFactory
from ..redis_commands import redis_round_trips

pytestmark = pytest.mark.django_db(transaction=True)
OWNER = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
# Counted with BEGIN and COMMIT. Before the gateway (e7a51c8): a hold 7, a confirm 18 (three
# more row reads, two SELECT MAX(aggregate_version), a second slot row lock). A hold: the slot,
# the pet (embedded users), the fair-use count of live holds (issue 12), then BEGIN, the write
# (unit, hold and event in one statement) and COMMIT, sent together; it was 9.
HOLD_STATEMENTS = 6
# A confirm: the hold, the fair-use counts (issue 12), then BEGIN, the slot row lock, the hold's
# fenced UPDATE, the unit converted with the booking and its history row in one statement, the
# three events in one INSERT, COMMIT; it was 12 (a statement each for the unit, the booking,
# the history row and every event).
CONFIRM_STATEMENTS = 8
# The owner's lock and the slot's lock together (two SET NX, one round trip), then one round
# trip with the after-commit search-generation bump and both releases (before: 5, a release
# each and the bump on its own; then 3, a SET NX each). The pet comes from the local cache once
# warm.
HOLD_REDIS_ROUND_TRIPS = 2


def _statements(action) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        action()
    return [query["sql"] for query in captured.captured_queries]


def test_a_hold_costs_no_more_statements_than_before_the_gateway(owner_pet, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)
    reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")  # warm the caches
    sql = _statements(lambda: reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1"))
    assert len(sql) <= HOLD_STATEMENTS, sql
    # The common hold takes its unit with the conditional UPDATE, no row lock read first, and
    # the same statement inserts the hold and its event (BEGIN and COMMIT travel with it:
    # tests/core/test_db.py).
    assert not any("FOR UPDATE" in statement for statement in sql), sql
    (write,) = [statement for statement in sql if "UPDATE slots" in statement]
    assert 'INSERT INTO "reservations"' in write, write
    assert 'INSERT INTO "events"' in write, write


def test_a_hold_costs_two_redis_round_trips(owner_pet, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)
    reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")  # warm the caches
    with redis_round_trips() as sent:
        reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    assert len(sent) <= HOLD_REDIS_ROUND_TRIPS, sent
    last = sent[-1]
    assert b"INCR" in last, last  # the generation bump went with the releases
    assert last.count(b"EVALSHA") == 1, last  # one command: the bumps and both releases
    assert sent[0].count(b"SET") == 2, sent[0]  # the owner's lock and the slot's, together


def test_a_confirm_reads_no_max_aggregate_version_and_fewer_rows(owner_pet, clinic_service):
    slot = SlotFactory(service=clinic_service, capacity=3)
    hold = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    sql = _statements(lambda: booking_confirm_reservation(actor=OWNER, reservation_id=hold.id))
    assert not any("MAX(" in statement.upper() for statement in sql), sql
    assert len(sql) <= CONFIRM_STATEMENTS, sql


def test_a_confirm_writes_the_unit_booking_and_history_together_and_its_events_in_order(
    owner_pet, clinic_service
):
    slot = SlotFactory(service=clinic_service, capacity=3)
    hold = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    sql = _statements(lambda: booking_confirm_reservation(actor=OWNER, reservation_id=hold.id))
    (convert,) = [statement for statement in sql if "UPDATE slots" in statement]
    assert 'INSERT INTO "bookings"' in convert, convert
    assert 'INSERT INTO "booking_history"' in convert, convert
    # ...and the events in one INSERT of their own (not in the gated statement, whose
    # INSERTs PostgreSQL may run in any order; the ids must follow the versions).
    assert len([statement for statement in sql if 'INSERT INTO "events"' in statement]) == 1
    assert 'INSERT INTO "events"' not in convert
    booking = Booking.objects.get(reservation_id=hold.id)
    written = (
        Event.objects.filter(aggregate_id__in=[str(hold.id), str(booking.id)])
        .exclude(event_type="ReservationCreated")
        .order_by("id")
    )
    # The relay publishes by id: the hold's confirm, then the booking's events in version order.
    assert [(e.event_type, e.aggregate_version) for e in written] == [
        ("ReservationConfirmed", 2),
        ("BookingCreated", 1),
        ("BookingConfirmed", 2),
    ]
    assert booking.event_version == 2
    assert BookingHistory.objects.filter(booking=booking, to_status="confirmed").count() == 1
    slot.refresh_from_db()
    assert (slot.held_count, slot.booked_count, slot.version) == (0, 1, 3)


def test_the_lazy_expiry_read_inside_serializable_writes_has_its_own_small_index(slot):
    from django.db import transaction
    from django.utils import timezone

    from reservations.models import Reservation

    # Holds of a few owners over a few slots, half of them past expiry (the job is behind),
    # and statistics about them (with none, an empty table gives every index the same cost).
    now = timezone.now()
    others = SlotFactory.create_batch(8, service=slot.service, capacity=50)
    Reservation.objects.bulk_create(
        Reservation(
            slot=other,
            user_id=f"owner-{n % 4}",
            pet_id="pet-1",
            pet_name="Rex",
            expires_at=now + dt.timedelta(minutes=10 if n % 2 else -10),
        )
        for other in [*others, slot]
        for n in range(40)
    )
    stale = Reservation.objects.filter(
        slot_id=slot.id, status="held", expires_at__lte=timezone.now()
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE reservations")
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is too small to index
        plan = stale.explain()
    # Either of the slot's own indexes keeps the predicate locks on this slot's held holds (not
    # on every owner's, nor on everyone's holds by expiry).
    assert "reservations_slot_held_idx" in plan or "reservations_slot_status_idx" in plan, plan


def test_the_confirm_fence_can_only_find_its_hold_by_primary_key(owner_pet, clinic_service):
    """The fence used to let PostgreSQL walk the partial indexes of held holds (by expiry, by
    owner, by slot) instead of the primary key, which it did while the table's statistics were
    young: every live hold read, a predicate lock on each of their pages, and every concurrent
    hold made the confirm fail to serialize. Which indexes a statement may use does not depend
    on statistics: with the primary key out of the way, the fence has none left."""
    from django.db import transaction
    from django.utils import timezone

    slot = SlotFactory(service=clinic_service, capacity=3)
    hold = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    sql = _statements(lambda: booking_confirm_reservation(actor=OWNER, reservation_id=hold.id))
    (fence,) = [s for s in sql if s.startswith('UPDATE "reservations"')]
    # The fence as it was: status and expiry as plain conditions.
    old = (
        fence.split(" WHERE ")[0]
        + f" WHERE expires_at > '{timezone.now().isoformat()}'::timestamptz"
        + f" AND id = '{hold.id}'::uuid AND status = 'held' AND version = 1"
    )

    def plan_without_the_primary_key(statement: str) -> str:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("ALTER TABLE reservations DROP CONSTRAINT reservations_pkey CASCADE")
            cursor.execute("SET LOCAL enable_seqscan = off")  # any index it may use, it uses
            cursor.execute("EXPLAIN " + statement)
            found = "\n".join(row[0] for row in cursor.fetchall())
            transaction.set_rollback(True)
        return found

    assert "Seq Scan on reservations" in plan_without_the_primary_key(fence)
    walked = plan_without_the_primary_key(old)
    assert "reservations_held_expiry_idx" in walked or "_held_idx" in walked, walked
