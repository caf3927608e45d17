"""One rule for available capacity (slots/models.py), used by the model, the API, the search,
the admin lists and slot picker, and the back office."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, connection, transaction

from bookings.admin import SlotChoiceField
from bookings.backoffice.selectors import SlotCell
from slots.admin import SlotAdmin
from slots.models import (
    CAPACITY_MAX,
    Slot,
    SlotStatus,
    available_capacity,
    available_capacity_sql,
    free_units,
    free_units_sql,
)

from ..factories import SlotFactory


@pytest.mark.parametrize(
    ("status", "capacity", "booked", "held", "left"),
    [
        (SlotStatus.OPEN, 3, 1, 1, 1),
        (SlotStatus.OPEN, 3, 0, 0, 3),
        (SlotStatus.CLOSED, 3, 0, 0, 0),  # a closed slot takes no one
        (SlotStatus.OPEN, 1, 1, 1, 0),  # never negative
    ],
)
def test_available_capacity(status, capacity, booked, held, left):
    assert (
        available_capacity(status=status, capacity=capacity, booked_count=booked, held_count=held)
        == left
    )
    slot = Slot(status=status, capacity=capacity, booked_count=booked, held_count=held)
    assert slot.available_capacity == left


def test_the_admins_slot_picker_counts_closed_slots_as_full_and_never_below_zero(slot):
    field = SlotChoiceField(queryset=Slot.objects.all())
    slot.status = SlotStatus.CLOSED
    assert ", 0 free" in field.label_from_instance(slot)
    slot.status, slot.capacity, slot.booked_count, slot.held_count = SlotStatus.OPEN, 1, 1, 1
    assert ", 0 free" in field.label_from_instance(slot)


@pytest.mark.parametrize(
    ("status", "capacity", "booked", "held", "expired", "free", "left"),
    [
        (SlotStatus.OPEN, 3, 1, 2, 1, 1, 1),  # a hold past its expiry counts free
        (SlotStatus.CLOSED, 3, 0, 1, 1, 3, 0),  # free units, but closed: nothing to take
        (SlotStatus.OPEN, 1, 1, 1, 0, -1, 0),  # over-taken: free goes below 0, available not
    ],
)
def test_free_units_feed_the_rules_and_available_capacity_what_people_see(
    status, capacity, booked, held, expired, free, left
):
    counters = {
        "capacity": capacity,
        "booked_count": booked,
        "held_count": held,
        "expired_holds": expired,
    }
    assert free_units(**counters) == free
    assert available_capacity(status=status, **counters) == left


@pytest.fixture
def closed_and_held_slots(clinic_service):
    closed = SlotFactory(service=clinic_service, capacity=3, status=SlotStatus.CLOSED)  # room
    held = SlotFactory(service=clinic_service, capacity=2, held_count=2)  # every unit held
    room = SlotFactory(service=clinic_service, capacity=3, booked_count=1)
    return closed, held, room


def test_a_closed_and_a_fully_held_slot_show_0_available_in_the_admin_list(
    client, closed_and_held_slots
):
    closed, held, room = closed_and_held_slots
    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.create(name="support"))
    client.force_login(user)

    page = client.get("/admin/slots/slot/")

    assert page.status_code == 200
    rows = {
        slot.pk: page.context["cl"].model_admin.available(slot)
        for slot in page.context["cl"].result_list
    }
    assert rows == {closed.pk: 0, held.pk: 0, room.pk: 2}
    html = page.content.decode()
    assert html.count('<td class="field-available">0</td>') == 2
    assert html.count('<td class="field-available">2</td>') == 1


def test_a_closed_and_a_fully_held_slot_show_0_available_in_the_api(
    owner_client, staff_client, closed_and_held_slots
):
    closed, held, room = closed_and_held_slots

    for slot, left in ((closed, 0), (held, 0), (room, 2)):
        answer = owner_client.get(f"/api/v1/slots/{slot.id}")
        assert answer.status_code == 200
        assert answer.json()["available_capacity"] == left
    listed = staff_client.get(
        f"/api/v1/slots?clinic_id={closed.clinic_id}&include_unbookable=true"
    ).json()["results"]
    assert len(listed) == 3
    assert {row["id"]: row["available_capacity"] for row in listed} == {
        str(closed.id): 0,
        str(held.id): 0,
        str(room.id): 2,
    }


def test_the_back_office_counts_a_closed_slot_as_0_free(closed_and_held_slots):
    cells = [
        SlotCell(slot=slot, starts=slot.start_at, ends=slot.end_at)
        for slot in closed_and_held_slots
    ]

    assert [(cell.state, cell.free) for cell in cells] == [("closed", 0), ("full", 0), ("open", 2)]


CASES = [
    (SlotStatus.OPEN, 3, 1, 2, 1),
    (SlotStatus.OPEN, 3, 0, 0, 0),
    (SlotStatus.CLOSED, 3, 0, 1, 1),
    (SlotStatus.OPEN, 1, 1, 1, 0),  # over-held (a capacity lowered under what is taken)
    (SlotStatus.CLOSED, 1, 1, 1, 0),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "capacity", "booked", "held", "expired"), CASES)
def test_the_search_statements_rule_is_the_same_rule(status, capacity, booked, held, expired):
    free = free_units_sql(slot="s", expired_holds="s.expired")
    sql = (
        f"SELECT {free}, {available_capacity_sql(status='s.status', free=free)} "  # noqa: S608
        "FROM (VALUES (%s, %s, %s, %s, %s)) AS s(status, capacity, booked_count, held_count, "
        "expired)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [str(status), capacity, booked, held, expired])
        row = cursor.fetchone()

    counters = {
        "capacity": capacity,
        "booked_count": booked,
        "held_count": held,
        "expired_holds": expired,
    }
    assert row == (free_units(**counters), available_capacity(status=status, **counters))


def test_the_slot_admins_column_shows_0_for_an_over_held_slot():
    column = SlotAdmin(Slot, admin.site).available
    assert column(Slot(status=SlotStatus.OPEN, capacity=1, booked_count=1, held_count=1)) == 0
    assert column(Slot(status=SlotStatus.CLOSED, capacity=3)) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("capacity", [0, CAPACITY_MAX + 1])
def test_the_database_refuses_a_capacity_outside_one_to_capacity_max(slot, capacity):
    """Behind the API's and the admin's bound: a row written past them is refused too."""
    with pytest.raises(IntegrityError, match="slots_capacity_in_range"), transaction.atomic():
        Slot.objects.filter(id=slot.id).update(capacity=capacity)
    assert Slot.objects.get(id=slot.id).capacity == slot.capacity


@pytest.mark.django_db
def test_the_capacity_migration_names_rows_outside_the_range_then_validates_the_check(slot):
    migration = importlib.import_module("slots.migrations.0007_slot_capacity_in_range")
    with connection.cursor() as cursor:  # as before the migration (rolled back with the test)
        # The fixture's deferred foreign-key checks would stop an ALTER TABLE in this
        # transaction; the migration itself runs on committed rows.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE slots DROP CONSTRAINT {migration.CONSTRAINT}")
    Slot.objects.filter(id=slot.id).update(capacity=0)
    refused = rf"1 slots have a capacity outside 1\.\.1000 .*{slot.id}"
    with pytest.raises(RuntimeError, match=refused), connection.schema_editor() as editor:
        migration.add_check(django_apps, editor)

    Slot.objects.filter(id=slot.id).update(capacity=2)
    with connection.schema_editor() as editor:
        migration.add_check(django_apps, editor)
        migration.add_check(django_apps, editor)  # again, as after a run stopped half-way
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = %s", [migration.CONSTRAINT]
        )
        assert cursor.fetchone() == (True,)
    assert migration.CAPACITY_MAX == CAPACITY_MAX  # a new bound needs a migration of its own
