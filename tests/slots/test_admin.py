"""Admin for clinic staff: scoped to their clinics, generate action, stale saves refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User

from petpro_booking.events.models import Event
from slots.models import ClinicStaff, Slot

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db
# The generate action's form: Tuesdays 10:00-11:00 (clinic time) in the first week of Feb 2027.
WEEKLY_SCHEDULE = {
    "apply": "1",
    "date_from": "2027-02-01",
    "date_to": "2027-02-07",
    "weekdays": ["2"],
    "start": "10:00",
    "end": "11:00",
    "capacity": "2",
}


@pytest.fixture
def two_clinics():
    mine = ClinicServiceFactory(id="svc-mine", clinic=ClinicFactory(id="mine"))
    theirs = ClinicServiceFactory(id="svc-theirs", clinic=ClinicFactory(id="theirs"))
    return SlotFactory(service=mine), SlotFactory(service=theirs)


@pytest.fixture
def staff_browser(client):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    ClinicStaff.objects.create(user=user, clinic_id="mine")
    client.force_login(user)
    return client


@pytest.fixture
def support_browser(client):
    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.create(name="support"))
    client.force_login(user)
    return client


def test_staff_see_only_their_clinics_slots(staff_browser, two_clinics):
    mine, theirs = two_clinics
    page = staff_browser.get("/admin/slots/slot/")
    assert page.status_code == 200
    listed = {s.pk for s in page.context["cl"].result_list}
    assert listed == {mine.pk}
    assert staff_browser.get(f"/admin/slots/slot/{mine.pk}/change/").status_code == 200
    # Another clinic's slot is no slot to them: Django's "does not exist", on the admin index.
    response = staff_browser.get(f"/admin/slots/slot/{theirs.pk}/change/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = staff_browser.get(response["Location"])
    assert [str(m) for m in index.context["messages"]] == [
        f"slot with ID \u201c{theirs.pk}\u201d doesn\u2019t exist. Perhaps it was deleted?"
    ]


def test_support_sees_every_clinic(support_browser, two_clinics):
    page = support_browser.get("/admin/slots/slot/")
    assert len(page.context["cl"].result_list) == 2


@pytest.mark.django_db(transaction=True)  # slot_update: a SERIALIZABLE transaction of its own
def test_change_goes_through_the_service_and_refuses_stale_saves(two_clinics, staff_browser):
    mine, _ = two_clinics
    form = {"capacity": 3, "status": "open", "seen_version": mine.version}
    response = staff_browser.post(f"/admin/slots/slot/{mine.pk}/change/", form)
    assert response.status_code == 302
    mine.refresh_from_db()
    assert (mine.capacity, mine.version) == (3, 2)
    assert Event.objects.filter(aggregate_id=str(mine.pk), event_type="SlotUpdated").count() == 1

    stale = staff_browser.post(f"/admin/slots/slot/{mine.pk}/change/", {**form, "capacity": 5})
    assert stale.status_code == 200  # form shown again with the error
    assert "changed since you opened it" in stale.content.decode()
    mine.refresh_from_db()
    assert mine.capacity == 3


def test_the_slot_form_still_refuses_a_post_without_its_csrf_token(two_clinics):
    """The change form's view is the admin's own without its transaction wrapper (the save
    opens the gateway's): its CSRF protection stays."""
    from django.test import Client

    mine, _ = two_clinics
    browser = Client(enforce_csrf_checks=True)
    user = User.objects.create_user("staff-csrf", password="pw", is_staff=True)
    ClinicStaff.objects.create(user=user, clinic_id="mine")
    browser.force_login(user)
    form = {"capacity": 3, "status": "open", "seen_version": mine.version}
    response = browser.post(f"/admin/slots/slot/{mine.pk}/change/", form)
    assert response.status_code == 403
    mine.refresh_from_db()
    assert mine.capacity != 3


def test_generate_action_creates_slots_in_clinic_time(staff_browser, two_clinics):
    response = staff_browser.post(
        "/admin/slots/clinicservice/",
        {"action": "generate_slots", "_selected_action": ["svc-mine"], **WEEKLY_SCHEDULE},
    )
    assert response.status_code == 302
    created = Slot.objects.filter(service_id="svc-mine", capacity=2)
    assert created.count() == 2
    assert created.order_by("start_at").first().start_at == dt.datetime(
        2027, 2, 2, 9, 0, tzinfo=dt.UTC
    )


def test_user_without_clinic_link_sees_nothing(client, two_clinics):
    user = User.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get("/admin/slots/slot/").status_code == 403


def test_generate_action_first_shows_the_schedule_form(staff_browser, two_clinics):
    response = staff_browser.post(
        "/admin/slots/clinicservice/",
        {"action": "generate_slots", "_selected_action": ["svc-mine"]},
    )
    assert response.status_code == 200
    assert "weekly schedule" in response.content.decode()
    assert not Slot.objects.filter(service_id="svc-mine").exclude(pk=two_clinics[0].pk).exists()


@pytest.mark.django_db(transaction=True)  # the close is a SERIALIZABLE slot write
def test_closing_more_slots_than_an_action_takes_closes_none_and_says_how(
    support_browser, monkeypatch
):
    # A "select all" of a clinic's 3,383 open slots ran one slot write after another until
    # gunicorn killed the worker at its 30 s timeout: 2,743 closed, 640 open, nothing said.
    monkeypatch.setattr("petpro_booking.core.admin_access.ACTION_MAX_ROWS", 2)
    service = ClinicServiceFactory(id="svc-many", clinic=ClinicFactory(id="many"))
    slots = [SlotFactory(service=service) for _ in range(3)]
    everything = {"action": "close_slots", "_selected_action": [str(s.id) for s in slots]}

    page = support_browser.post("/admin/slots/slot/", everything, follow=True)
    said = [str(message) for message in page.context["messages"]]
    assert said == [
        "3 open slots selected; an action changes at most 2 at a time. Nothing was changed: "
        "narrow the list (by date or clinic) and run it again."
    ]
    assert set(Slot.objects.filter(service=service).values_list("status", flat=True)) == {"open"}

    Slot.objects.filter(id=slots[0].id).update(status="closed")  # two open ones left: allowed
    page = support_browser.post("/admin/slots/slot/", everything, follow=True)
    assert [str(message) for message in page.context["messages"]] == ["2 slots closed."]
    assert set(Slot.objects.filter(service=service).values_list("status", flat=True)) == {"closed"}


def test_generating_for_more_services_than_a_run_takes_makes_nothing(
    support_browser, two_clinics, monkeypatch
):
    # Each service may get up to SLOT_GENERATE_MAX_SLOTS slots (~1.4 s for 3,000): a "select
    # all" of a large clinic's services would run past the web worker's timeout.
    monkeypatch.setattr("slots.admin.GENERATE_MAX_SERVICES", 1)
    before = Slot.objects.count()
    page = support_browser.post(
        "/admin/slots/clinicservice/",
        {
            "action": "generate_slots",
            "_selected_action": ["svc-mine", "svc-theirs"],
            **WEEKLY_SCHEDULE,
        },
        follow=True,
    )
    said = [str(message) for message in page.context["messages"]]
    assert said[0].startswith("2 services selected; an action changes at most 1 at a time.")
    assert Slot.objects.count() == before
