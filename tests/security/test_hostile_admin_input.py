"""Hostile input to the admin is a form error, Django's "wrong parameters" flag or a 400,
never a 500, and never a row outside what the API would write: date drill-downs past the
year 9998, NUL in list filters, slots in the year 1 or 9999 or with billions of places, a
schedule ending on 9999-12-31."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User

from slots.models import Slot

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def support_browser(client):
    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    client.force_login(user)
    client.raise_request_exception = False
    return client


@pytest.fixture
def service():
    return ClinicServiceFactory(id="svc-h", clinic=ClinicFactory(id="clinic-h"))


@pytest.mark.parametrize(
    ("page", "query"),
    [
        ("/admin/slots/slot/", "start_at__year=9999"),
        ("/admin/slots/slot/", "start_at__year=9999&start_at__month=12"),
        ("/admin/slots/slot/", "start_at__year=9999&start_at__month=12&start_at__day=31"),
        ("/admin/slots/slot/", "start_at__year=2030&start_at__month=13"),
        ("/admin/slots/slot/", "start_at__year=%C2%B2"),
        ("/admin/slots/slot/", "start_at__year__gte=10000"),
        ("/admin/reservations/reservation/", "created_at__year=9999"),
        ("/admin/bookings/booking/", "slot__start_at__year=9999&slot__start_at__month=12"),
        ("/admin/bookings/booking/", "created_at__year=10000"),
        ("/admin/events/event/", "created_at__year__lt=10000"),
        ("/admin/waitlist/waitlistentry/", "created_at__year=10000"),
    ],
)
def test_a_date_lookup_django_cannot_query_is_the_wrong_parameters_flag(
    support_browser, service, page, query
):
    SlotFactory(service=service)
    response = support_browser.get(f"{page}?{query}")
    assert response.status_code == 302
    assert response["Location"] == f"{page}?e=1"
    assert support_browser.get(response["Location"]).status_code == 200


def test_a_month_without_a_year_is_still_a_filter(support_browser, service):
    slot = SlotFactory(service=service)
    page = support_browser.get(f"/admin/slots/slot/?start_at__month={slot.start_at.month}")
    assert page.status_code == 200
    assert [s.pk for s in page.context["cl"].result_list] == [slot.pk]


@pytest.mark.parametrize(
    ("page", "action", "selected"),
    [
        ("/admin/slots/clinicservice/", "generate_slots", "svc\x00h"),  # a text key
        ("/admin/slots/slot/", "close_slots", "not-a-uuid"),  # a UUID key
        ("/admin/slots/slot/", "close_slots", "a\x00b"),
        ("/admin/waitlist/waitlistentry/", "remove_entries", "9" * 40),
    ],
)
def test_an_admin_action_selection_django_cannot_query_is_the_wrong_parameters_flag(
    support_browser, service, page, action, selected
):
    response = support_browser.post(page, {"action": action, "_selected_action": [selected]})
    assert response.status_code == 302
    assert response["Location"] == f"{page}?e=1"


def test_a_clinic_time_zone_that_is_none_is_a_form_error(support_browser, service):
    url = f"/admin/slots/clinic/{service.clinic_id}/change/"
    for zone in ("Mars/Olympus", "9" * 12, "../etc/passwd"):
        response = support_browser.post(
            url, {"id": service.clinic_id, "name": "Clinic", "timezone": zone, "active": "on"}
        )
        assert response.status_code == 200, zone
        assert "timezone" in response.context["adminform"].form.errors
    service.clinic.refresh_from_db()
    assert service.clinic.timezone != "Mars/Olympus"


def test_the_expired_login_attempts_clean_up_runs(admin_client):
    """django-axes' own action read an attribute only its login signal sets (a 500 always)."""
    from axes.models import AccessAttempt

    attempt = AccessAttempt.objects.create(
        username="x", ip_address="10.0.0.1", user_agent="t", failures_since_start=1
    )
    response = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "cleanup_expired_attempts", "_selected_action": [str(attempt.pk)]},
        follow=True,
    )
    assert response.redirect_chain == [("/admin/axes/accessattempt/", 302)]
    assert "Cleaned up 0 expired access attempts." in response.content.decode()
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()  # not expired yet


