"""The slot admin's add form in a real browser: a receptionist in Jakarta types 09:00 next to
"Clinic time (Asia/Jakarta)" and gets a 09:00 Jakarta slot; the admin's "Now" gives Jakarta's
wall-clock time, not the server's (UTC)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from slots.models import ClinicStaff, Slot

from ..factories import ClinicFactory, ClinicServiceFactory
from .conftest import screenshot
from .test_daily_tool import PASSWORD, follow, log_in

pytestmark = pytest.mark.django_db(transaction=True)

JAKARTA = ZoneInfo("Asia/Jakarta")


def test_receptionist_in_jakarta_adds_a_slot_in_clinic_time(browser):
    jakarta = ClinicFactory(id="clinic-jakarta", name="Jakarta Pet Care", timezone="Asia/Jakarta")
    ClinicServiceFactory(id="svc-groom", clinic=jakarta, name="Grooming", currency="IDR")
    user = User.objects.create_user("resepsionis", password=PASSWORD, is_staff=True)
    ClinicStaff.objects.create(user=user, clinic_id="clinic-jakarta")
    log_in(browser, "resepsionis")

    browser.get(f"{browser.base_url}/admin/slots/slot/add/")
    assert browser.page_source.count("Clinic time (Asia/Jakarta)") == 2  # start and end
    # "Now" fills in the clinic's wall-clock time (the page runs in the clinic's zone).
    start = browser.find_element(By.CSS_SELECTOR, ".field-start_at")
    start.find_element(By.LINK_TEXT, "Today").click()
    start.find_element(By.LINK_TEXT, "Now").click()
    now = timezone.localtime(timezone.now(), JAKARTA)
    assert browser.find_element(By.NAME, "start_at_0").get_attribute("value") == f"{now:%Y-%m-%d}"
    shown = browser.find_element(By.NAME, "start_at_1").get_attribute("value") or ""
    assert shown[:5] in {f"{now - dt.timedelta(minutes=m):%H:%M}" for m in (0, 1, 2)}

    Select(browser.find_element(By.NAME, "clinic")).select_by_visible_text(
        "Jakarta Pet Care (Asia/Jakarta)"
    )
    Select(browser.find_element(By.NAME, "service")).select_by_value("svc-groom")
    for name, value in (
        ("start_at_0", "2026-12-09"),
        ("start_at_1", "09:00"),
        ("end_at_0", "2026-12-09"),
        ("end_at_1", "09:30"),
    ):
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    screenshot(browser, "slot-add-clinic-time")
    follow(browser, browser.find_element(By.NAME, "_save"))

    slot = Slot.objects.get(clinic_id="clinic-jakarta")
    assert slot.start_at == dt.datetime(2026, 12, 9, 2, 0, tzinfo=dt.UTC)
    assert slot.end_at == dt.datetime(2026, 12, 9, 2, 30, tzinfo=dt.UTC)
    assert "2026-12-09 09:00 (Asia/Jakarta)" in browser.page_source  # the list says so
