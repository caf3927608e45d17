"""Admin pages show moments in the clinic's time zone with the zone written (issue 18), never a
bare UTC time: payment records, events (UTC, written, for an event of no clinic), holds,
waiting-list entries, owner limits and the booking list, in the list and on the object's page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import dateformat

from bookings.models import Booking, PaymentRecord
from petpro_booking.core.clock import local_label
from petpro_booking.events.models import Event
from petpro_booking.events.services import event_append
from reservations.models import OwnerLimit, Reservation
from slots.models import Clinic
from waitlist.models import EntryStatus, WaitlistEntry

from ..factories import PaymentRecordFactory

pytestmark = pytest.mark.django_db(transaction=True)

# 08:30 UTC on a day of this month that is not today: never the moment a test's own rows are
# made, and in the month's partition of the events table (moving events across partitions is
# not what these tests are about).
_TODAY = dt.datetime.now(dt.UTC)
MOMENT = _TODAY.replace(day=2 if _TODAY.day == 1 else 1, hour=8, minute=30, second=0, microsecond=0)


def _label(zone: str) -> str:
    return f"{MOMENT.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} ({zone})"


BERLIN = _label("Europe/Berlin")
JAKARTA = _label("Asia/Jakarta")
IN_UTC = f"{MOMENT:%Y-%m-%d %H:%M} (UTC)"
# How Django's admin writes that moment on its own: the server's zone (UTC), unnamed.
BARE_UTC = dateformat.format(MOMENT, "N j, Y, P")


@pytest.fixture
def support_admin(client):
    user = User.objects.create_user("time-reader", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    client.force_login(user)
    return client


def page_text(browser, url: str) -> str:
    response = browser.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def assert_clinic_time(text: str, label: str = BERLIN) -> None:
    assert label in text
    assert BARE_UTC not in text


def test_payment_records_read_in_the_clinics_zone(support_admin, booking):
    record = PaymentRecordFactory(
        booking=booking,
        payment_id="pay-times",
        amount=Decimal("45.00"),
        currency="EUR",
    )
    PaymentRecord.objects.filter(id=record.id).update(
        created_at=MOMENT, updated_at=MOMENT, refund_requested_at=MOMENT
    )
    listed = page_text(support_admin, "/admin/bookings/paymentrecord/")
    assert listed.count(BERLIN) == 3  # refund requested, created, updated
    assert BARE_UTC not in listed
    detail = page_text(support_admin, f"/admin/bookings/paymentrecord/{record.id}/change/")
    assert detail.count(BERLIN) == 3
    assert BARE_UTC not in detail


def test_events_read_in_their_clinics_zone_or_in_utc_written(support_admin, clinic):
    with transaction.atomic():
        booking_like = event_append(
            aggregate_type="booking",
            aggregate_id="booking-times",
            event_type="BookingCancelled",
            data={"clinic_id": "clinic-jakarta", "clinic_timezone": "Asia/Jakarta"},
        )
        slot_event = event_append(  # carries the clinic's id only: its zone is looked up
            aggregate_type="slot",
            aggregate_id="slot-times",
            event_type="SlotCreated",
            data={"slot_id": "slot-times", "clinic_id": clinic.id},
        )
        clinicless = event_append(
            aggregate_type="person",
            aggregate_id="person-times",
            event_type="PersonErased",
            data={"owner_key": "k.1"},
        )
    Event.objects.update(created_at=MOMENT, published_at=MOMENT, failed_at=None)

    listed = page_text(support_admin, "/admin/events/event/")
    for label in (JAKARTA, BERLIN, IN_UTC):
        assert label in listed
    assert BARE_UTC not in listed

    for event, label in ((booking_like, JAKARTA), (slot_event, BERLIN), (clinicless, IN_UTC)):
        detail = page_text(support_admin, f"/admin/events/event/{event.id}/change/")
        assert detail.count(label) == 2  # created, published
        assert BARE_UTC not in detail


def slot_events_of(clinic, count: int, *, first: int = 0) -> None:
    with transaction.atomic():
        for index in range(first, first + count):
            event_append(
                aggregate_type="slot",
                aggregate_id=f"slot-many-{index}",
                event_type="SlotCreated",
                data={"slot_id": f"slot-many-{index}", "clinic_id": clinic.id},
            )


def test_event_list_looks_the_clinics_zones_up_once_per_page(support_admin, clinic):
    slot_events_of(clinic, 1)
    support_admin.get("/admin/events/event/")  # warm what the first request caches
    with CaptureQueriesContext(connection) as one_event:
        assert page_text(support_admin, "/admin/events/event/").count("(Europe/Berlin)") == 1
    slot_events_of(clinic, 11, first=1)
    with CaptureQueriesContext(connection) as twelve_events:
        assert page_text(support_admin, "/admin/events/event/").count("(Europe/Berlin)") == 12
    assert len(twelve_events) == len(one_event)


def test_holds_waiting_entries_and_bookings_read_in_the_clinics_zone(support_admin, booking, slot):
    hold = Reservation.objects.create(
        slot=slot, user_id="owner-9", pet_id="pet-9", expires_at=MOMENT
    )
    Reservation.objects.filter(id=hold.id).update(created_at=MOMENT, updated_at=MOMENT)
    entry = WaitlistEntry.objects.create(
        slot=slot, user_id="owner-8", pet_id="pet-8", status=EntryStatus.OFFERED
    )
    WaitlistEntry.objects.filter(id=entry.id).update(
        joined_at=MOMENT, offered_at=MOMENT, offer_expires_at=MOMENT, ended_at=MOMENT
    )
    Booking.objects.filter(id=booking.id).update(created_at=MOMENT)

    holds = page_text(support_admin, "/admin/reservations/reservation/")
    assert holds.count(BERLIN) == 2  # expires, created
    assert BARE_UTC not in holds
    hold_page = page_text(support_admin, f"/admin/reservations/reservation/{hold.id}/change/")
    assert hold_page.count(BERLIN) == 3  # expires, created, updated
    assert BARE_UTC not in hold_page

    line = page_text(support_admin, "/admin/waitlist/waitlistentry/")
    assert line.count(BERLIN) == 4
    assert BARE_UTC not in line
    entry_page = page_text(support_admin, f"/admin/waitlist/waitlistentry/{entry.id}/change/")
    assert entry_page.count(BERLIN) == 4
    assert BARE_UTC not in entry_page

    assert_clinic_time(page_text(support_admin, "/admin/bookings/booking/"))


def test_owner_limits_belong_to_no_clinic_and_read_utc_written(support_admin):
    limit = OwnerLimit.objects.create(user_id="owner-busy", max_live_holds=9, reason="breeder")
    OwnerLimit.objects.filter(id=limit.id).update(updated_at=MOMENT)
    assert_clinic_time(page_text(support_admin, "/admin/reservations/ownerlimit/"), IN_UTC)


def test_action_pages_show_the_visits_in_clinic_time(support_admin, booking):
    page = support_admin.post(
        "/admin/bookings/booking/",
        {"action": "cancel_bookings", "_selected_action": [str(booking.pk)]},
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert "(UTC)" not in text
    assert local_label(booking.slot.start_at, "Europe/Berlin") in text


def test_a_clinics_last_sync_reads_in_its_own_zone(support_admin, clinic):
    Clinic.objects.filter(id=clinic.id).update(synced_at=MOMENT)
    assert_clinic_time(page_text(support_admin, f"/admin/slots/clinic/{clinic.id}/change/"))


def test_the_checkout_link_and_the_providers_answers_are_for_support_only(
    support_admin, booking, django_user_model
):
    """The API gives the checkout link to the owner alone; the admin shows it, and the
    provider's answers that carry it, to support, not to the clinic's staff."""
    from django.test import Client

    from slots.models import ClinicStaff

    record = PaymentRecordFactory(
        booking=booking,
        payment_id="pay-link",
        amount=Decimal("45.00"),
        currency="EUR",
        checkout_url="https://pay.example/checkout/owner-secret",
        last_payload={"checkout_url": "https://pay.example/checkout/owner-secret"},
    )
    url = f"/admin/bookings/paymentrecord/{record.id}/change/"
    assert "owner-secret" in page_text(support_admin, url)
    staff_user = django_user_model.objects.create_user("staff-link", password="pw", is_staff=True)
    ClinicStaff.objects.create(user=staff_user, clinic_id=booking.clinic_id)
    staff = Client()
    staff.force_login(staff_user)
    seen_by_staff = page_text(staff, url)
    assert "pay-link" in seen_by_staff  # the record itself is theirs to see
    assert "owner-secret" not in seen_by_staff


def test_a_booking_action_over_the_row_limit_changes_nothing(support_admin, booking, monkeypatch):
    # Each booking is its own slot write (and may owe a refund): a "select all" must not run
    # past the web worker's timeout and stop halfway.
    monkeypatch.setattr("petpro_booking.core.admin_access.ACTION_MAX_ROWS", 0)
    before = Booking.objects.get(pk=booking.pk).status
    page = support_admin.post(
        "/admin/bookings/booking/",
        {
            "action": "cancel_bookings",
            "_selected_action": [str(booking.pk)],
            "apply": "1",
            "reason": "Vet is ill",
        },
        follow=True,
    )
    said = [str(message) for message in page.context["messages"]]
    assert said[0].startswith("1 bookings selected; an action changes at most 0 at a time.")
    assert Booking.objects.get(pk=booking.pk).status == before
