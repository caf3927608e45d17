"""Booking rules through the API: each allowed at its edge and refused just past it, in the
clinic's time zone across both DST changes of Europe/Berlin (2027-03-28 and 2027-10-31), and
search agreeing with the hold on every case."""

from __future__ import annotations

import datetime as dt
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import time_machine

from reservations.models import Reservation
from slots.models import Slot

from ..conftest import api_client_for
from ..factories import ClinicFactory, ClinicServiceFactory, LocalPetFactory, SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


# (case, service rules, clinic active, service active, now, slot start, expected refusal)
CASES = [
    # 24 h notice: the night of 27/28 March 2027 has 23 hours, so 10:00 the next day is too soon.
    (
        "notice edge across spring DST",
        {"min_notice_minutes": 1440},
        True,
        True,
        berlin(2027, 3, 27, 10, 0),
        berlin(2027, 3, 28, 11, 0),
        None,
    ),
    (
        "notice one minute short across spring DST",
        {"min_notice_minutes": 1440},
        True,
        True,
        berlin(2027, 3, 27, 10, 0),
        berlin(2027, 3, 28, 10, 59),
        "too_late_to_book",
    ),
    # Autumn: that night has 25 hours; 24 h notice ends at 09:00 local.
    (
        "notice edge across autumn DST",
        {"min_notice_minutes": 1440},
        True,
        True,
        berlin(2027, 10, 30, 10, 0),
        berlin(2027, 10, 31, 9, 0),
        None,
    ),
    (
        "notice one minute short across autumn DST",
        {"min_notice_minutes": 1440},
        True,
        True,
        berlin(2027, 10, 30, 10, 0),
        berlin(2027, 10, 31, 8, 59),
        "too_late_to_book",
    ),
    # Horizon 1 day = up to the end of tomorrow, clinic-local, however long that night is.
    (
        "horizon last minute of the day across spring DST",
        {"booking_horizon_days": 1},
        True,
        True,
        berlin(2027, 3, 27, 12, 0),
        berlin(2027, 3, 28, 23, 59),
        None,
    ),
    (
        "horizon next local day across spring DST",
        {"booking_horizon_days": 1},
        True,
        True,
        berlin(2027, 3, 27, 12, 0),
        berlin(2027, 3, 29, 0, 0),
        "beyond_booking_horizon",
    ),
    (
        "horizon last minute of the day across autumn DST (25 h ahead)",
        {"booking_horizon_days": 1},
        True,
        True,
        berlin(2027, 10, 30, 23, 30),
        berlin(2027, 10, 31, 23, 59),
        None,
    ),
    (
        "horizon next local day across autumn DST",
        {"booking_horizon_days": 1},
        True,
        True,
        berlin(2027, 10, 30, 23, 30),
        berlin(2027, 11, 1, 0, 0),
        "beyond_booking_horizon",
    ),
    (
        "a second before the start",
        {},
        True,
        True,
        berlin(2027, 3, 28, 3, 29, 59),
        berlin(2027, 3, 28, 3, 30),
        None,
    ),
    (
        "at the start",
        {},
        True,
        True,
        berlin(2027, 3, 28, 3, 30),
        berlin(2027, 3, 28, 3, 30),
        "slot_started",
    ),
    (
        "clinic inactive",
        {},
        False,
        True,
        berlin(2027, 3, 1, 9, 0),
        berlin(2027, 3, 2, 9, 0),
        "clinic_inactive",
    ),
    (
        "service inactive",
        {},
        True,
        False,
        berlin(2027, 3, 1, 9, 0),
        berlin(2027, 3, 2, 9, 0),
        "service_inactive",
    ),
]


