"""Admin list of holds: read-only, staff see their clinics' holds, support all."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from reservations.models import Reservation
from slots.models import ClinicStaff

from ..factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def holds_in_two_clinics():
    later = timezone.now() + dt.timedelta(minutes=10)
    holds = []
    for clinic_id in ("mine", "theirs"):
        service = ClinicServiceFactory(id=f"svc-{clinic_id}", clinic=ClinicFactory(id=clinic_id))
        holds.append(
            Reservation.objects.create(
                slot=SlotFactory(service=service), user_id="u", pet_id="p", expires_at=later
            )
        )
    return holds


def browser_for(client, *, clinic_id: str | None = None, support: bool = False):
    user = User.objects.create_user(f"admin-{clinic_id}-{support}", password="pw", is_staff=True)
    if support:
        user.groups.add(Group.objects.create(name="support"))
    if clinic_id:
        ClinicStaff.objects.create(user=user, clinic_id=clinic_id)
    client.force_login(user)
    return client


def test_staff_see_only_their_clinics_holds(client, holds_in_two_clinics):
    mine, theirs = holds_in_two_clinics
    browser = browser_for(client, clinic_id="mine")
    page = browser.get("/admin/reservations/reservation/", {"status__exact": "held"})
    assert page.status_code == 200
    assert {r.pk for r in page.context["cl"].result_list} == {mine.pk}
    assert browser.get(f"/admin/reservations/reservation/{mine.pk}/change/").status_code == 200
    # Another clinic's hold is no hold to them: Django's "does not exist", on the admin index.
    response = browser.get(f"/admin/reservations/reservation/{theirs.pk}/change/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = browser.get(response["Location"])
    assert [str(m) for m in index.context["messages"]] == [
        f"reservation with ID \u201c{theirs.pk}\u201d doesn\u2019t exist. Perhaps it was deleted?"
    ]


def test_support_sees_all_and_nobody_edits(client, holds_in_two_clinics):
    mine, _ = holds_in_two_clinics
    browser = browser_for(client, support=True)
    page = browser.get("/admin/reservations/reservation/")
    assert len(page.context["cl"].result_list) == 2
    assert browser.get("/admin/reservations/reservation/add/").status_code == 403
    detail = browser.get(f"/admin/reservations/reservation/{mine.pk}/change/")
    assert detail.status_code == 200  # view only
    response = browser.post(f"/admin/reservations/reservation/{mine.pk}/change/", {})
    assert response.status_code == 403
    assert Reservation.objects.get(pk=mine.pk).status == "held"