def test_a_json_field_django_would_crash_on_is_a_form_error(support_browser, service):
    """The service's species (a JSON list): deep nesting raised RecursionError in Django's
    form field; NUL and lone surrogates reached PostgreSQL's jsonb."""
    url = f"/admin/slots/clinicservice/{service.pk}/change/"
    page = support_browser.get(url)
    form = page.context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name != "species"
    }
    data["clinic"] = service.clinic_id
    for species in ("[" * 3000 + "]" * 3000, '["dog\\u0000"]', '["\\ud800"]', '["cat", 1e400]'):
        response = support_browser.post(url, {**data, "species": species})
        assert response.status_code == 200, species[:20]
        assert "species" in response.context["adminform"].form.errors
    service.refresh_from_db()
    assert "\x00" not in str(service.species)


def test_a_date_drill_down_in_range_still_filters(support_browser, service):
    slot = SlotFactory(service=service)
    year = slot.start_at.year
    page = support_browser.get(f"/admin/slots/slot/?start_at__year={year}")
    assert page.status_code == 200
    assert [s.pk for s in page.context["cl"].result_list] == [slot.pk]
    assert (
        support_browser.get(f"/admin/slots/slot/?start_at__year={year - 1}")
        .context["cl"]
        .result_count
        == 0
    )


@pytest.mark.parametrize(
    ("page", "query"),
    [
        ("/admin/slots/slot/", "status__exact=%00"),
        ("/admin/slots/slot/", "clinic__id__exact=%00"),
        ("/admin/reservations/reservation/", "user_id=%00"),
        ("/admin/bookings/booking/", "id__exact=%00"),
        ("/admin/slots/slot/", "q=a%00b"),
    ],
)
def test_a_nul_in_an_admin_list_filter_is_a_400(support_browser, service, page, query):
    SlotFactory(service=service)
    response = support_browser.get(f"{page}?{query}")
    assert response.status_code == 400


def _new_slot_form(start_date: str, end_date: str, capacity: str = "1") -> dict:
    return {
        "clinic": "clinic-h",
        "service": "svc-h",
        "start_at_0": start_date,
        "start_at_1": "09:00",
        "end_at_0": end_date,
        "end_at_1": "09:30",
        "capacity": capacity,
        "status": "open",
    }


@pytest.mark.parametrize(
    ("form", "field"),
    [
        (_new_slot_form("0001-01-01", "0001-01-01"), "start_at"),
        (_new_slot_form("9999-12-31", "9999-12-31"), "start_at"),
        (_new_slot_form("2030-01-01", "2030-01-01", capacity="99999999999"), "capacity"),
        (_new_slot_form("2030-01-01", "2030-01-01", capacity="1001"), "capacity"),
    ],
)
def test_the_slot_form_refuses_what_the_api_refuses(support_browser, service, form, field):
    response = support_browser.post("/admin/slots/slot/add/", form)
    assert response.status_code == 200  # the form again, with the error
    assert field in response.context["adminform"].form.errors
    assert not Slot.objects.exists()


def test_the_slot_form_still_adds_a_slot(support_browser, service):
    response = support_browser.post(
        "/admin/slots/slot/add/", _new_slot_form("2030-01-01", "2030-01-01", capacity="1000")
    )
    assert response.status_code == 302
    assert Slot.objects.get().capacity == 1000


@pytest.mark.parametrize(
    ("date_from", "date_to"), [("9999-12-25", "9999-12-31"), ("0001-01-01", "0001-01-07")]
)
def test_a_schedule_outside_the_years_is_a_form_error(support_browser, service, date_from, date_to):
    response = support_browser.post(
        "/admin/slots/clinicservice/",
        {
            "action": "generate_slots",
            "_selected_action": ["svc-h"],
            "apply": "1",
            "date_from": date_from,
            "date_to": date_to,
            "weekdays": [str(day) for day in range(1, 8)],
            "start": "10:00",
            "end": "11:00",
            "capacity": "1",
        },
    )
    assert response.status_code == 200
    assert "between the years 1970 and 2999" in response.content.decode()
    assert not Slot.objects.exists()


