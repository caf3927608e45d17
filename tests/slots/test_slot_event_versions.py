"""A slot's event versions come from its own row (Slot.event_version), never from
max(aggregate_version) of the events: SlotCreated 1, each SlotUpdated one more, also after
retention has purged the slot's published events (issue 11: no such read in a transaction)."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from petpro_booking.core.principal import SYSTEM
from petpro_booking.events.models import Event
from slots.locking import slot_write
from slots.models import Slot, SlotStatus
from slots.services import slot_counters_correct, slot_create, slot_update

pytestmark = pytest.mark.django_db


def versions(slot: Slot) -> list[tuple[str, int]]:
    return list(
        Event.objects.filter(aggregate_id=str(slot.id))
        .order_by("aggregate_version")
        .values_list("event_type", "aggregate_version")
    )


@pytest.fixture
def created(clinic_service) -> Slot:
    start = (timezone.now() + dt.timedelta(days=5)).replace(microsecond=0)
    return slot_create(
        actor=SYSTEM,
        clinic_id=clinic_service.clinic_id,
        service_id=clinic_service.id,
        start_at=start,
        end_at=start + dt.timedelta(minutes=30),
        capacity=2,
    )


@pytest.mark.django_db(transaction=True)  # the repair's slot write is a SERIALIZABLE transaction
def test_updates_and_a_repair_number_their_events_from_the_slot_row(created):
    with CaptureQueriesContext(connection) as queries:
        slot_update(actor=SYSTEM, slot_id=created.id, capacity=3)
        slot_update(actor=SYSTEM, slot_id=created.id, status=SlotStatus.CLOSED)

        def repair(slot: Slot) -> None:
            slot_counters_correct(
                slot=slot, booked_count=0, held_count=0, actor=SYSTEM, reason="consistency_repair"
            )

        slot_write(created, name="test_repair", decide=repair)
    assert not [q["sql"] for q in queries.captured_queries if "MAX(" in q["sql"].upper()]
    assert versions(created) == [
        ("SlotCreated", 1),
        ("SlotUpdated", 2),
        ("SlotUpdated", 3),
        ("SlotUpdated", 4),
    ]
    created.refresh_from_db()
    assert created.event_version == 4


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_versions_go_on_after_retention_purged_the_slots_events(created):
    slot_update(actor=SYSTEM, slot_id=created.id, capacity=3)
    Event.objects.filter(aggregate_id=str(created.id)).update(published_at=timezone.now())
    Event.objects.filter(aggregate_id=str(created.id)).delete()  # what retention does

    slot_update(actor=SYSTEM, slot_id=created.id, capacity=4)

    assert versions(created) == [("SlotUpdated", 3)]  # not 1 again: consumers saw 1 and 2


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_the_migration_takes_each_edited_slots_last_event_version(created, clinic_service):
    slot_update(actor=SYSTEM, slot_id=created.id, capacity=3)
    slot_update(actor=SYSTEM, slot_id=created.id, capacity=4)
    never_edited = slot_create(
        actor=SYSTEM,
        clinic_id=clinic_service.clinic_id,
        service_id=clinic_service.id,
        start_at=created.start_at + dt.timedelta(hours=1),
        end_at=created.end_at + dt.timedelta(hours=1),
    )
    Slot.objects.update(event_version=1)  # as the column starts on an existing database

    migration = importlib.import_module("slots.migrations.0006_slot_event_version")
    migration.from_events(apps, None)

    assert Slot.objects.get(id=created.id).event_version == 3
    assert Slot.objects.get(id=never_edited.id).event_version == 1
