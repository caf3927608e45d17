"""The slot admin's forms read and show start and end in the clinic's time zone, the zone
written (issue 18): a receptionist in Jakarta typing 09:00 makes a 09:00 Jakarta slot (02:00
UTC), not a 09:00 UTC one; a time the clocks skip is a form error, not a 500."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.test import Client

from slots.models import ClinicStaff, Slot

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/slots/slot/add/"


@pytest.fixture(autouse=True)
def clinics():
    ClinicServiceFactory(
        id="svc-jkt",
        clinic=ClinicFactory(id="jkt", name="Jakarta Pets", timezone="Asia/Jakarta"),
        currency="IDR",
    )
    ClinicServiceFactory(
        id="svc-ber", clinic=ClinicFactory(id="ber", name="Berlin Vet", timezone="Europe/Berlin")
    )


def staff_of(clinic_id: str) -> Client:
    user = User.objects.create_user(f"staff-{clinic_id}", password="pw", is_staff=True)
    ClinicStaff.objects.create(user=user, clinic_id=clinic_id)
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def jakarta_staff() -> Client:
    return staff_of("jkt")


@pytest.fixture
def berlin_staff() -> Client:
    return staff_of("ber")


@pytest.fixture
def support() -> Client:
    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    browser = Client()
    browser.force_login(user)
    return browser


def slot_form(clinic: str, day: str, start: str, end: str) -> dict[str, str]:
    return {
        "clinic": clinic,
        "service": f"svc-{clinic}",
        "start_at_0": day,
        "start_at_1": start,
        "end_at_0": day,
        "end_at_1": end,
        "capacity": "1",
        "status": "open",
    }


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)  # type: ignore[misc]


def field_errors(response, name: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(name, []))


def test_jakarta_staff_typing_nine_make_a_nine_oclock_jakarta_slot(jakarta_staff):
    response = jakarta_staff.post(ADD, slot_form("jkt", "2026-12-09", "09:00", "09:30"))
    assert response.status_code == 302, response.content.decode()
    slot = Slot.objects.get(clinic_id="jkt")
    assert (slot.start_at, slot.end_at) == (utc(2026, 12, 9, 2, 0), utc(2026, 12, 9, 2, 30))


def test_berlin_staff_times_follow_summer_and_winter_time(berlin_staff):
    for day in ("2027-01-12", "2027-07-13"):
        response = berlin_staff.post(ADD, slot_form("ber", day, "09:00", "09:30"))
        assert response.status_code == 302, response.content.decode()
    starts = list(Slot.objects.filter(clinic_id="ber").values_list("start_at", flat=True))
    assert starts == [utc(2027, 1, 12, 8, 0), utc(2027, 7, 13, 7, 0)]  # CET +1, CEST +2


def test_the_add_form_writes_the_zone_next_to_start_and_end(jakarta_staff):
    page = jakarta_staff.get(ADD)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert form.fields["start_at"].help_text == "Clinic time (Asia/Jakarta)"
    assert form.fields["end_at"].help_text == "Clinic time (Asia/Jakarta)"
    text = page.content.decode()
    assert "Clinic time (Asia/Jakarta)" in text
    assert "Jakarta Pets (Asia/Jakarta)" in text  # the clinic choice names its zone
    # The page runs in the clinic's zone, so the admin's "Now" fills in Jakarta's time.
    assert 'data-admin-utc-offset="25200"' in text


def test_support_types_in_the_chosen_clinics_zone(support):
    page = support.get(ADD).content.decode()
    assert "Clinic time: in the chosen clinic&#x27;s time zone" in page
    assert "Jakarta Pets (Asia/Jakarta)" in page
    assert "Berlin Vet (Europe/Berlin)" in page
    for clinic in ("jkt", "ber"):
        response = support.post(ADD, slot_form(clinic, "2026-12-09", "09:00", "09:30"))
        assert response.status_code == 302, response.content.decode()
    assert Slot.objects.get(clinic_id="jkt").start_at == utc(2026, 12, 9, 2, 0)
    assert Slot.objects.get(clinic_id="ber").start_at == utc(2026, 12, 9, 8, 0)


def test_a_time_the_clocks_skip_is_a_form_error_on_its_field(berlin_staff):
    # 2027-03-28: Berlin's clocks go from 02:00 straight to 03:00.
    response = berlin_staff.post(ADD, slot_form("ber", "2027-03-28", "02:30", "03:30"))
    assert response.status_code == 200
    (error,) = field_errors(response, "start_at")
    assert "2027-03-28 02:30 does not exist in Europe/Berlin" in error
    assert field_errors(response, "end_at") == []
    assert not Slot.objects.exists()
    assert not LogEntry.objects.exists()


def test_a_time_the_clocks_show_twice_is_its_first_occurrence(berlin_staff):
    # 2026-10-25: Berlin's clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    response = berlin_staff.post(ADD, slot_form("ber", "2026-10-25", "02:30", "02:45"))
    assert response.status_code == 302, response.content.decode()
    slot = Slot.objects.get()
    assert (slot.start_at, slot.end_at) == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 0, 45))


def test_an_end_not_after_the_start_in_clinic_time_is_an_error(jakarta_staff):
    response = jakarta_staff.post(ADD, slot_form("jkt", "2026-12-09", "09:30", "09:00"))
    assert response.status_code == 200
    assert field_errors(response, "end_at") == ["Must be after the start."]
    assert not Slot.objects.exists()


def test_no_clinic_chosen_is_a_form_error_not_a_crash(support):
    response = support.post(ADD, {**slot_form("jkt", "2026-12-09", "09:00", "09:30"), "clinic": ""})
    assert response.status_code == 200
    assert field_errors(response, "clinic")
    assert "read in its time zone" in field_errors(response, "start_at")[0]
    assert not Slot.objects.exists()


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_the_change_form_shows_start_and_end_in_the_slots_clinic_time(jakarta_staff):
    slot = SlotFactory(
        service_id="svc-jkt",
        clinic_id="jkt",
        start_at=utc(2026, 12, 9, 2, 0),
        end_at=utc(2026, 12, 9, 2, 30),
    )
    page = jakarta_staff.get(f"/admin/slots/slot/{slot.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "2026-12-09 09:00 (Asia/Jakarta)" in text
    assert "2026-12-09 09:30 (Asia/Jakarta)" in text
    assert '<div class="readonly">2026-12-09 09:00 (Asia/Jakarta)</div>' in text
    assert "2 a.m." not in text  # never the UTC wall time, unnamed

    # Saving capacity leaves the instants as they were.
    form = {"capacity": "2", "status": "open", "seen_version": str(slot.version)}
    response = jakarta_staff.post(f"/admin/slots/slot/{slot.pk}/change/", form)
    assert response.status_code == 302
    slot.refresh_from_db()
    assert (slot.capacity, slot.start_at) == (2, utc(2026, 12, 9, 2, 0))


def test_the_generate_form_names_the_clinics_zone(jakarta_staff):
    page = jakarta_staff.post(
        "/admin/slots/clinicservice/",
        {"action": "generate_slots", "_selected_action": ["svc-jkt"]},
    )
    assert page.status_code == 200
    assert "HH:MM, clinic time (Asia/Jakarta)" in page.content.decode()


# --- a slot the service refuses is a form error, never "added successfully" (audit) ----------


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_slot_inside_a_neighbours_buffer_is_a_form_error_and_nothing_is_logged(berlin_staff):
    from slots.models import ClinicService

    ClinicService.objects.filter(id="svc-ber").update(buffer_after_minutes=15)
    first = berlin_staff.post(ADD, slot_form("ber", "2027-01-12", "09:00", "09:30"), follow=True)
    assert first.redirect_chain, first.content.decode()  # saved; its message shown
    LogEntry.objects.all().delete()

    response = berlin_staff.post(ADD, slot_form("ber", "2027-01-12", "09:30", "10:00"))

    assert response.status_code == 200  # the form again, with the error on the start
    (error,) = field_errors(response, "start_at")
    assert "Too close to the slot starting 2027-01-12T08:00:00+00:00" in error
    assert Slot.objects.count() == 1
    assert not LogEntry.objects.exists()
    assert not any("successfully" in m for m in _messages(response))
    # Just past the buffer: saved.
    edge = berlin_staff.post(ADD, slot_form("ber", "2027-01-12", "09:45", "10:15"))
    assert edge.status_code == 302, edge.content.decode()
    assert Slot.objects.count() == 2


def test_a_slot_starting_with_another_of_its_service_is_a_form_error(berlin_staff):
    assert (
        berlin_staff.post(ADD, slot_form("ber", "2027-01-12", "09:00", "09:30")).status_code == 302
    )
    response = berlin_staff.post(ADD, slot_form("ber", "2027-01-12", "09:00", "09:15"))
    assert response.status_code == 200
    assert "already starts at that time" in " ".join(field_errors(response, "start_at"))
    assert Slot.objects.count() == 1


def test_a_refusal_after_the_form_was_checked_is_not_announced_as_saved(berlin_staff, monkeypatch):
    """A neighbour added between the form's check and the save (a race): the page says
    "Not saved" and neither logs an addition nor links to a slot that does not exist."""
    from slots import services
    from slots.models import ClinicService

    monkeypatch.setattr(services, "slot_create_check", lambda **kwargs: None)  # the race

    ClinicService.objects.filter(id="svc-ber").update(buffer_after_minutes=15)
    SlotFactory(
        service_id="svc-ber",
        clinic_id="ber",
        start_at=utc(2027, 1, 12, 8, 0),
        end_at=utc(2027, 1, 12, 8, 30),
    )

    response = berlin_staff.post(ADD, slot_form("ber", "2027-01-12", "09:30", "10:00"), follow=True)

    assert response.redirect_chain == [(ADD, 302)]
    shown = _messages(response)
    assert any(m.startswith("Not saved: This slot overlaps") for m in shown), shown
    assert not any("successfully" in m for m in shown), shown
    assert not LogEntry.objects.exists()
    assert Slot.objects.count() == 1