def test_services_refuse_what_the_admin_forms_refuse(service):
    """The services check years and capacity themselves: every entry point gets the bound."""
    from petpro_booking.core.errors import ValidationFailed
    from petpro_booking.core.principal import Principal
    from slots import services

    support = Principal(sub="support-1", roles=frozenset({"support"}))
    start = dt.datetime(9999, 12, 31, 9, tzinfo=dt.UTC)
    with pytest.raises(ValidationFailed) as refused:
        services.slot_create(
            actor=support,
            clinic_id="clinic-h",
            service_id="svc-h",
            start_at=start,
            end_at=start + dt.timedelta(minutes=30),
        )
    assert "start_at" in refused.value.details
    with pytest.raises(ValidationFailed) as refused:
        services.slot_generate(
            actor=support,
            clinic_id="clinic-h",
            service_id="svc-h",
            date_from=dt.date(9999, 12, 25),
            date_to=dt.date(9999, 12, 31),
            weekly=[services.WeeklyWindow(weekday=1, start=dt.time(9), end=dt.time(10))],
        )
    assert "date_from" in refused.value.details
    slot = SlotFactory(service=service)
    with pytest.raises(ValidationFailed) as refused:
        services.slot_update(actor=support, slot_id=slot.pk, capacity=10**11)
    assert "capacity" in refused.value.details
    assert not Slot.objects.filter(capacity__gt=1000).exists()


def _service_form(support_browser, service) -> tuple[str, dict]:
    url = f"/admin/slots/clinicservice/{service.pk}/change/"
    form = support_browser.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data["clinic"] = service.clinic_id
    data["species"] = '["dog"]'
    return url, data


@pytest.mark.parametrize(
    "species", ['"dog"', "{}", '{"dog": 1}', "5", "[1]", '["dog", null]', '[""]', '["  "]']
)
def test_species_that_are_not_a_list_of_names_are_a_form_error(support_browser, service, species):
    """A string or an object made every owner's species search a 500 (jsonb_array_length of a
    non-array, across every clinic's services); a number in the list every hold's check."""
    before = service.species
    url, data = _service_form(support_browser, service)
    response = support_browser.post(url, {**data, "species": species})
    assert response.status_code == 200, species
    assert "species" in response.context["adminform"].form.errors
    service.refresh_from_db()
    assert service.species == before


def test_a_list_of_names_is_still_saved(support_browser, service):
    url, data = _service_form(support_browser, service)
    response = support_browser.post(url, {**data, "species": '["dog", "Cat"]'})
    assert response.status_code == 302
    service.refresh_from_db()
    assert service.species == ["dog", "Cat"]


@pytest.mark.parametrize("species", ["dog", {"dog": 1}, [1], ["dog", None]])
def test_the_database_refuses_species_that_are_not_a_list_of_names(service, species):
    from django.db import IntegrityError, transaction

    from slots.models import ClinicService

    with pytest.raises(IntegrityError, match="clinic_services_species_list"), transaction.atomic():
        ClinicService.objects.filter(pk=service.pk).update(species=species)


@pytest.mark.parametrize("clinic_id", ["berlin/mitte", "tab\there", "del\x7f", "nl\nx"])
def test_a_clinic_id_the_api_cannot_name_is_a_form_error(support_browser, clinic_id):
    response = support_browser.post(
        "/admin/slots/clinic/add/",
        {"id": clinic_id, "name": "Mitte", "timezone": "Europe/Berlin", "language": "en"},
    )
    assert response.status_code == 200
    assert "id" in response.context["adminform"].form.errors


def test_a_clinic_whose_id_holds_a_slash_still_has_its_schedule(support_browser):
    """Written by an earlier version or straight into the table: the daily tool's clinic list
    and the clinic's schedule reversed its URL with a `str` route (NoReverseMatch, a 500)."""
    clinic = ClinicFactory(id="berlin/mitte", name="Mitte")
    ClinicFactory(id="hamburg", name="Hamburg")  # two: support chooses from the list
    SlotFactory(service=ClinicServiceFactory(id="svc-m", clinic=clinic))
    home = support_browser.get("/admin/backoffice/schedule/")
    assert home.status_code == 200
    assert b"/admin/backoffice/schedule/berlin/mitte/" in home.content
    page = support_browser.get("/admin/backoffice/schedule/berlin/mitte/")
    assert page.status_code == 200
    assert b"Mitte" in page.content
