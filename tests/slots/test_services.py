"""Slot services: create, generate (time zones and DST), update with versions, close."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from petpro_booking.core.errors import ValidationFailed, VersionConflict
from petpro_booking.core.principal import SYSTEM, Principal
from petpro_booking.events.models import Event
from slots.errors import CapacityConflict, NotClinicStaff
from slots.models import Slot, SlotStatus
from slots.services import WeeklyWindow, slot_close, slot_create, slot_generate, slot_update

from ..factories import ClinicFactory, ClinicServiceFactory

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
STAFF = Principal(sub="staff-1", roles=frozenset({"clinic_staff"}), clinic_ids=frozenset({"c1"}))


@pytest.fixture
def berlin_service():
    clinic = ClinicFactory(id="c1", timezone="Europe/Berlin")
    return ClinicServiceFactory(id="s1", clinic=clinic, duration_minutes=30)


def morning(weekday: int) -> WeeklyWindow:
    return WeeklyWindow(weekday=weekday, start=dt.time(9), end=dt.time(10))


def test_generate_cuts_windows_into_service_durations(berlin_service):
    created = slot_generate(
        actor=STAFF,
        clinic_id="c1",
        service_id="s1",
        date_from=dt.date(2027, 1, 4),  # a Monday
        date_to=dt.date(2027, 1, 10),
        weekly=[morning(1), morning(3)],
    )
    assert created == 4
    starts = [s.start_at.astimezone(BERLIN) for s in Slot.objects.order_by("start_at")]
    assert [(s.day, s.hour, s.minute) for s in starts] == [
        (4, 9, 0),
        (4, 9, 30),
        (6, 9, 0),
        (6, 9, 30),
    ]
    assert all(s.end_at - s.start_at == dt.timedelta(minutes=30) for s in Slot.objects.all())
    assert Event.objects.filter(event_type="SlotCreated").count() == 4


def test_generate_writes_its_events_in_statements_that_do_not_grow_with_the_slots(
    berlin_service,
):
    """A schedule's SlotCreated events go in one INSERT, with version 1 and no version read:
    a week and a fortnight of slots take the same number of statements."""

    def statements(date_from: dt.date, date_to: dt.date) -> int:
        with CaptureQueriesContext(connection) as queries:
            slot_generate(
                actor=STAFF,
                clinic_id="c1",
                service_id="s1",
                date_from=date_from,
                date_to=date_to,
                weekly=[morning(day) for day in range(1, 8)],
            )
        return len(queries)

    week = statements(dt.date(2027, 1, 4), dt.date(2027, 1, 10))  # 14 slots
    fortnight = statements(dt.date(2027, 1, 11), dt.date(2027, 1, 24))  # 28 slots
    assert fortnight == week
    events = Event.objects.filter(event_type="SlotCreated")
    assert events.count() == Slot.objects.count() == 42
    assert {e.aggregate_id for e in events} == {str(s.id) for s in Slot.objects.all()}
    assert set(events.values_list("aggregate_version", flat=True)) == {1}
    first = events.order_by("id").first()
    assert first.metadata["actor"] == {"type": "staff", "id": "staff-1"}
    slot = Slot.objects.get(id=first.aggregate_id)
    assert first.payload["start_at"] == slot.start_at.isoformat()


def test_generate_keeps_local_time_across_dst_changes(berlin_service):
    # Berlin moves from UTC+1 to UTC+2 on 2027-03-28 and back on 2027-10-31.
    slot_generate(
        actor=STAFF,
        clinic_id="c1",
        service_id="s1",
        date_from=dt.date(2027, 3, 26),
        date_to=dt.date(2027, 3, 29),
        weekly=[WeeklyWindow(weekday=d, start=dt.time(9), end=dt.time(9, 30)) for d in range(1, 8)],
    )
    utc_hours = [s.start_at.astimezone(dt.UTC).hour for s in Slot.objects.order_by("start_at")]
    local_hours = [s.start_at.astimezone(BERLIN).hour for s in Slot.objects.order_by("start_at")]
    assert local_hours == [9, 9, 9, 9]
    assert utc_hours == [8, 8, 7, 7]  # Fri, Sat in winter time; Sun, Mon in summer time


def test_generate_skips_nonexistent_local_times_and_takes_first_ambiguous(berlin_service):
    night = [WeeklyWindow(weekday=7, start=dt.time(2), end=dt.time(3))]
    spring = slot_generate(
        actor=STAFF,
        clinic_id="c1",
        service_id="s1",
        date_from=dt.date(2027, 3, 28),
        date_to=dt.date(2027, 3, 28),
        weekly=night,
    )
    assert spring == 0  # 02:00-03:00 does not exist that night
    autumn = slot_generate(
        actor=STAFF,
        clinic_id="c1",
        service_id="s1",
        date_from=dt.date(2027, 10, 31),
        date_to=dt.date(2027, 10, 31),
        weekly=night,
    )
    # The clocks show 02:00-03:00 for two hours that night: from the first 02:00 (00:00 UTC,
    # CEST) to 03:00 CET (02:00 UTC), cut in elapsed time.
    assert autumn == 4
    starts = list(Slot.objects.order_by("start_at").values_list("start_at", flat=True))
    assert starts == [dt.datetime(2027, 10, 31, 0, m, tzinfo=dt.UTC) for m in (0, 30)] + [
        dt.datetime(2027, 10, 31, 1, m, tzinfo=dt.UTC) for m in (0, 30)
    ]


def test_generate_skips_existing_slots(berlin_service):
    kwargs = {
        "actor": STAFF,
        "clinic_id": "c1",
        "service_id": "s1",
        "date_from": dt.date(2027, 1, 4),
        "date_to": dt.date(2027, 1, 4),
        "weekly": [morning(1)],
    }
    assert slot_generate(**kwargs) == 2
    assert slot_generate(**kwargs) == 0
    assert Slot.objects.count() == 2


def test_generate_refuses_unbounded_or_reversed_ranges(berlin_service):
    with pytest.raises(ValidationFailed) as too_long:
        slot_generate(
            actor=STAFF,
            clinic_id="c1",
            service_id="s1",
            date_from=dt.date(2027, 1, 1),
            date_to=dt.date(2028, 1, 1),
            weekly=[morning(1)],
        )
    assert "date_to" in too_long.value.details
    with pytest.raises(ValidationFailed):
        slot_generate(
            actor=STAFF,
            clinic_id="c1",
            service_id="s1",
            date_from=dt.date(2027, 1, 5),
            date_to=dt.date(2027, 1, 4),
            weekly=[morning(1)],
        )


def test_staff_of_another_clinic_cannot_create(berlin_service):
    stranger = Principal(sub="x", roles=frozenset({"clinic_staff"}), clinic_ids=frozenset({"c9"}))
    start = dt.datetime(2027, 1, 4, 9, tzinfo=BERLIN)
    with pytest.raises(NotClinicStaff):
        slot_create(
            actor=stranger,
            clinic_id="c1",
            service_id="s1",
            start_at=start,
            end_at=start + dt.timedelta(minutes=30),
        )


def test_create_rejects_duplicate_start_and_foreign_service(berlin_service):
    start = dt.datetime(2027, 1, 4, 9, tzinfo=BERLIN)
    slot_create(
        actor=STAFF,
        clinic_id="c1",
        service_id="s1",
        start_at=start,
        end_at=start + dt.timedelta(minutes=30),
    )
    with pytest.raises(ValidationFailed) as duplicate:
        slot_create(
            actor=STAFF,
            clinic_id="c1",
            service_id="s1",
            start_at=start,
            end_at=start + dt.timedelta(minutes=30),
        )
    assert "start_at" in duplicate.value.details
    ClinicServiceFactory(id="other-service", clinic=ClinicFactory(id="c2"))
    with pytest.raises(ValidationFailed) as foreign:
        slot_create(
            actor=SYSTEM,
            clinic_id="c1",
            service_id="other-service",
            start_at=start,
            end_at=start + dt.timedelta(minutes=30),
        )
    assert "service_id" in foreign.value.details


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_update_is_fenced_on_version_and_taken_capacity(slot):
    Slot.objects.filter(id=slot.id).update(held_count=1, capacity=3)
    with pytest.raises(VersionConflict):
        slot_update(actor=SYSTEM, slot_id=slot.id, expected_version=slot.version + 5, capacity=2)
    Slot.objects.filter(id=slot.id).update(held_count=2)
    with pytest.raises(CapacityConflict) as conflict:
        slot_update(actor=SYSTEM, slot_id=slot.id, capacity=1)
    assert conflict.value.details == {"taken": 2, "requested_capacity": 1}
    updated = slot_update(actor=SYSTEM, slot_id=slot.id, expected_version=slot.version, capacity=5)
    assert (updated.capacity, updated.version) == (5, slot.version + 1)
    event = Event.objects.get(aggregate_id=str(slot.id), event_type="SlotUpdated")
    assert event.payload["capacity"] == 5
    assert event.payload["changed"] == ["capacity"]


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_close_and_noop_update(slot):
    closed = slot_close(actor=SYSTEM, slot_id=slot.id)
    assert closed.status == SlotStatus.CLOSED
    assert closed.available_capacity == 0
    same = slot_update(actor=SYSTEM, slot_id=slot.id, status=SlotStatus.CLOSED)
    assert same.version == closed.version  # nothing changed, nothing written


def test_buffers_space_generated_slots_and_refuse_a_manual_neighbour(clinic_service):
    clinic_service.duration_minutes = 60
    clinic_service.buffer_after_minutes = 15
    clinic_service.buffer_before_minutes = 5
    clinic_service.save()
    monday = dt.date(2027, 3, 1)
    created = slot_generate(
        actor=SYSTEM,
        clinic_id=clinic_service.clinic_id,
        service_id=clinic_service.id,
        date_from=monday,
        date_to=monday,
        weekly=[WeeklyWindow(weekday=1, start=dt.time(9), end=dt.time(12))],
    )
    starts = [
        s.astimezone(dt.timezone(dt.timedelta(hours=1))).strftime("%H:%M")
        for s in Slot.objects.order_by("start_at").values_list("start_at", flat=True)
    ]
    assert created == 2
    assert starts == ["09:00", "10:20"]  # 60 min + 15 after + 5 before; 11:40 would not fit
    first_end = Slot.objects.order_by("start_at").first().end_at
    with pytest.raises(ValidationFailed) as refused:
        slot_create(
            actor=SYSTEM,
            clinic_id=clinic_service.clinic_id,
            service_id=clinic_service.id,
            start_at=first_end + dt.timedelta(minutes=19),
            end_at=first_end + dt.timedelta(minutes=79),
        )
    assert "start_at" in refused.value.details
    # At the edge: 15 min after the last slot plus 5 min before the new one is allowed.
    last_end = Slot.objects.order_by("start_at").last().end_at
    slot_create(
        actor=SYSTEM,
        clinic_id=clinic_service.clinic_id,
        service_id=clinic_service.id,
        start_at=last_end + dt.timedelta(minutes=20),
        end_at=last_end + dt.timedelta(minutes=80),
    )
    assert Slot.objects.count() == 3
