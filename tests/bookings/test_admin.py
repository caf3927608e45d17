"""Booking admin: search, scoping per clinic, and the actions (cancel, reschedule, complete,
no-show) that ask for a reason and write history and events like the API; stale ones refused."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from bookings.models import BookingHistory
from petpro_booking.events.models import Event
from slots.models import ClinicStaff

from ..factories import ClinicFactory
from .conftest import book_on, counters, let_slot_start

# The services open their own SERIALIZABLE transactions, so tests cannot wrap them in one.
pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/bookings/booking/"


@pytest.fixture
def support_user(db):
    user = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    return user


@pytest.fixture
def support_browser(client, support_user):
    client.force_login(support_user)
    return client


def staff_browser_for(client, clinic_id: str):
    user = User.objects.create_user(f"staff-{clinic_id}", password="pw", is_staff=True)
    ClinicFactory(id=clinic_id)
    ClinicStaff.objects.create(user=user, clinic_id=clinic_id)
    client.force_login(user)
    return client, user


def act(browser, action: str, booking, **fields):
    data = {
        "action": action,
        "_selected_action": [str(booking.pk)],
        "apply": "1",
        f"version_{booking.pk}": str(booking.version),
        **fields,
    }
    return browser.post(CHANGELIST, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_support_finds_booking_by_reference_owner_and_pet(support_browser, booking):
    for query in (booking.reference, booking.user_id, booking.pet_id):
        page = support_browser.get(CHANGELIST, {"q": query})
        assert page.status_code == 200
        assert [b.pk for b in page.context["cl"].result_list] == [booking.pk]
    page = support_browser.get(CHANGELIST, {"status__exact": "cancelled"})
    assert list(page.context["cl"].result_list) == []


def test_the_search_takes_a_reference_in_any_case_and_every_term_must_match(
    support_browser, booking
):
    def found(query: str) -> list:
        page = support_browser.get(CHANGELIST, {"q": query})
        assert page.status_code == 200
        return [b.pk for b in page.context["cl"].result_list]

    assert found(booking.reference.lower()) == [booking.pk]
    assert found(f"{booking.reference} {booking.user_id}") == [booking.pk]
    assert found(f"{booking.reference} nobody") == []
    assert found(str(booking.reservation_id)) == []  # a UUID, but no searched field's
    assert found("x" * 500) == []  # longer than any searched column


def test_a_search_of_many_words_searches_the_first_ten_and_says_so(support_browser, booking):
    words = [booking.reference] * 10 + ["nobody"] * 290  # the 11th word on would match nothing
    page = support_browser.get(CHANGELIST, {"q": " ".join(words)})
    assert page.status_code == 200
    assert [b.pk for b in page.context["cl"].result_list] == [booking.pk]
    assert "Only the first 10 words" in " ".join(messages_of(page))


def test_a_clinics_staff_search_finds_only_their_clinics_bookings(client, booking):
    browser, _ = staff_browser_for(client, "another-clinic")
    page = browser.get(CHANGELIST, {"q": booking.reference})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == []


def test_cancel_action_asks_for_a_reason_then_goes_through_the_service(
    support_browser, support_user, booking, slot
):
    form_page = support_browser.post(
        CHANGELIST, {"action": "cancel_bookings", "_selected_action": [str(booking.pk)]}
    )
    assert form_page.status_code == 200
    assert b'name="reason"' in form_page.content
    assert booking.reference.encode() in form_page.content

    no_reason = act(support_browser, "cancel_bookings", booking, reason="")
    assert b"This field is required" in no_reason.content
    booking.refresh_from_db()
    assert booking.status == "confirmed"

    done = act(support_browser, "cancel_bookings", booking, reason="owner phoned in sick")
    assert any("cancelled" in message for message in messages_of(done))
    booking.refresh_from_db()
    assert booking.status == "cancelled"
    assert counters(slot) == (0, 0)
    history = BookingHistory.objects.filter(booking=booking).last()
    assert (history.from_status, history.to_status) == ("confirmed", "cancelled")
    assert (history.actor_type, history.actor_id) == ("support", f"admin:{support_user.pk}")
    assert history.reason == "owner phoned in sick"
    event = Event.objects.filter(aggregate_id=str(booking.id)).order_by("-id").first()
    assert event.event_type == "BookingCancelled"
    assert event.payload["reason"] == "owner phoned in sick"
    assert event.metadata["actor"] == {"type": "support", "id": f"admin:{support_user.pk}"}


@pytest.mark.parametrize("version", ["\u00b2", "1" * 5000, "-1", ""])
def test_a_version_field_that_is_no_version_is_no_stale_check_and_no_500(
    support_browser, booking, version
):
    """The action form's hidden version, hand-edited: `"²".isdigit()` is true and `int("²")`
    raised mid-batch (the bookings before it were already changed)."""
    data = {
        "action": "cancel_bookings",
        "_selected_action": [str(booking.pk)],
        "apply": "1",
        f"version_{booking.pk}": version,
        "reason": "owner phoned",
    }
    response = support_browser.post(CHANGELIST, data, follow=True)
    assert response.status_code == 200
    booking.refresh_from_db()
    assert booking.status == "cancelled"  # as if no version had been sent


@pytest.mark.parametrize(
    ("path", "redirects", "named"),
    [
        ("a/b/change/", ["/admin/"], "a/b"),
        # The admin's catch-all adds "change/", then Django's "does not exist" answer.
        ("a/b/", [f"{CHANGELIST}a/b/change/", "/admin/"], "a/b"),
        ("not-a-uuid/change/", ["/admin/"], "not-a-uuid"),
        ("%2F/change/", ["/admin/"], "/"),
    ],
)
def test_a_booking_admin_url_that_names_no_booking_says_so_on_the_admin_index(
    support_browser, booking, path, redirects, named
):
    support_browser.raise_request_exception = False
    response = support_browser.get(f"{CHANGELIST}{path}", follow=True)
    assert response.redirect_chain == [(url, 302) for url in redirects]
    assert response.status_code == 200
    assert messages_of(response) == [
        f"booking with ID \u201c{named}\u201d doesn\u2019t exist. Perhaps it was deleted?"
    ]


def test_a_booking_admin_url_with_a_nul_is_a_400_before_any_view(support_browser, booking):
    support_browser.raise_request_exception = False
    response = support_browser.get(f"{CHANGELIST}a%00b/change/")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_a_booking_admin_url_goes_to_the_bookings_page(support_browser, booking):
    response = support_browser.get(f"{CHANGELIST}{str(booking.pk).upper()}/change/")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/backoffice/bookings/{booking.pk}/"


def test_stale_action_is_refused(support_browser, booking):
    let_slot_start(booking.slot)
    seen_version = booking.version  # a second agent opens the form now...
    act(support_browser, "complete_bookings", booking, reason="attended")
    booking.refresh_from_db()
    assert booking.status == "completed"
    booking.version = seen_version  # ...and submits it after the first agent's change
    response = act(support_browser, "no_show_bookings", booking, reason="never came")
    assert any("changed by someone else" in message for message in messages_of(response))
    booking.refresh_from_db()
    assert booking.status == "completed"
    assert BookingHistory.objects.filter(booking=booking, to_status="no_show").count() == 0


def test_reschedule_and_no_show_actions(support_browser, booking, slot, second_slot):
    form_page = support_browser.post(
        CHANGELIST, {"action": "reschedule_booking", "_selected_action": [str(booking.pk)]}
    )
    assert form_page.status_code == 200
    assert str(second_slot.pk).encode() in form_page.content
    act(
        support_browser,
        "reschedule_booking",
        booking,
        reason="vet moved the visit",
        slot=str(second_slot.pk),
    )
    booking.refresh_from_db()
    assert booking.slot_id == second_slot.id
    assert counters(slot) == (0, 0)
    assert counters(second_slot) == (1, 0)
    let_slot_start(second_slot)
    act(support_browser, "no_show_bookings", booking, reason="did not come")
    booking.refresh_from_db()
    assert booking.status == "no_show"
    types = list(
        Event.objects.filter(aggregate_id=str(booking.id))
        .order_by("aggregate_version")
        .values_list("event_type", flat=True)
    )
    assert types[-2:] == ["BookingRescheduled", "BookingNoShow"]


def test_clinic_staff_see_and_change_only_their_clinics(client, owner_pet, booking):
    browser, _ = staff_browser_for(client, "clinic-elsewhere")
    page = browser.get(CHANGELIST)
    assert list(page.context["cl"].result_list) == []
    act(browser, "cancel_bookings", booking, reason="not mine")
    booking.refresh_from_db()
    assert booking.status == "confirmed"

    browser, user = staff_browser_for(client, booking.clinic_id)
    page = browser.get(CHANGELIST)
    assert [b.pk for b in page.context["cl"].result_list] == [booking.pk]
    act(browser, "cancel_bookings", booking, reason="clinic closed")
    booking.refresh_from_db()
    assert booking.status == "cancelled"
    history = BookingHistory.objects.filter(booking=booking).last()
    assert (history.actor_type, history.actor_id) == ("staff", f"admin:{user.pk}")


def test_booking_fields_cannot_be_edited_directly(support_browser, booking):
    page = support_browser.get(f"{CHANGELIST}{booking.pk}/change/", follow=True)
    assert page.status_code == 200
    assert page.redirect_chain[-1][0] == f"/admin/backoffice/bookings/{booking.pk}/"
    assert b'name="status"' not in page.content
    assert b"History" in page.content or b"history" in page.content
    response = support_browser.post(f"{CHANGELIST}{booking.pk}/change/", {"status": "completed"})
    assert response.status_code == 403
    booking.refresh_from_db()
    assert booking.status == "confirmed"


def test_other_bookings_of_the_same_owner_stay_untouched(
    support_browser, booking, slot, second_slot
):
    other = book_on(second_slot)
    act(support_browser, "cancel_bookings", booking, reason="duplicate")
    booking.refresh_from_db()
    assert booking.status == "cancelled"  # the action did act, on this one booking
    cancelled = BookingHistory.objects.get(booking=booking, to_status="cancelled")
    assert (cancelled.from_status, cancelled.reason) == ("confirmed", "duplicate")
    assert counters(slot) == (0, 0)
    other.refresh_from_db()
    assert other.status == "confirmed"
    assert not BookingHistory.objects.filter(booking=other, to_status="cancelled").exists()
    assert counters(second_slot) == (1, 0)
