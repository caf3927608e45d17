"""The daily tool in a real browser: a receptionist of one clinic and a support agent log in,
read the schedule, open a slot and a booking, cancel and close, and the database agrees."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bookings.models import Booking, BookingHistory
from slots.models import ClinicStaff, Slot

from ..bookings.conftest import OTHER_OWNER, book_on
from ..factories import (
    ClinicFactory,
    ClinicServiceFactory,
    LocalPetFactory,
    LocalUserFactory,
    SlotFactory,
)
from .conftest import TABLET, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = ZoneInfo("Europe/Berlin")
PASSWORD = "daily-tool-pw"


@pytest.fixture
def berlin_day(db):
    """Tomorrow at Berlin Vet (clinic time): a full check-up, an open one, a vaccination slot
    with two pets, a closed slot; and a Jakarta clinic the Berlin staff must not see."""
    berlin = ClinicFactory(id="clinic-berlin", name="Berlin Vet", timezone="Europe/Berlin")
    jakarta = ClinicFactory(id="clinic-jakarta", name="Jakarta Pet Care", timezone="Asia/Jakarta")
    checkup = ClinicServiceFactory(id="svc-checkup", clinic=berlin, name="Check-up")
    vaccination = ClinicServiceFactory(id="svc-vacc", clinic=berlin, name="Vaccination")
    ClinicServiceFactory(id="svc-jkt", clinic=jakarta, name="Grooming")
    day = timezone.localtime(timezone.now(), BERLIN).date() + dt.timedelta(days=1)

    def slot(service, hour: int, minute: int = 0, **fields) -> Slot:
        start = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BERLIN)
        return SlotFactory(
            clinic=berlin,
            service=service,
            start_at=start,
            end_at=start + dt.timedelta(minutes=30),
            **fields,
        )

    ana = LocalUserFactory(
        id="owner-1", name="Ana Lima", email="ana@example.com", phone="+49 30 1234567"
    )
    budi = LocalUserFactory(
        id="owner-2", name="Budi Santoso", email="budi@example.com", phone="+62 811 555 0101"
    )
    LocalPetFactory(id="pet-1", owner=ana, name="Rex", species="dog")
    LocalPetFactory(id="pet-2", owner=budi, name="Mochi", species="cat")
    slots = {
        "checkup_9": slot(checkup, 9),
        "checkup_930": slot(checkup, 9, 30),
        "vacc_9": slot(vaccination, 9, capacity=3),
        "vacc_10": slot(vaccination, 10, status="closed"),
    }
    bookings = {
        "rex_checkup": book_on(slots["checkup_9"]),
        "rex_vacc": book_on(slots["vacc_9"]),
        "mochi_vacc": book_on(slots["vacc_9"], owner=OTHER_OWNER, pet_id="pet-2"),
    }
    return day, slots, bookings


def log_in(browser, username: str) -> None:
    browser.get(f"{browser.base_url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert "Log out" in browser.page_source or "logout" in browser.page_source


def follow(browser, element) -> None:
    """Click a link or button and wait for the next page (a click returns before it loads)."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 15).until(lambda _: gone(page))


def gone(element) -> bool:
    """The page that held `element` has been replaced. Selenium's `staleness_of` waits for a
    StaleElementReferenceException only; newer chromedrivers answer a node of a replaced
    document with "Node with given id does not belong to the document" instead."""
    try:
        element.is_enabled()
    except WebDriverException:  # stale, or that chromedriver's word for it
        return True
    return False


def card(browser, slot: Slot):
    return browser.find_element(By.CSS_SELECTOR, f'a.bo-slot[data-slot="{slot.id}"]')


