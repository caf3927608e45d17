"""Admin: a slot's line and offers oldest first, scoped to the staff's clinics; removing an
entry asks for a reason, goes through the service, and passes an offer on."""

from __future__ import annotations

import pytest

from petpro_booking.events.models import Event
from reservations.models import Reservation
from waitlist.models import EntryStatus, WaitlistEntry

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory
from ..reservations.test_admin import browser_for
from .conftest import hold, join

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_slots_line_oldest_first_and_removal_with_a_reason(client, owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    entries = [join(owners[i], slot, f"pet-{i}").json() for i in (2, 3, 4)]
    owners[1].delete(f"/api/v1/reservations/{held['id']}")  # offered to owner-2
    other = SlotFactory(service=ClinicServiceFactory(clinic=ClinicFactory(id="elsewhere")))
    hold(owners[5], other, "pet-5")
    join(owners[6], other, "pet-6")

    browser = browser_for(client, clinic_id=slot.clinic_id)
    page = browser.get("/admin/waitlist/waitlistentry/", {"q": str(slot.id)})
    assert page.status_code == 200
    shown = [e.id for e in page.context["cl"].result_list]
    assert [str(i) for i in shown] == [e["id"] for e in entries]
    assert browser.get("/admin/waitlist/waitlistentry/").context["cl"].result_count == 3

    ask = browser.post(
        "/admin/waitlist/waitlistentry/",
        {"action": "remove_entries", "_selected_action": [entries[0]["id"], entries[1]["id"]]},
    )
    assert ask.status_code == 200
    assert b"reason" in ask.content
    refused = browser.post(
        "/admin/waitlist/waitlistentry/",
        {"action": "remove_entries", "_selected_action": [entries[1]["id"]], "apply": "1"},
    )
    assert refused.status_code == 200  # the form again: a reason is required
    assert WaitlistEntry.objects.get(id=entries[1]["id"]).status == EntryStatus.WAITING
    done = browser.post(
        "/admin/waitlist/waitlistentry/",
        {
            "action": "remove_entries",
            "_selected_action": [entries[0]["id"], entries[1]["id"]],
            "apply": "1",
            "reason": "Duplicate request by phone",
        },
    )
    assert done.status_code == 302
    removed = WaitlistEntry.objects.filter(id__in=[entries[0]["id"], entries[1]["id"]])
    assert {e.status for e in removed} == {EntryStatus.REMOVED}
    assert {e.end_reason for e in removed} == {"Duplicate request by phone"}
    # owner-2's offer went back and on to the next still in line, owner-4.
    last = WaitlistEntry.objects.get(id=entries[2]["id"])
    assert last.status == EntryStatus.OFFERED
    assert Reservation.objects.get(id=last.reservation_id).user_id == "owner-4"
    left = Event.objects.get(aggregate_id=entries[1]["id"], event_type="WaitlistLeft")
    assert left.payload["reason"] == "Duplicate request by phone"
    assert left.metadata["actor"]["type"] == "staff"


def test_removing_more_entries_than_an_action_takes_removes_none(client, owners, slot, monkeypatch):
    monkeypatch.setattr("petpro_booking.core.admin_access.ACTION_MAX_ROWS", 1)
    hold(owners[1], slot, "pet-1")
    entries = [join(owners[i], slot, f"pet-{i}").json() for i in (2, 3)]
    browser = browser_for(client, clinic_id=slot.clinic_id)
    page = browser.post(
        "/admin/waitlist/waitlistentry/",
        {
            "action": "remove_entries",
            "_selected_action": [e["id"] for e in entries],
            "apply": "1",
            "reason": "Closing the line",
        },
        follow=True,
    )
    said = [str(message) for message in page.context["messages"]]
    assert said[0].startswith("2 entries selected; an action changes at most 1 at a time.")
    statuses = WaitlistEntry.objects.filter(id__in=[e["id"] for e in entries])
    assert {e.status for e in statuses} == {EntryStatus.WAITING}
