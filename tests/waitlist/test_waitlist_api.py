"""POST/GET/DELETE /waitlist and the offers: real holds made in the transaction that freed the
unit, FIFO, expiry passing to the next in line, one live offer per owner."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from petpro_booking.events.models import Event
from reservations.models import Reservation, ReservationStatus
from reservations.services import reservation_expire_due
from slots.models import Slot
from waitlist.models import EntryStatus, WaitlistEntry
from waitlist.services import waitlist_sweep

from ..factories import ClinicServiceFactory, SlotFactory
from .conftest import hold, join

pytestmark = pytest.mark.django_db(transaction=True)


def entry_events(entry_id) -> list[str]:
    return list(
        Event.objects.filter(aggregate_id=str(entry_id))
        .order_by("aggregate_version")
        .values_list("event_type", flat=True)
    )


def test_join_a_full_slot_in_fifo_order(owners, slot):
    assert hold(owners[1], slot, "pet-1").status_code == 201
    first = join(owners[2], slot, "pet-2")
    second = join(owners[3], slot, "pet-3")
    assert first.status_code == 201, first.json()
    assert first.headers["Location"].endswith(f"/api/v1/waitlist/{first.json()['id']}")
    assert first.json()["status"] == "waiting"
    assert (first.json()["position"], second.json()["position"]) == (1, 2)
    listed = owners[2].get("/api/v1/waitlist").json()
    assert [e["id"] for e in listed["results"]] == [first.json()["id"]]
    assert owners[3].get(f"/api/v1/waitlist/{first.json()['id']}").status_code == 404
    assert entry_events(first.json()["id"]) == ["WaitlistJoined"]


def test_joining_is_refused_with_reasons(owners, slot, clinic):
    room = join(owners[2], slot, "pet-2")
    assert room.status_code == 409
    assert room.json()["error"]["code"] == "slot_available"
    assert hold(owners[1], slot, "pet-1").status_code == 201
    mine = join(owners[1], slot, "pet-1")
    assert mine.json()["error"]["code"] == "already_booked"
    assert join(owners[2], slot, "pet-2").status_code == 201
    twice = join(owners[2], slot, "pet-2")
    assert twice.json()["error"]["code"] == "already_waiting"
    assert join(owners[2], slot, "pet-3").json()["error"]["code"] == "invalid_pet"
    cats = SlotFactory(service=ClinicServiceFactory(clinic=clinic, species=["cat"]))
    assert join(owners[2], cats, "pet-2").json()["error"]["code"] == "invalid_pet"
    soon = SlotFactory(
        service=ClinicServiceFactory(clinic=clinic, min_notice_minutes=600),
        start_at=timezone.now() + dt.timedelta(hours=1),
    )
    assert join(owners[2], soon, "pet-2").json()["error"]["code"] == "too_late_to_book"
    bad = owners[2].post("/api/v1/waitlist", {"slot_id": "nope", "pet_id": ""}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"


def test_a_released_hold_is_offered_to_the_first_in_line_at_once(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    first = join(owners[2], slot, "pet-2").json()
    second = join(owners[3], slot, "pet-3").json()
    assert owners[1].delete(f"/api/v1/reservations/{held['id']}").status_code == 204
    # In the same transaction: the unit is held for owner-2, nobody else can take it.
    offered = owners[2].get(f"/api/v1/waitlist/{first['id']}").json()
    assert offered["status"] == "offered"
    offer = Reservation.objects.get(id=offered["reservation_id"])
    assert (offer.user_id, offer.pet_id, offer.status) == ("owner-2", "pet-2", "held")
    assert abs((offer.expires_at - timezone.now()).total_seconds() - 900) < 30
    assert hold(owners[4], slot, "pet-4").json()["error"]["code"] == "slot_unavailable"
    assert owners[3].get(f"/api/v1/waitlist/{second['id']}").json()["position"] == 1
    # Confirming the offer is the normal confirm.
    booked = owners[2].post(f"/api/v1/reservations/{offer.id}/confirm")
    assert booked.status_code == 201, booked.json()
    assert owners[2].get(f"/api/v1/waitlist/{first['id']}").json()["status"] == "booked"
    assert entry_events(first["id"]) == ["WaitlistJoined", "WaitlistOffered"]
    slot.refresh_from_db()
    assert (slot.booked_count, slot.held_count) == (1, 0)


def test_an_expired_offer_passes_to_the_next_in_line(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    first = join(owners[2], slot, "pet-2").json()
    second = join(owners[3], slot, "pet-3").json()
    owners[1].delete(f"/api/v1/reservations/{held['id']}")
    Reservation.objects.filter(user_id="owner-2").update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert reservation_expire_due() == 1
    assert WaitlistEntry.objects.get(id=first["id"]).status == EntryStatus.OFFER_EXPIRED
    assert entry_events(first["id"])[-1] == "WaitlistOfferExpired"
    now_offered = owners[3].get(f"/api/v1/waitlist/{second['id']}").json()
    assert now_offered["status"] == "offered"
    assert Reservation.objects.get(id=now_offered["reservation_id"]).status == "held"


def test_a_lazy_expiry_by_an_outsider_still_offers_to_the_line(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    first = join(owners[2], slot, "pet-2").json()
    Reservation.objects.filter(id=held["id"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    # The outsider's hold expires the stale hold lazily; the freed unit goes to the line.
    assert hold(owners[4], slot, "pet-4").json()["error"]["code"] == "slot_unavailable"
    assert WaitlistEntry.objects.get(id=first["id"]).status == EntryStatus.OFFERED


def test_cancel_and_raised_capacity_offer_units(owners, slot, staff_client):
    held = hold(owners[1], slot, "pet-1").json()
    booking = owners[1].post(f"/api/v1/reservations/{held['id']}/confirm").json()
    entries = [join(owners[i], slot, f"pet-{i}").json() for i in (2, 3, 4)]
    cancelled = owners[1].post(f"/api/v1/bookings/{booking['id']}/cancel", {}, format="json")
    assert cancelled.status_code == 200, cancelled.json()
    states = [WaitlistEntry.objects.get(id=e["id"]).status for e in entries]
    assert states == ["offered", "waiting", "waiting"]
    raised = staff_client.patch(f"/api/v1/slots/{slot.id}", {"capacity": 3}, format="json")
    assert raised.status_code == 200, raised.json()
    states = [WaitlistEntry.objects.get(id=e["id"]).status for e in entries]
    assert states == ["offered", "offered", "offered"]
    slot.refresh_from_db()
    assert (slot.held_count, slot.booked_count, slot.capacity) == (3, 0, 3)


def test_one_live_offer_per_owner(owners, clinic_service):
    first_slot, second_slot = (
        SlotFactory(service=clinic_service),
        SlotFactory(service=clinic_service),
    )
    holds = [hold(owners[1], first_slot, "pet-1").json(), hold(owners[1], second_slot, "pet-1")]
    holds[1] = holds[1].json()
    a_first = join(owners[2], first_slot, "pet-2").json()
    a_second = join(owners[2], second_slot, "pet-2").json()
    b_second = join(owners[3], second_slot, "pet-3").json()
    for held in holds:
        owners[1].delete(f"/api/v1/reservations/{held['id']}")
    assert WaitlistEntry.objects.get(id=a_first["id"]).status == EntryStatus.OFFERED
    # owner-2 already holds an offer: passed over (keeps the place), owner-3 gets this one.
    assert WaitlistEntry.objects.get(id=a_second["id"]).status == EntryStatus.WAITING
    assert WaitlistEntry.objects.get(id=b_second["id"]).status == EntryStatus.OFFERED


def test_leaving_with_an_offer_gives_it_to_the_next(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    first = join(owners[2], slot, "pet-2").json()
    second = join(owners[3], slot, "pet-3").json()
    owners[1].delete(f"/api/v1/reservations/{held['id']}")
    assert owners[2].delete(f"/api/v1/waitlist/{first['id']}").status_code == 204
    assert owners[2].get(f"/api/v1/waitlist/{first['id']}").json()["status"] == "left"
    assert owners[3].get(f"/api/v1/waitlist/{second['id']}").json()["status"] == "offered"
    assert entry_events(first["id"])[-1] == "WaitlistLeft"
    assert owners[2].delete(f"/api/v1/waitlist/{first['id']}").status_code == 204  # no-op
    assert owners[3].delete(f"/api/v1/waitlist/{first['id']}").status_code == 404


def test_releasing_the_offered_hold_declines_it_and_offers_the_next(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    first = join(owners[2], slot, "pet-2").json()
    second = join(owners[3], slot, "pet-3").json()
    assert owners[1].delete(f"/api/v1/reservations/{held['id']}").status_code == 204
    offer_id = owners[2].get(f"/api/v1/waitlist/{first['id']}").json()["reservation_id"]
    assert Reservation.objects.get(id=offer_id).status == ReservationStatus.HELD

    # The owner declines the offer by releasing its hold, not by leaving the line.
    assert owners[2].delete(f"/api/v1/reservations/{offer_id}").status_code == 204

    assert Reservation.objects.get(id=offer_id).status == ReservationStatus.RELEASED
    assert owners[2].get(f"/api/v1/waitlist/{first['id']}").json()["status"] == "left"
    entry = WaitlistEntry.objects.get(id=first["id"])
    assert entry.status == EntryStatus.LEFT
    assert entry.ended_at is not None
    assert entry_events(first["id"]) == ["WaitlistJoined", "WaitlistOffered", "WaitlistLeft"]
    left = Event.objects.get(aggregate_id=first["id"], event_type="WaitlistLeft")
    assert left.payload["reason"] == "declined"
    assert left.payload["status"] == EntryStatus.LEFT
    # The unit went on to the next in line, in the same transaction.
    now_offered = owners[3].get(f"/api/v1/waitlist/{second['id']}").json()
    assert now_offered["status"] == "offered"
    offer = Reservation.objects.get(id=now_offered["reservation_id"])
    assert (offer.user_id, offer.pet_id, offer.status) == ("owner-3", "pet-3", "held")
    assert hold(owners[4], slot, "pet-4").json()["error"]["code"] == "slot_unavailable"
    slot.refresh_from_db()
    assert (slot.booked_count, slot.held_count) == (0, 1)
    # The entry keeps why it ended, as leaving ("left"), removal (the staff's words) and the
    # sweep ("slot_started") record it.
    assert entry.end_reason == "declined"


def test_entries_end_when_the_slot_starts(owners, slot):
    hold(owners[1], slot, "pet-1")
    entry = join(owners[2], slot, "pet-2").json()
    Slot.objects.filter(id=slot.id).update(start_at=timezone.now() - dt.timedelta(minutes=1))
    assert waitlist_sweep()["ended"] == 1
    assert WaitlistEntry.objects.get(id=entry["id"]).status == EntryStatus.ENDED
    assert waitlist_sweep()["ended"] == 0
    assert Reservation.objects.filter(status=ReservationStatus.HELD).count() == 1


def test_a_reschedule_away_offers_the_old_unit(owners, slot):
    held = hold(owners[1], slot, "pet-1").json()
    booking = owners[1].post(f"/api/v1/reservations/{held['id']}/confirm").json()
    entry = join(owners[2], slot, "pet-2").json()
    elsewhere = SlotFactory(service=slot.service)
    moved = owners[1].post(
        f"/api/v1/bookings/{booking['id']}/reschedule",
        {"slot_id": str(elsewhere.id)},
        format="json",
    )
    assert moved.status_code == 200, moved.json()
    assert owners[2].get(f"/api/v1/waitlist/{entry['id']}").json()["status"] == "offered"
    slot.refresh_from_db()
    assert (slot.booked_count, slot.held_count) == (0, 1)


def test_joining_counts_against_the_live_hold_limit(owners, clinic_service, settings):
    settings.FAIR_USE_MAX_LIVE_HOLDS = 2
    full = [SlotFactory(service=clinic_service) for _ in range(2)]
    for index, slot in enumerate(full, start=2):
        assert hold(owners[index], slot, f"pet-{index}").status_code == 201
    mine = SlotFactory(service=clinic_service)
    assert hold(owners[1], mine, "pet-1").status_code == 201
    assert join(owners[1], full[0], "pet-1").status_code == 201
    refused = join(owners[1], full[1], "pet-1")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "limit_exceeded"
    assert refused.json()["error"]["details"]["limit"] == "live_holds_per_owner"
