"""Staff of clinic A cannot reach clinic B through the admin forms (issue 12, point 1)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User

from slots.models import Clinic, ClinicService, ClinicStaff, Slot

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_clinics():
    mine = ClinicServiceFactory(
        id="svc-mine", clinic=ClinicFactory(id="mine", name="Mine", timezone="Europe/Berlin")
    )
    theirs = ClinicServiceFactory(
        id="svc-theirs",
        clinic=ClinicFactory(id="theirs", name="Theirs", timezone="Europe/Paris"),
        price=Decimal("80.00"),
        requires_payment=True,
    )
    return mine, theirs


@pytest.fixture
def staff_of_a(client, two_clinics):
    user = User.objects.create_user("staff-a", password="pw", is_staff=True)
    ClinicStaff.objects.create(user=user, clinic_id="mine")
    client.force_login(user)
    return client


def clinic_form(**overrides) -> dict:
    return {
        "id": "mine",
        "name": "Mine",
        "timezone": "Europe/Berlin",
        "language": "en",
        "active": "on",
        "version": "1",
        **overrides,
    }


def service_form(**overrides) -> dict:
    return {
        "id": "svc-mine",
        "clinic": "mine",
        "name": "Checkup",
        "duration_minutes": "30",
        "price": "0.00",
        "currency": "EUR",
        "species": '["dog"]',
        "cancellation_window_hours": "24",
        "active": "on",
        "version": "1",
        **overrides,
    }


def test_own_clinic_and_service_can_still_be_edited(staff_of_a):
    """The forms below are valid: a refusal is the guard, not a missing field."""
    staff_of_a.post("/admin/slots/clinic/mine/change/", clinic_form(name="Renamed"))
    staff_of_a.post("/admin/slots/clinicservice/svc-mine/change/", service_form(name="Renamed"))
    assert Clinic.objects.get(id="mine").name == "Renamed"
    assert ClinicService.objects.get(id="svc-mine").name == "Renamed"


def test_changing_the_primary_key_does_not_overwrite_another_clinic(staff_of_a):
    staff_of_a.post(
        "/admin/slots/clinic/mine/change/",
        clinic_form(id="theirs", name="Hijacked", timezone="UTC", active=""),
    )
    theirs = Clinic.objects.get(id="theirs")
    assert (theirs.name, theirs.timezone, theirs.active) == ("Theirs", "Europe/Paris", True)


def test_changing_a_service_primary_key_does_not_overwrite_another_clinics_service(staff_of_a):
    staff_of_a.post("/admin/slots/clinicservice/svc-mine/change/", service_form(id="svc-theirs"))
    theirs = ClinicService.objects.get(id="svc-theirs")
    assert (theirs.clinic_id, theirs.price, theirs.requires_payment) == (
        "theirs",
        Decimal("80.00"),
        True,
    )


def test_service_form_lists_only_the_staffs_clinics(staff_of_a):
    page = staff_of_a.get("/admin/slots/clinicservice/svc-mine/change/")
    choices = {str(pk) for pk, _ in page.context["adminform"].form.fields["clinic"].choices if pk}
    assert choices == {"mine"}


def test_moving_a_service_to_another_clinic_is_an_error_and_logs_nothing(staff_of_a):
    response = staff_of_a.post(
        "/admin/slots/clinicservice/svc-mine/change/", service_form(clinic="theirs")
    )
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors
    assert ClinicService.objects.get(id="svc-mine").clinic_id == "mine"
    assert not LogEntry.objects.exists()


def test_adding_a_service_for_another_clinic_is_an_error(staff_of_a):
    response = staff_of_a.post(
        "/admin/slots/clinicservice/add/", service_form(id="svc-new", clinic="theirs")
    )
    assert response.status_code == 200
    assert not ClinicService.objects.filter(id="svc-new").exists()
    assert not LogEntry.objects.exists()


def test_adding_a_slot_for_another_clinic_shows_an_error_not_a_success(staff_of_a):
    response = staff_of_a.post(
        "/admin/slots/slot/add/",
        {
            "clinic": "theirs",
            "service": "svc-theirs",
            "start_at_0": "2030-01-07",
            "start_at_1": "09:00:00",
            "end_at_0": "2030-01-07",
            "end_at_1": "09:30:00",
            "capacity": "1",
            "status": "open",
        },
        follow=True,
    )
    assert not Slot.objects.exists()
    shown = [str(m) for m in response.context["messages"]] if response.context else []
    assert not any("successfully" in m for m in shown)
    assert response.context["adminform"].form.errors
    assert not LogEntry.objects.exists()


def test_slot_form_lists_only_the_staffs_clinics_and_services(staff_of_a):
    SlotFactory(service=ClinicService.objects.get(id="svc-mine"))
    page = staff_of_a.get("/admin/slots/slot/add/")
    form = page.context["adminform"].form
    assert {str(pk) for pk, _ in form.fields["clinic"].choices if pk} == {"mine"}
    assert {str(pk) for pk, _ in form.fields["service"].choices if pk} == {"svc-mine"}


def test_clinics_and_services_are_read_only_when_the_clinic_service_owns_them(staff_of_a, settings):
    settings.CLINIC_SERVICE_URL = "http://clinic-service.invalid"
    staff_of_a.post("/admin/slots/clinic/mine/change/", clinic_form(name="Renamed"))
    staff_of_a.post("/admin/slots/clinicservice/svc-mine/change/", service_form(price="1.00"))
    assert Clinic.objects.get(id="mine").name == "Mine"
    assert ClinicService.objects.get(id="svc-mine").price != Decimal("1.00")
    page = staff_of_a.get("/admin/slots/clinic/mine/change/")
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert staff_of_a.get("/admin/slots/clinicservice/add/").status_code == 403


def test_support_adds_clinics_only_while_no_clinic_service_owns_them(client, settings):
    """ClinicAdmin's own add rule (support only) once replaced the read-only rule of
    ClinicServiceOwned: support could add a clinic the Clinic Service owns."""
    support = User.objects.create_superuser("support-a", password="pw")
    client.force_login(support)
    settings.CLINIC_SERVICE_URL = ""
    assert client.get("/admin/slots/clinic/add/").status_code == 200
    settings.CLINIC_SERVICE_URL = "http://clinic-service.invalid"
    assert client.get("/admin/slots/clinic/add/").status_code == 403
    client.post("/admin/slots/clinic/add/", clinic_form(id="new-one", name="New"))
    assert not Clinic.objects.filter(id="new-one").exists()