@pytest.mark.parametrize(
    ("rules", "clinic_active", "service_active", "now", "start", "refusal"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rule_edge_hold_and_search_agree(rules, clinic_active, service_active, now, start, refusal):
    clinic = ClinicFactory(id="clinic-rules", timezone="Europe/Berlin", active=clinic_active)
    service = ClinicServiceFactory(
        id="svc-rules", clinic=clinic, species=["dog"], active=service_active, **rules
    )
    LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")
    slot = SlotFactory(service=service, start_at=start, end_at=start + dt.timedelta(minutes=30))

    with time_machine.travel(now, tick=False):
        owner = api_client_for(sub="owner-1", roles=["pet_owner"])
        staff = api_client_for(sub="staff-1", roles=["clinic_staff"], clinic_ids=[clinic.id])
        seen = owner.get("/api/v1/slots", {"clinic_id": clinic.id}).json()
        listed = staff.get(
            "/api/v1/slots", {"clinic_id": clinic.id, "include_unbookable": "true"}
        ).json()
        response = owner.post(
            "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
        )

    assert [row["reason"] for row in listed["results"]] == [refusal]
    if refusal is None:
        assert response.status_code == 201, response.json()
        assert [row["id"] for row in seen["results"]] == [str(slot.id)]
        assert seen["results"][0]["available_capacity"] == 1
        assert seen["results"][0]["bookable"] is True
    else:
        assert response.status_code == 409
        assert response.json()["error"]["code"] == refusal
        assert response.json()["error"]["details"]["reason"] == refusal
        assert seen["count"] == 0  # search leaves out what the hold refuses
        assert listed["results"][0]["bookable"] is False
        assert listed["results"][0]["available_capacity"] == 0
        assert not Reservation.objects.exists()
        assert Slot.objects.get(id=slot.id).held_count == 0


def test_rules_unset_fall_back_to_settings(settings, owner_pet, clinic_service):
    settings.BOOKING_MIN_NOTICE_MINUTES = 120
    soon = SlotFactory(
        service=clinic_service, start_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])
    response = owner.post(
        "/api/v1/reservations", {"slot_id": str(soon.id), "pet_id": "pet-1"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {
        "reason": "too_late_to_book",
        "start_at": soon.start_at.isoformat(),
        "min_notice_minutes": 120,
    }
    clinic_service.min_notice_minutes = 30  # the service's own value wins
    clinic_service.save()
    response = owner.post(
        "/api/v1/reservations", {"slot_id": str(soon.id), "pet_id": "pet-1"}, format="json"
    )
    assert response.status_code == 201


def test_species_stays_400_and_search_filters_by_pet(owner_client, owner_pet, clinic):
    cats_only = ClinicServiceFactory(id="svc-cats", clinic=clinic, species=["Cat"])
    anyone = ClinicServiceFactory(id="svc-any", clinic=clinic, species=[])
    cat_slot = SlotFactory(service=cats_only)
    open_slot = SlotFactory(service=anyone)

    response = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(cat_slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_pet"

    for query in ({"pet_id": "pet-1"}, {"species": "DOG"}):
        found = owner_client.get("/api/v1/slots", {"clinic_id": clinic.id, **query}).json()
        assert [row["id"] for row in found["results"]] == [str(open_slot.id)]
    cats = owner_client.get("/api/v1/slots", {"clinic_id": clinic.id, "species": "cat"}).json()
    assert {row["id"] for row in cats["results"]} == {str(cat_slot.id), str(open_slot.id)}

    someone_elses = owner_client.get("/api/v1/slots", {"pet_id": "pet-of-someone-else"})
    assert someone_elses.status_code == 400
    assert someone_elses.json()["error"]["code"] == "invalid_pet"


def test_include_unbookable_is_for_staff_of_the_clinic_and_support(
    owner_client, staff_client, other_staff_client, support_client, slot
):
    Slot.objects.filter(id=slot.id).update(status="closed")
    params = {"clinic_id": slot.clinic_id, "include_unbookable": "true"}
    assert owner_client.get("/api/v1/slots", params).status_code == 403
    assert other_staff_client.get("/api/v1/slots", params).status_code == 403
    assert staff_client.get("/api/v1/slots", {"include_unbookable": "true"}).status_code == 403
    for client in (staff_client, support_client):
        body = client.get("/api/v1/slots", params).json()
        assert [(r["bookable"], r["reason"]) for r in body["results"]] == [(False, "slot_closed")]
    assert owner_client.get("/api/v1/slots", {"clinic_id": slot.clinic_id}).json()["count"] == 0


@pytest.mark.parametrize("day_totals", [True, False], ids=["day-totals", "whole-range-counted"])
def test_search_sql_matches_the_rules_slot_by_slot(settings, day_totals):
    """The PostgreSQL query and slots/rules.py evaluated row by row give the same pages, reasons
    and next-change instant, for a mix of rules, states and filters around both DST changes:
    with the per-day totals an owner's page adds up (slots/day_totals.py), and without them."""
    from reservations.models import Reservation as Hold
    from slots.day_totals import DayTotals
    from slots.selectors import (
        OWNER_SEARCH_MAX_SERVICES,
        slot_search,
        slot_search_evaluated,
    )

    settings.SLOT_SEARCH_DAY_TOTALS = day_totals
    parts = []
    real_part = DayTotals.part

    def part(self, start, end):
        parts.append(real_part(self, start, end))
        return parts[-1]

    berlin_clinic = ClinicFactory(id="c-berlin", timezone="Europe/Berlin")
    lisbon = ClinicFactory(id="c-lisbon", timezone="Europe/Lisbon")
    closed_clinic = ClinicFactory(id="c-closed", active=False)
    services = [
        ClinicServiceFactory(id="s-notice", clinic=berlin_clinic, min_notice_minutes=1440),
        ClinicServiceFactory(
            id="s-horizon", clinic=berlin_clinic, booking_horizon_days=1, species=["cat"]
        ),
        ClinicServiceFactory(id="s-lisbon", clinic=lisbon, booking_horizon_days=2, species=[]),
        ClinicServiceFactory(id="s-off", clinic=lisbon, active=False),
        ClinicServiceFactory(id="s-closed-clinic", clinic=closed_clinic),
    ]
    now = berlin(2027, 10, 30, 9, 0)
    for service in services:
        for hours in (-1, 0, 20, 23, 24, 25, 26, 40, 49, 60):
            start = now + dt.timedelta(hours=hours, minutes=hours % 3 * 10)
            slot = SlotFactory(
                service=service, start_at=start, end_at=start + dt.timedelta(minutes=30)
            )
            if hours == 40:
                Slot.objects.filter(id=slot.id).update(status="closed")
            if hours in (25, 26):  # full with a hold that expires before or after `now`
                expires = now + dt.timedelta(minutes=-5 if hours == 25 else 5)
                Slot.objects.filter(id=slot.id).update(held_count=1)
                Hold.objects.create(
                    slot=slot, user_id="u", pet_id="p", status="held", expires_at=expires
                )

    def midnights(at: dt.datetime) -> set[float]:
        return {
            dt.datetime.combine(
                at.astimezone(ZoneInfo(zone)).date() + dt.timedelta(days=1),
                dt.time(),
                ZoneInfo(zone),
            ).timestamp()
            for zone in ("Europe/Berlin", "Europe/Lisbon")
        }

    for filters in (
        {},
        {"include_unbookable": True},
        {"available": True},
        {"available": False, "include_unbookable": True},
        {"species": "dog"},
        {"clinic_id": "c-lisbon", "include_unbookable": True},
        {"clinic_id": "c-lisbon"},  # its held slots lie in whole days ahead
        {"available": False},
        {"clinic_id": "c-berlin", "service_id": "s-notice", "available": True},
        {"start_from": now + dt.timedelta(hours=24), "start_to": now + dt.timedelta(hours=50)},
        {"species": "cat", "available": True},
    ):
        for at in (now, now + dt.timedelta(hours=15, minutes=1)):
            # owners' searches: lean statements per service, and the staff query's plan when
            # the filters match more services than OWNER_SEARCH_MAX_SERVICES
            for most in (OWNER_SEARCH_MAX_SERVICES, 1):
                for page in (1, 2):
                    kwargs = {"filters": filters, "page": page, "page_size": 7, "now": at}
                    with (
                        mock.patch("slots.selectors.OWNER_SEARCH_MAX_SERVICES", most),
                        mock.patch.object(DayTotals, "part", part),
                    ):
                        in_sql = slot_search(**kwargs)
                    in_python = slot_search_evaluated(**kwargs, using="default")
                    case = (filters, at, page, most)
                    # An owner's answer may say it changes sooner, at a clinic's next midnight
                    # (when the horizon moves), never later than the rules say.
                    sql_until = in_sql.pop("valid_until")
                    python_until = in_python.pop("valid_until")
                    assert in_sql == in_python, case
                    if sql_until != python_until:
                        assert sql_until in midnights(at), case
                        assert python_until is None or sql_until < python_until, case
    assert (
        slot_search(filters={"include_unbookable": True}, page=1, page_size=100, now=now)["count"]
        == 50
    )
    # With the totals, whole days were taken from them, open and free slots among them.
    assert (any(p.open for p in parts) and any(p.free for p in parts)) is day_totals


@pytest.mark.parametrize("notice", [None, 2_000_000_000])
def test_a_horizon_past_the_calendars_end_is_no_horizon_not_a_500(notice):
    """Any whole number may come from the admin or the Clinic Service: a horizon of two
    billion days is a service with no horizon (owner search, staff search and hold alike), a
    notice of two billion minutes leaves nothing bookable, and a buffer as long leaves no room
    for a second slot -- each a clear answer, never a 500."""
    clinic = ClinicFactory(id="clinic-far", timezone="Europe/Berlin")
    service = ClinicServiceFactory(
        id="svc-far",
        clinic=clinic,
        species=["dog"],
        booking_horizon_days=2_000_000_000,
        min_notice_minutes=notice,
        buffer_after_minutes=2_000_000_000,
    )
    LocalPetFactory(owner__id="owner-far", id="pet-far", species="dog")
    start = dt.datetime(2040, 1, 1, 9, tzinfo=dt.UTC)  # far beyond the default horizon
    slot = SlotFactory(service=service, start_at=start, end_at=start + dt.timedelta(minutes=30))
    owner = api_client_for(sub="owner-far", roles=["pet_owner"])
    staff = api_client_for(sub="staff-far", roles=["clinic_staff"], clinic_ids=[clinic.id])

    seen = owner.get("/api/v1/slots", {"clinic_id": clinic.id})
    listed = staff.get("/api/v1/slots", {"clinic_id": clinic.id, "include_unbookable": "true"})
    held = owner.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-far"}, format="json"
    )

    later = start + dt.timedelta(days=1)
    created = staff.post(
        "/api/v1/slots",
        {
            "clinic_id": clinic.id,
            "service_id": service.id,
            "start_at": later.isoformat(),
            "end_at": (later + dt.timedelta(minutes=30)).isoformat(),
        },
        format="json",
    )

    assert created.status_code == 400, created.json()  # inside the first slot's buffer
    assert created.json()["error"]["code"] == "validation_error"
    assert seen.status_code == listed.status_code == 200
    if notice is None:
        assert [row["id"] for row in seen.json()["results"]] == [str(slot.id)]
        assert [row["reason"] for row in listed.json()["results"]] == [None]
        assert held.status_code == 201, held.json()
    else:
        assert seen.json()["count"] == 0
        assert [row["reason"] for row in listed.json()["results"]] == ["too_late_to_book"]
        assert held.status_code == 409
        assert held.json()["error"]["code"] == "too_late_to_book"
