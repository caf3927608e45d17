"""A slot's clinic is its service's clinic: a foreign key holds the pair on PostgreSQL (slots
migration 0005), the admin and `clinic_service_save` move a service only while it has no slots,
and slot creation checks the pair again under the service's lock."""

from __future__ import annotations

import datetime as dt
import importlib
import threading

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from petpro_booking.core.errors import ValidationFailed
from petpro_booking.core.principal import Principal
from slots import services
from slots.errors import NotClinicStaff
from slots.models import ClinicService, ClinicStaff, Slot
from slots.selectors import clinic_service_list, slot_search

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

BOTH = Principal(
    sub="staff-ab", roles=frozenset({"clinic_staff"}), clinic_ids=frozenset({"a", "b"})
)
ONLY_B = Principal(sub="staff-b", roles=frozenset({"clinic_staff"}), clinic_ids=frozenset({"b"}))


@pytest.fixture
def clinics():
    return ClinicFactory(id="a"), ClinicFactory(id="b")


@pytest.mark.django_db
def test_the_database_refuses_a_slot_under_another_clinic_than_its_services(clinics):
    service = ClinicServiceFactory(id="s", clinic=clinics[0])
    with pytest.raises(IntegrityError, match="slots_service_clinic_fk"), transaction.atomic():
        SlotFactory(service=service, clinic=clinics[1])
    assert not Slot.objects.exists()


@pytest.mark.django_db
def test_the_database_refuses_moving_a_service_that_has_slots(clinics):
    slot = SlotFactory(service=ClinicServiceFactory(id="s", clinic=clinics[0]))
    with pytest.raises(IntegrityError, match="slots_service_clinic_fk"), transaction.atomic():
        ClinicService.objects.filter(id="s").update(clinic_id="b")
    assert ClinicService.objects.get(id="s").clinic_id == Slot.objects.get(id=slot.id).clinic_id


@pytest.mark.django_db
def test_a_service_with_slots_keeps_its_clinic_and_says_why(clinics):
    SlotFactory(service=ClinicServiceFactory(id="s", clinic=clinics[0]))
    service = ClinicService.objects.get(id="s")
    service.clinic_id, service.name = "b", "Renamed"
    with pytest.raises(ValidationFailed) as refused:
        services.clinic_service_save(actor=BOTH, service=service)
    assert list(refused.value.details) == ["clinic"]
    assert ClinicService.objects.values_list("clinic_id", "name").get(id="s")[0] == "a"


@pytest.mark.django_db
def test_moving_a_service_away_needs_the_clinic_it_leaves(clinics):
    ClinicServiceFactory(id="s", clinic=clinics[0])
    service = ClinicService.objects.get(id="s")
    service.clinic_id = "b"
    with pytest.raises(NotClinicStaff):
        services.clinic_service_save(actor=ONLY_B, service=service)
    assert ClinicService.objects.get(id="s").clinic_id == "a"


@pytest.mark.django_db
def test_a_service_without_slots_moves_and_both_clinics_drop_their_cached_services(clinics):
    ClinicServiceFactory(id="s", clinic=clinics[0])
    assert [s.id for s in clinic_service_list(clinic_id="a")] == ["s"]  # cached now
    assert clinic_service_list(clinic_id="b") == []
    service = ClinicService.objects.get(id="s")
    service.clinic_id = "b"

    services.clinic_service_save(actor=BOTH, service=service)

    assert clinic_service_list(clinic_id="a") == []
    assert [s.id for s in clinic_service_list(clinic_id="b")] == ["s"]
    slot = services.slot_create(
        actor=BOTH,
        clinic_id="b",
        service_id="s",
        start_at=timezone.now() + dt.timedelta(days=3),
        end_at=timezone.now() + dt.timedelta(days=3, minutes=30),
    )
    assert slot.clinic_id == "b"


@pytest.mark.django_db
def test_the_owner_search_finds_a_services_slots_by_the_service(clinics):
    """The search no longer tests each slot's clinic: the key keeps it the service's."""
    mine = SlotFactory(service=ClinicServiceFactory(id="s", clinic=clinics[0]))
    SlotFactory(service=ClinicServiceFactory(id="t", clinic=clinics[1]), start_at=mine.start_at)
    page = slot_search(filters={"clinic_id": "a", "service_id": "s"}, page=1, page_size=20)
    assert [row["id"] for row in page["results"]] == [str(mine.id)]
    assert (
        slot_search(filters={"clinic_id": "b", "service_id": "s"}, page=1, page_size=20)["results"]
        == []
    )


@pytest.mark.django_db(transaction=True)
def test_a_slot_is_not_created_for_a_service_that_moved_while_it_waited_for_the_lock(clinics):
    """slot_create checks the service's clinic, then locks the service to write: a move that
    commits in between is seen under the lock (a 400, not the foreign key's IntegrityError)."""
    ClinicServiceFactory(id="s", clinic=clinics[0])
    locked, release = threading.Event(), threading.Event()

    def mover() -> None:
        try:
            with transaction.atomic():
                ClinicService.objects.select_for_update().get(id="s")
                locked.set()
                release.wait(10)
                ClinicService.objects.filter(id="s").update(clinic_id="b")
        finally:
            connection.close()

    thread = threading.Thread(target=mover)
    thread.start()
    assert locked.wait(10)
    timer = threading.Timer(0.5, release.set)  # the move commits while slot_create waits
    timer.start()
    start = timezone.now() + dt.timedelta(days=3)
    with pytest.raises(ValidationFailed) as refused:
        services.slot_create(
            actor=BOTH,
            clinic_id="a",
            service_id="s",
            start_at=start,
            end_at=start + dt.timedelta(minutes=30),
        )
    thread.join(10)
    timer.cancel()
    assert list(refused.value.details) == ["service_id"]
    assert not Slot.objects.exists()


@pytest.fixture
def staff_of_both(client, clinics):
    user = User.objects.create_user("staff-ab", password="pw", is_staff=True)
    ClinicStaff.objects.bulk_create(
        [ClinicStaff(user=user, clinic_id="a"), ClinicStaff(user=user, clinic_id="b")]
    )
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_admin_shows_a_services_clinic_read_only_once_it_has_slots(staff_of_both, clinics):
    ClinicServiceFactory(id="s", clinic=clinics[0])
    form = staff_of_both.get("/admin/slots/clinicservice/s/change/").context["adminform"].form
    assert "clinic" in form.fields  # no slots yet: it may move
    SlotFactory(service=ClinicService.objects.get(id="s"))
    page = staff_of_both.get("/admin/slots/clinicservice/s/change/")
    assert "clinic" not in page.context["adminform"].form.fields
    assert "clinic" in page.context["adminform"].readonly_fields


@pytest.mark.django_db
def test_the_migration_names_the_services_whose_slots_are_under_another_clinic(clinics):
    """Rows left by the old bug stop the migration, with what a person needs to decide."""
    migration = importlib.import_module("slots.migrations.0005_slot_service_same_clinic")
    with connection.cursor() as cursor:  # as before the migration (rolled back with the test)
        cursor.execute(f"ALTER TABLE slots DROP CONSTRAINT {migration.FOREIGN_KEY}")
    SlotFactory(service=ClinicServiceFactory(id="s", clinic=clinics[0]), clinic=clinics[1])
    with (
        pytest.raises(RuntimeError, match="service s has 1 slots under clinic b but belongs to"),
        connection.schema_editor() as editor,
    ):
        migration.add_foreign_key(None, editor)