def test_receptionist_reads_the_day_closes_a_slot_and_cancels_a_visit(browser, berlin_day):
    day, slots, bookings = berlin_day
    user = User.objects.create_user("reception", password=PASSWORD, is_staff=True)
    ClinicStaff.objects.create(user=user, clinic_id="clinic-berlin")
    log_in(browser, "reception")

    # Today's schedule of their own clinic, straight from the admin's top bar.
    follow(browser, browser.find_element(By.LINK_TEXT, "Schedule"))
    assert browser.current_url.startswith(
        f"{browser.base_url}/admin/backoffice/schedule/clinic-berlin/"
    )
    assert "Berlin Vet" in browser.find_element(By.TAG_NAME, "h1").text
    assert "Times in Europe/Berlin" in browser.page_source
    assert "Jakarta" not in browser.page_source

    follow(browser, browser.find_element(By.ID, "next"))  # tomorrow
    assert f"{day:%d %B %Y}" in browser.find_element(By.TAG_NAME, "h1").text
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#schedule thead th")]
    assert headers == ["TIME", "CHECK-UP", "VACCINATION"] or headers == [
        "Time",
        "Check-up",
        "Vaccination",
    ]
    full = card(browser, slots["checkup_9"])
    assert full.get_attribute("data-state") == "full"
    assert "09:00\u201309:30" in full.text  # an en dash between the times
    assert "1 booked · 0 held · 1 place" in full.text
    assert "Rex — Ana Lima" in full.text
    vacc = card(browser, slots["vacc_9"])
    assert vacc.get_attribute("data-state") == "open"
    assert "Rex — Ana Lima" in vacc.text
    assert "Mochi — Budi Santoso" in vacc.text
    assert card(browser, slots["vacc_10"]).get_attribute("data-state") == "closed"
    colours = {
        state: card(browser, slots[key]).value_of_css_property("background-color")
        for state, key in (("full", "checkup_9"), ("open", "vacc_9"), ("closed", "vacc_10"))
    }
    assert len(set(colours.values())) == 3  # three states, three colours
    screenshot(browser, "schedule-day")

    # On a tablet the page does not scroll sideways; the grid scrolls in its own box.
    browser.set_window_size(*TABLET)
    browser.refresh()
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1"
    )
    screenshot(browser, "schedule-day-tablet")
    browser.set_window_size(1280, 900)

    # Close the open 09:30 check-up from its slot page.
    browser.refresh()
    follow(browser, card(browser, slots["checkup_930"]))
    assert "Nobody booked this slot." in browser.page_source
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#close-slot input[type=submit]"))
    assert "closed to new bookings" in browser.page_source
    assert browser.find_element(By.ID, "slot-state").text.lower() == "closed"
    assert Slot.objects.get(pk=slots["checkup_930"].pk).status == "closed"

    # From the full 09:00 slot to Rex's booking, cancelled with a reason.
    follow(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Schedule of Berlin Vet"))
    follow(browser, card(browser, slots["checkup_9"]))
    screenshot(browser, "slot")
    rex = bookings["rex_checkup"]
    follow(browser, browser.find_element(By.LINK_TEXT, rex.reference))
    assert "Rex" in browser.find_element(By.ID, "summary").text
    assert "Ana Lima" in browser.find_element(By.ID, "summary").text
    assert "(Europe/Berlin)" in browser.find_element(By.ID, "summary").text
    browser.find_element(By.NAME, "reason").send_keys("The vet is ill today")
    follow(browser, browser.find_element(By.ID, "do-cancel"))
    assert "cancelled, its place is free again" in browser.page_source
    assert browser.find_element(By.ID, "booking-status").text == "Cancelled"
    history = browser.find_element(By.ID, "history").text
    assert "The vet is ill today" in history
    assert "Clinic staff reception" in history  # who, by name
    rex.refresh_from_db()
    assert rex.status == "cancelled"
    last = BookingHistory.objects.filter(booking=rex).last()
    assert (last.actor_type, last.actor_id, last.reason) == (
        "staff",
        f"admin:{user.pk}",
        "The vet is ill today",
    )
    assert Slot.objects.get(pk=slots["checkup_9"].pk).booked_count == 0

    # Another clinic's schedule does not exist for them.
    browser.get(f"{browser.base_url}/admin/backoffice/schedule/clinic-jakarta/")
    assert "Jakarta Pet Care" not in browser.page_source


def test_support_finds_a_booking_reads_its_story_and_cancels_a_slots_visits(browser, berlin_day):
    day, slots, bookings = berlin_day
    support = User.objects.create_user("helpdesk", password=PASSWORD, is_staff=True)
    support.groups.add(Group.objects.get_or_create(name="support")[0])
    log_in(browser, "helpdesk")

    # Support chooses the clinic, then reads the week.
    follow(browser, browser.find_element(By.LINK_TEXT, "Schedule"))
    clinics = browser.find_element(By.ID, "clinics").text
    assert "Berlin Vet" in clinics
    assert "Jakarta Pet Care" in clinics
    follow(browser, browser.find_element(By.LINK_TEXT, "Berlin Vet"))
    browser.find_element(By.ID, "date").clear()
    browser.find_element(By.ID, "date").send_keys(f"{day:%m%d%Y}")
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".bo-bar form input[type=submit]"))
    follow(browser, browser.find_element(By.LINK_TEXT, "Week"))
    assert "week of" in browser.find_element(By.TAG_NAME, "h1").text
    assert "Mochi — Budi Santoso" in card(browser, slots["vacc_9"]).text
    screenshot(browser, "schedule-week")

    # Find Mochi's booking by the owner's phone number, open its whole story.
    follow(browser, browser.find_element(By.LINK_TEXT, "Find a booking"))
    browser.find_element(By.ID, "q").send_keys("811 555 0101")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#find-form input[type=submit]"))
    found = browser.find_element(By.ID, "found").text
    mochi = bookings["mochi_vacc"]
    assert mochi.reference in found
    assert "Budi Santoso" in found
    assert "Mochi" in found
    assert bookings["rex_vacc"].reference not in found
    follow(browser, browser.find_element(By.LINK_TEXT, mochi.reference))
    assert "budi@example.com" in browser.find_element(By.ID, "summary").text
    assert "BookingConfirmed" in browser.find_element(By.ID, "events").text
    assert "ReservationCreated" in browser.find_element(By.ID, "events").text
    notes = browser.find_element(By.ID, "notifications").text
    assert "booking_confirmed" in notes
    assert "email" in notes
    screenshot(browser, "booking")

    # Cancel every visit of the 09:00 vaccination slot, with one reason.
    follow(browser, browser.find_element(By.LINK_TEXT, "slot"))
    assert "Cancel the visits of this slot (2)" in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "#cancel-visits textarea[name=reason]").send_keys(
        "Vaccine delivery delayed"
    )
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#cancel-visits input[type=submit]"))
    assert "Slot closed; 2 visits cancelled" in browser.page_source
    assert "0 holds released" in browser.page_source
    for key in ("rex_vacc", "mochi_vacc"):
        booking = Booking.objects.get(pk=bookings[key].pk)
        assert booking.status == "cancelled"
        assert booking.history.last().reason == "Vaccine delivery delayed"
    vacc_9 = Slot.objects.get(pk=slots["vacc_9"].pk)
    assert (vacc_9.booked_count, vacc_9.status) == (0, "closed")
    assert Booking.objects.get(pk=bookings["rex_checkup"].pk).status == "confirmed"
