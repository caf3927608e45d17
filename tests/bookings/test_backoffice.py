"""The daily tool's pages without a browser: the finder (reference, owner, pet, phone, email,
day; the User Service when configured), a booking's whole story, scoping, and names not ids."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.formats import date_format

from bookings.models import PaymentRecord
from integrations.messaging.messages import notification_message_id
from petpro_booking.core.models import IdempotencyKey
from petpro_booking.events.models import Event
from slots.models import ClinicStaff

from ..factories import (
    ClinicFactory,
    ClinicServiceFactory,
    LocalUserFactory,
    PaymentRecordFactory,
    SlotFactory,
)
from ..integrations.stub_server import running_stub
from .conftest import OTHER_OWNER, book_on, let_slot_start

pytestmark = pytest.mark.django_db(transaction=True)

FIND = "/admin/backoffice/bookings/"


@pytest.fixture
def support_browser(client):
    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    client.force_login(user)
    return client


@pytest.fixture
def named_booking(owner_pet, slot):
    owner = owner_pet.owner
    owner.name, owner.email, owner.phone = "Ana Lima", "ana.lima@example.com", "+49 30 987654"
    owner.save()
    owner_pet.name = "Bello"
    owner_pet.save()
    return book_on(slot)


def found(page) -> list[str]:
    assert page.status_code == 200
    return [row.booking.reference for row in page.context["result"].bookings]


def test_finder_matches_reference_owner_pet_phone_email_and_day(
    support_browser, named_booking, other_pet, second_slot
):
    other = book_on(second_slot, owner=OTHER_OWNER, pet_id="pet-2")
    mine = [named_booking.reference]
    for text in (
        named_booking.reference.lower(),
        "owner-1",
        "pet-1",
        "ana lima",
        "LIMA@EXAMPLE",
        "30 987 654",
        "bello",
    ):
        assert found(support_browser.get(FIND, {"q": text})) == mine, text
    assert found(support_browser.get(FIND, {"q": "nobody-like-this"})) == []
    assert found(support_browser.get(FIND, {"q": "98"})) == []  # too few digits for a phone

    zone = ZoneInfo(named_booking.slot.clinic.timezone)
    day = named_booking.slot.start_at.astimezone(zone).date()
    assert found(support_browser.get(FIND, {"date": day.isoformat()})) == mine
    next_day = (other.slot.start_at.astimezone(zone).date()).isoformat()
    assert found(support_browser.get(FIND, {"date": next_day})) == [other.reference]
    bad = support_browser.get(FIND, {"date": "31-31-2026"})
    assert bad.status_code == 200
    assert b"must read YYYY-MM-DD" in bad.content


def test_finder_looks_a_reference_up_by_equality(support_browser, named_booking):
    """A reference typed in any case is compared with the stored capitals, an equality the
    unique index serves (UPPER(reference) on both sides would read every booking in scope)."""
    with CaptureQueriesContext(connection) as queries:
        page = support_browser.get(FIND, {"q": named_booking.reference.lower()})
    assert found(page) == [named_booking.reference]
    on_bookings = [q["sql"] for q in queries.captured_queries if 'FROM "bookings"' in q["sql"]]
    assert on_bookings
    assert not any('UPPER("bookings"."reference"' in sql for sql in on_bookings)
    assert any(
        f'"bookings"."reference" = \'{named_booking.reference}\'' in sql for sql in on_bookings
    )


def test_finder_and_names_use_the_user_service_when_configured(
    support_browser, named_booking, settings
):
    with running_stub() as users:
        settings.USER_SERVICE_URL = users.url
        users.route(
            "GET",
            "/api/v1/users/owner-1",
            body={
                "id": "owner-1",
                "name": "Olga Remote",
                "email": "olga@remote.example",
                "phone": "+62 811 000 222",
                "preferences": {"locale": "id"},
            },
        )
        users.route(
            "GET",
            "/api/v1/users/owner-1/pets",
            body=[{"id": "pet-1", "name": "Kuro", "species": "dog"}],
        )
        assert found(support_browser.get(FIND, {"q": "olga@remote"})) == [named_booking.reference]
        assert found(support_browser.get(FIND, {"q": "811000222"})) == [named_booking.reference]
        page = support_browser.get(FIND, {"q": "kuro"})
        assert found(page) == [named_booking.reference]
        row = page.context["result"].bookings[0]
        assert (row.owner, row.pet) == ("Olga Remote", "Kuro")
        assert (
            found(support_browser.get(FIND, {"q": "ana lima"})) == []
        )  # the local table is not asked


def test_story_shows_everything_oldest_first_with_names_and_clinic_time(
    support_browser, named_booking
):
    booking = named_booking
    IdempotencyKey.objects.create(
        key="retry-1",
        principal="owner-1",
        method="POST",
        path=f"/api/v1/reservations/{booking.reservation_id}/confirm",
        request_hash="x",
        response_status=201,
        response_body={"id": str(booking.id)},
    )
    PaymentRecordFactory(
        booking=booking,
        payment_id="pay_123",
        amount=45,
        currency="EUR",
        status="pending",
        last_payload={"status": "succeeded"},
    )
    page = support_browser.get(f"{FIND}{booking.pk}/")
    assert page.status_code == 200
    story = page.context["story"]
    html = page.content.decode()
    assert (story.owner, story.pet) == ("Ana Lima", "Bello")
    assert "Berlin Vet" in html
    assert "ana.lima@example.com" in html
    local = booking.slot.start_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{local:%Y-%m-%d %H:%M} (Europe/Berlin)" in html
    assert [e.event_type for e in story.events] == [
        "ReservationCreated",
        "ReservationConfirmed",
        "BookingCreated",
        "BookingConfirmed",
    ]
    assert [h.to_status for h in story.history] == ["confirmed"]
    assert [r.key for r in story.requests] == ["retry-1"]
    assert "pay_123" in html
    assert "succeeded" in html
    confirmed = Event.objects.get(aggregate_id=str(booking.id), event_type="BookingConfirmed")
    expected = {
        notification_message_id(
            event_id=str(confirmed.event_id), template="booking_confirmed", channel=c
        )
        for c in ("email", "push")
    }
    assert {n.message_id for n in story.notifications} == expected  # the relay's message ids
    assert {n.state for n in story.notifications} == {"waiting for the relay"}


def test_staff_see_only_their_clinic_in_the_tool(client, named_booking, slot):
    user = User.objects.create_user("elsewhere", password="pw", is_staff=True)
    ClinicStaff.objects.create(user=user, clinic=ClinicFactory(id="clinic-other", name="Other"))
    client.force_login(user)
    assert client.get(f"{FIND}{named_booking.pk}/").status_code == 404
    assert client.get(f"/admin/backoffice/slots/{slot.pk}/").status_code == 404
    assert client.get("/admin/backoffice/schedule/clinic-berlin/").status_code == 404
    assert client.get("/admin/backoffice/slots/not-a-uuid/").status_code == 404
    assert found(client.get(FIND, {"q": named_booking.reference})) == []
    response = client.post(f"/admin/backoffice/slots/{slot.pk}/", {"action": "close"})
    assert response.status_code == 404
    slot.refresh_from_db()
    assert slot.status == "open"
    # Their own clinic's home goes straight to its schedule.
    assert (
        client.get("/admin/backoffice/schedule/").url == "/admin/backoffice/schedule/clinic-other/"
    )


def test_admin_lists_show_names_and_clinic_time_not_ids(support_browser, named_booking):
    page = support_browser.get("/admin/bookings/booking/")
    html = page.content.decode()
    local = named_booking.slot.start_at.astimezone(ZoneInfo("Europe/Berlin"))
    for text in ("Berlin Vet", "Ana Lima", "Bello", f"{local:%Y-%m-%d %H:%M} (Europe/Berlin)"):
        assert text in html
    holds_page = support_browser.get("/admin/reservations/reservation/").content.decode()
    for text in ("Berlin Vet", "Ana Lima", "Bello", f"{local:%Y-%m-%d %H:%M} (Europe/Berlin)"):
        assert text in holds_page
    slots_page = support_browser.get("/admin/slots/slot/").content.decode()
    assert f"{local:%Y-%m-%d %H:%M} (Europe/Berlin)" in slots_page
    change = support_browser.get(f"/admin/slots/slot/{named_booking.slot_id}/change/")
    assert f"{local:%Y-%m-%d %H:%M} (Europe/Berlin)" in change.content.decode()
    # The read-only start is written in clinic time with its zone, not in Django's bare format.
    start_field = f'<div class="readonly">{local:%Y-%m-%d %H:%M} (Europe/Berlin)</div>'
    assert start_field in change.content.decode()
    assert date_format(local, "DATETIME_FORMAT") not in change.content.decode()
    assert str(named_booking.slot) == (
        f"{named_booking.slot.service.name} @ {local:%Y-%m-%d %H:%M} (Europe/Berlin)"
    )


def test_schedule_shows_a_day_in_the_clinic_time_zone(support_browser, named_booking):
    """A Jakarta slot at 00:30 local belongs to that local day, not to the UTC day before."""
    jakarta = ClinicFactory(id="clinic-jkt", name="Jakarta Pet Care", timezone="Asia/Jakarta")
    service = ClinicServiceFactory(id="svc-jkt", clinic=jakarta, name="Grooming")
    zone = ZoneInfo("Asia/Jakarta")
    day = dt.datetime.now(tz=zone).date() + dt.timedelta(days=5)
    start = dt.datetime.combine(day, dt.time(0, 30), tzinfo=zone)
    SlotFactory(
        clinic=jakarta, service=service, start_at=start, end_at=start + dt.timedelta(minutes=30)
    )
    LocalUserFactory(id="unused")
    page = support_browser.get(f"/admin/backoffice/schedule/clinic-jkt/?date={day}")
    schedule = page.context["schedule"]
    assert [time.strftime("%H:%M") for time, _ in schedule.days[0].rows] == ["00:30"]
    before = support_browser.get(
        f"/admin/backoffice/schedule/clinic-jkt/?date={day - dt.timedelta(days=1)}"
    )
    assert before.context["schedule"].days[0].rows == []
    week = support_browser.get(f"/admin/backoffice/schedule/clinic-jkt/?date={day}&view=week")
    assert len(week.context["schedule"].days) == 7
    assert week.context["schedule"].days[0].day.weekday() == 0


def test_story_page_actions_go_through_the_services(
    support_browser, owner_client, unpaid_booking, payment_stub, second_slot, clinic
):
    """Re-check a payment with the provider, reschedule with a reason, refuse a stale change,
    complete: each written by the same service as the API."""
    page_url = f"{FIND}{unpaid_booking.pk}/"
    payment_id = owner_client.post(f"/api/v1/bookings/{unpaid_booking.id}/payment").json()[
        "payment_id"
    ]
    payment_stub.settle(payment_id, "succeeded")
    record = PaymentRecord.objects.get(payment_id=payment_id)
    page = support_browser.post(
        page_url, {"action": "recheck", "record": str(record.pk)}, follow=True
    )
    assert "the booking is confirmed" in page.content.decode()
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "confirmed"
    assert "succeeded" in page.content.decode()  # the provider's word on the record

    other = SlotFactory(
        clinic=clinic, service=unpaid_booking.slot.service, start_at=second_slot.start_at
    )
    stale = unpaid_booking.version - 1
    page = support_browser.post(
        page_url,
        {"action": "reschedule", "slot": str(other.pk), "reason": "x", "version": str(stale)},
        follow=True,
    )
    assert "changed since you opened the page" in page.content.decode()
    page = support_browser.post(
        page_url,
        {
            "action": "reschedule",
            "slot": str(other.pk),
            "reason": "owner asked by phone",
            "version": str(unpaid_booking.version),
        },
        follow=True,
    )
    assert "rescheduled" in page.content.decode()
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.slot_id == other.pk
    assert unpaid_booking.history.last().reason == "owner asked by phone"

    no_reason = support_browser.post(page_url, {"action": "complete", "reason": ""})
    assert no_reason.status_code == 200
    assert b"This field is required" in no_reason.content
    let_slot_start(other)  # a visit is closed once its slot has started
    support_browser.post(page_url, {"action": "complete", "reason": "seen by Dr. Weber"})
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "completed"
    assert support_browser.post(page_url, {"action": "delete"}).status_code == 400


def test_hostile_parameters_fall_back_or_are_refused(support_browser, slot):
    base = f"/admin/backoffice/schedule/{slot.clinic_id}/"
    for query in ({"date": "2026-99-99"}, {"view": "<script>"}, {"date": "x" * 5000}):
        page = support_browser.get(base, query)
        assert page.status_code == 200
        assert page.context["view"] in {"day", "week"}
    # Days past 9998 or before the year 1 overflowed the day and week arithmetic (a 500):
    # outside the years the service keeps, the page shows today, as for any other bad date.
    for query in (
        {"date": "9999-12-31"},
        {"date": "0001-01-01"},
        {"date": "0001-01-02", "view": "week"},
        {"date": "9999-12-31", "view": "week"},
    ):
        page = support_browser.get(base, query)
        assert page.status_code == 200, query
        assert page.context["day"] == page.context["today"]
    for day in ("0001-01-01", "9999-12-31"):
        assert support_browser.get(FIND, {"date": day}).status_code == 200
    assert support_browser.get("/admin/backoffice/schedule/no-such-clinic/").status_code == 404
    # A NUL reached PostgreSQL from the path and the finder (a DataError): refused first.
    assert support_browser.get("/admin/backoffice/bookings/%00/").status_code == 400
    assert support_browser.get("/admin/backoffice/schedule/x%00/").status_code == 400
    assert support_browser.get(FIND, {"q": "x\x00y"}).status_code == 400
    assert support_browser.get(FIND, {"q": "x" * 5000}).status_code == 200
    # "²".isdigit() is true and int("²") fails: a version of other digits is no number.
    response = support_browser.post(
        f"/admin/backoffice/slots/{slot.pk}/", {"action": "close", "version": "\u00b2"}
    )
    assert response.status_code == 302
    slot.refresh_from_db()
    assert slot.status == "closed"  # a version that is no number means "the current one"
    response = support_browser.post(
        f"/admin/backoffice/slots/{slot.pk}/", {"action": "close", "version": "-1"}
    )
    assert response.status_code == 302


def test_booking_list_asks_for_each_owner_once(support_browser, named_booking, second_slot):
    book_on(second_slot)
    book_on(SlotFactory(clinic=second_slot.clinic, service=second_slot.service))
    with CaptureQueriesContext(connection) as queries:
        page = support_browser.get("/admin/bookings/booking/")
    assert page.content.decode().count("Ana Lima") == 3
    owner_lookups = [q for q in queries.captured_queries if '"local_users"' in q["sql"]]
    assert len(owner_lookups) == 1
