"""Buffers through the API (issue 14, audit): POST /api/v1/slots allowed at the edge of a
neighbour's buffer and refused just past it, on both sides; POST /api/v1/slots/generate keeps
the buffers between its own slots (overlapping weekly windows, a spring clock change) and
skips what a manual slot would be refused for."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from slots.models import Slot
from slots.rules import rules_of

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)  # type: ignore[misc]


@pytest.fixture
def buffered(clinic_service):
    """Berlin, 30-minute slots, 10 minutes before and 15 after each one."""
    clinic_service.buffer_before_minutes = 10
    clinic_service.buffer_after_minutes = 15
    clinic_service.save()
    return clinic_service


def create(client, service, start: dt.datetime, minutes: int = 30):
    return client.post(
        "/api/v1/slots",
        {
            "clinic_id": service.clinic_id,
            "service_id": service.id,
            "start_at": start.isoformat(),
            "end_at": (start + dt.timedelta(minutes=minutes)).isoformat(),
        },
        format="json",
    )


def generate(client, service, day: str, *windows: tuple[str, str], weekday: int):
    return client.post(
        "/api/v1/slots/generate",
        {
            "clinic_id": service.clinic_id,
            "service_id": service.id,
            "date_from": day,
            "date_to": day,
            "weekly": [{"weekday": weekday, "start": s, "end": e} for s, e in windows],
        },
        format="json",
    )


def starts() -> list[dt.datetime]:
    return list(Slot.objects.order_by("start_at").values_list("start_at", flat=True))


def assert_buffers_kept(service) -> None:
    """No two slots of the service closer than after + before minutes (in instants)."""
    rules = rules_of(service)
    gap = dt.timedelta(minutes=rules.buffer_after_minutes + rules.buffer_before_minutes)
    slots = list(Slot.objects.filter(service=service).order_by("start_at"))
    for first, second in itertools.pairwise(slots):
        assert second.start_at - first.end_at >= gap, (first.start_at, second.start_at)


def test_a_slot_after_a_neighbour_is_allowed_at_the_buffers_edge_and_refused_past_it(
    staff_client, buffered
):
    neighbour = utc(2027, 1, 5, 9, 0)  # ends 09:30 UTC; 15 after + 10 before: 09:55 is free
    assert create(staff_client, buffered, neighbour).status_code == 201

    refused = create(staff_client, buffered, utc(2027, 1, 5, 9, 54))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["start_at"] == [
        "Too close to the slot starting 2027-01-05T09:00:00+00:00: keep 10 min before and "
        "15 min after each slot free."
    ]
    assert create(staff_client, buffered, utc(2027, 1, 5, 9, 55)).status_code == 201
    assert_buffers_kept(buffered)


def test_a_slot_before_a_neighbour_is_allowed_at_the_buffers_edge_and_refused_past_it(
    staff_client, buffered
):
    neighbour = utc(2027, 1, 5, 10, 0)  # starts 10:00: a slot before it ends by 09:35
    assert create(staff_client, buffered, neighbour).status_code == 201

    refused = create(staff_client, buffered, utc(2027, 1, 5, 9, 6))  # ends 09:36
    assert refused.status_code == 400
    assert "2027-01-05T10:00:00+00:00" in refused.json()["error"]["details"]["start_at"][0]
    assert create(staff_client, buffered, utc(2027, 1, 5, 9, 5)).status_code == 201  # ends 09:35
    assert_buffers_kept(buffered)


def test_a_before_buffer_alone_also_keeps_slots_apart(staff_client, clinic_service):
    clinic_service.buffer_before_minutes = 20
    clinic_service.save()
    assert create(staff_client, clinic_service, utc(2027, 1, 5, 9, 0)).status_code == 201
    # The neighbour ends 09:30 UTC; the next slot keeps the 20 minutes before its start free:
    # 09:49 is refused, 09:50 allowed.
    assert create(staff_client, clinic_service, utc(2027, 1, 5, 9, 49)).status_code == 400
    assert create(staff_client, clinic_service, utc(2027, 1, 5, 9, 50)).status_code == 201


def test_generated_slots_of_overlapping_windows_keep_their_buffers(staff_client, clinic_service):
    # Monday 09:00-10:00 and 09:30-11:00 (Berlin, winter: UTC+1), 30-minute slots, 15 after.
    clinic_service.buffer_after_minutes = 15
    clinic_service.save()

    response = generate(
        staff_client,
        clinic_service,
        "2027-03-01",
        ("09:00", "10:00"),
        ("09:30", "11:00"),
        weekday=1,
    )

    assert response.status_code == 201, response.json()
    assert_buffers_kept(clinic_service)
    # 08:00Z (first window); 08:30Z of the second window is 15 min too close, skipped;
    # 09:15Z of the second window is 45 min on, kept.
    assert starts() == [utc(2027, 3, 1, 8, 0), utc(2027, 3, 1, 9, 15)]
    assert response.json() == {"created": 2}
    # A manual slot where generation skipped one is refused alike.
    assert create(staff_client, clinic_service, utc(2027, 3, 1, 8, 30)).status_code == 400


def test_generated_slots_keep_their_buffers_across_the_spring_clock_change(
    staff_client, clinic_service
):
    # Berlin, Sunday 2027-03-28: the clocks go from 02:00 CET to 03:00 CEST.
    clinic_service.duration_minutes = 60
    clinic_service.buffer_after_minutes = 30
    clinic_service.save()

    response = generate(staff_client, clinic_service, "2027-03-28", ("01:30", "05:00"), weekday=7)

    assert response.status_code == 201, response.json()
    assert_buffers_kept(clinic_service)
    # 01:30 CET (00:30Z) to 03:30 CEST (01:30Z), 30 min free, then 04:00 CEST (02:00Z) to
    # 05:00 CEST (03:00Z), the window's end.
    assert starts() == [utc(2027, 3, 28, 0, 30), utc(2027, 3, 28, 2, 0)]
    assert all(slot.end_at <= utc(2027, 3, 28, 3, 0) for slot in Slot.objects.all())
    local = [s.astimezone(BERLIN).strftime("%H:%M %Z") for s in starts()]
    assert local == ["01:30 CET", "04:00 CEST"]


def test_generation_skips_a_start_too_close_to_an_existing_slot(staff_client, buffered):
    assert create(staff_client, buffered, utc(2027, 3, 1, 8, 40)).status_code == 201  # 09:40 CET
    # 09:00-10:30 CET: 09:00 (ends 09:30 + 15 + 10 = 09:55 > 09:40) clashes; 09:55 clashes
    # with the existing slot (ends 09:10Z = 10:10 CET) too; nothing else fits.
    response = generate(staff_client, buffered, "2027-03-01", ("09:00", "10:30"), weekday=1)
    assert response.status_code == 201, response.json()
    assert response.json() == {"created": 0}
    assert_buffers_kept(buffered)
