"""Closing visits: complete/no-show only once the slot started; a no-show score per owner for
support; staff cancel every visit of a slot (a vet falls ill) through the normal cancel."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User

from bookings.errors import InvalidTransition
from bookings.models import Booking, BookingHistory
from bookings.services import booking_cancel_slot_visits, booking_complete, booking_mark_no_show
from petpro_booking.core.errors import PermissionDeniedError, ValidationFailed
from petpro_booking.events.models import Event
from slots.models import Slot

from .conftest import (
    OTHER_OWNER,
    OWNER,
    SUPPORT,
    book_on,
    counters,
    hold_on,
    let_slot_start,
    staff_of,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_complete_and_no_show_are_refused_before_the_slot_starts(
    booking, slot, staff_client, support_client
):
    for path in ("complete", "no-show"):
        response = staff_client.post(f"/api/v1/bookings/{booking.id}/{path}")
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "invalid_transition"
        assert error["details"]["reason"] == "slot_not_started"
    booking.refresh_from_db()
    assert booking.status == "confirmed"

    let_slot_start(slot, ago=dt.timedelta(seconds=1))  # just past the edge
    response = support_client.post(f"/api/v1/bookings/{booking.id}/complete")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"


def test_no_show_score_shown_to_support_only(client, owner_pet, other_pet, slot, second_slot):
    first = book_on(slot)
    second = book_on(second_slot)
    book_on(
        Slot.objects.create(
            clinic=slot.clinic,
            service=slot.service,
            start_at=second_slot.start_at + dt.timedelta(days=2),
            end_at=second_slot.end_at + dt.timedelta(days=2),
        ),
        owner=OTHER_OWNER,
        pet_id="pet-2",
    )
    for booking in (first, second):
        let_slot_start(booking.slot)
        booking_mark_no_show(actor=SUPPORT, booking_id=booking.id, reason="did not come")

    support = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    support.groups.add(Group.objects.get_or_create(name="support")[0])
    client.force_login(support)
    page = client.get("/admin/bookings/booking/")
    assert "owner_no_show_score" in page.context["cl"].list_display
    scores = {b.user_id: b.owner_no_show_count for b in page.context["cl"].result_list}
    assert scores == {"owner-1": 2, "owner-2": 0}


def test_cancel_the_visits_of_a_slot(owner_pet, other_pet, clinic_service):
    from ..factories import SlotFactory

    slot = SlotFactory(service=clinic_service, capacity=3)
    visits = [book_on(slot), book_on(slot, owner=OTHER_OWNER, pet_id="pet-2")]
    gone = book_on(slot)
    staff = staff_of(slot.clinic_id)
    from bookings.services import booking_cancel

    booking_cancel(actor=staff, booking_id=gone.id, reason="owner called")

    with pytest.raises(ValidationFailed):
        booking_cancel_slot_visits(actor=staff, slot_id=slot.id, reason="  ")
    with pytest.raises(PermissionDeniedError):
        booking_cancel_slot_visits(
            actor=staff_of("clinic-elsewhere"), slot_id=slot.id, reason="vet ill"
        )

    outcome = booking_cancel_slot_visits(actor=staff, slot_id=slot.id, reason="vet is ill")
    assert sorted(b.id for b in outcome.cancelled) == sorted(v.id for v in visits)
    assert outcome.failed == []
    slot.refresh_from_db()
    assert slot.status == "closed"
    assert counters(slot) == (0, 0)
    for visit in visits:
        assert Booking.objects.get(id=visit.id).status == "cancelled"
        history = BookingHistory.objects.filter(booking_id=visit.id).last()
        assert (history.to_status, history.reason) == ("cancelled", "vet is ill")
        event = Event.objects.filter(aggregate_id=str(visit.id)).order_by("-id").first()
        assert event.event_type == "BookingCancelled"
        assert event.payload["reason"] == "vet is ill"

    again = booking_cancel_slot_visits(actor=staff, slot_id=slot.id, reason="vet is ill")
    assert again.cancelled == []
    assert again.failed == []


def test_cancel_slot_visits_admin_page(client, owner_pet, other_pet, slot):
    Slot.objects.filter(pk=slot.pk).update(capacity=2)
    visit = book_on(slot)
    held = hold_on(slot, owner=OTHER_OWNER, pet_id="pet-2")
    support = User.objects.create_user("helpdesk", password="pw", is_staff=True)
    support.groups.add(Group.objects.get_or_create(name="support")[0])
    client.force_login(support)

    chosen = client.post(
        "/admin/slots/slot/",
        {"action": "cancel_slot_visits", "_selected_action": [str(slot.pk)]},
    )
    url = f"/admin/bookings/booking/cancel-slot-visits/{slot.pk}/"
    assert chosen.status_code == 302
    assert chosen["Location"] == url
    form = client.get(url)
    assert visit.reference.encode() in form.content
    assert b'name="reason"' in form.content

    done = client.post(url, {"reason": "vet is ill"}, follow=True)
    assert done.status_code == 200
    said = [str(m) for m in done.context["messages"]]
    assert any("1 visits cancelled" in m and "1 holds released" in m for m in said), said
    visit.refresh_from_db()
    held.refresh_from_db()
    assert (visit.status, held.status) == ("cancelled", "released")


def test_invalid_transition_is_still_the_code_before_start(booking):
    with pytest.raises(InvalidTransition):
        booking_complete(actor=SUPPORT, booking_id=booking.id)


# --- holds on a slot whose visits are cancelled (audit: a live hold still confirmed) ---------


def _confirm(client, reservation_id):
    return client.post(f"/api/v1/reservations/{reservation_id}/confirm")


def test_cancelling_the_visits_releases_live_holds_which_then_book_nothing(
    owner_pet, other_pet, clinic_service, other_owner_client
):
    from ..factories import SlotFactory

    slot = SlotFactory(service=clinic_service, capacity=2)
    visit = book_on(slot)
    held = hold_on(slot, owner=OTHER_OWNER, pet_id="pet-2")
    staff = staff_of(slot.clinic_id)

    outcome = booking_cancel_slot_visits(actor=staff, slot_id=slot.id, reason="vet ill")

    assert [b.id for b in outcome.cancelled] == [visit.id]
    assert [r.id for r in outcome.released] == [held.id]
    assert counters(slot) == (0, 0)
    held.refresh_from_db()
    assert held.status == "released"
    event = Event.objects.filter(aggregate_id=str(held.id)).order_by("-id").first()
    assert event.event_type == "ReservationReleased"
    assert event.payload["reason"] == "vet ill"
    assert event.metadata["actor"]["type"] == "staff"

    refused = _confirm(other_owner_client, held.id)
    assert refused.status_code == 409, refused.json()
    assert refused.json()["error"]["code"] == "reservation_not_held"
    assert not Booking.objects.filter(reservation_id=held.id).exists()
    assert counters(slot) == (0, 0)
    # Running it again: nothing left to release or cancel.
    again = booking_cancel_slot_visits(actor=staff, slot_id=slot.id, reason="vet ill")
    assert (again.released, again.cancelled, again.failed) == ([], [], [])


def test_a_hold_on_a_closed_slot_cannot_be_confirmed(owner_pet, slot, owner_client):
    from slots.services import slot_close

    held = hold_on(slot)
    slot_close(actor=staff_of(slot.clinic_id), slot_id=slot.id)

    refused = _confirm(owner_client, held.id)

    assert refused.status_code == 409, refused.json()
    error = refused.json()["error"]
    assert error["code"] == "slot_unavailable"
    assert error["details"]["reason"] == "slot_closed"
    held.refresh_from_db()
    assert held.status == "held"  # nothing of the confirm was written
    assert not Booking.objects.filter(reservation_id=held.id).exists()
    assert counters(slot) == (0, 1)


def test_a_pet_group_hold_on_a_closed_slot_cannot_be_confirmed(owner_pet, clinic_service):
    from reservations.services import reservation_create_group
    from slots.services import slot_close

    from ..conftest import api_client_for
    from ..factories import LocalPetFactory, SlotFactory

    LocalPetFactory(owner__id="owner-1", id="pet-1b", species="dog")
    slot = SlotFactory(service=clinic_service, capacity=2)
    group = reservation_create_group(actor=OWNER, slot_id=slot.id, pet_ids=["pet-1", "pet-1b"])
    slot_close(actor=staff_of(slot.clinic_id), slot_id=slot.id)

    refused = _confirm(api_client_for(sub="owner-1", roles=["pet_owner"]), group[0].id)

    assert refused.status_code == 409, refused.json()
    assert refused.json()["error"]["details"]["reason"] == "slot_closed"
    assert not Booking.objects.filter(slot_id=slot.id).exists()
    assert counters(slot) == (0, 2)


def test_cancelling_the_visits_withdraws_waiting_list_offers_and_offers_nothing_more(
    owner_pet, other_pet, clinic_service
):
    from reservations.models import Reservation
    from waitlist.models import WaitlistEntry

    from ..conftest import api_client_for
    from ..factories import LocalPetFactory, SlotFactory

    LocalPetFactory(owner__id="owner-3", id="pet-3", species="dog")
    clients = {i: api_client_for(sub=f"owner-{i}", roles=["pet_owner"]) for i in (1, 2, 3)}
    slot = SlotFactory(service=clinic_service, capacity=1)
    held = hold_on(slot)
    for index in (2, 3):
        joined = clients[index].post(
            "/api/v1/waitlist", {"slot_id": str(slot.id), "pet_id": f"pet-{index}"}, format="json"
        )
        assert joined.status_code == 201, joined.json()
    assert clients[1].delete(f"/api/v1/reservations/{held.id}").status_code == 204
    offered = WaitlistEntry.objects.get(user_id="owner-2")
    assert offered.status == "offered"

    outcome = booking_cancel_slot_visits(
        actor=staff_of(slot.clinic_id), slot_id=slot.id, reason="vet ill"
    )

    assert [r.id for r in outcome.released] == [offered.reservation_id]
    assert _confirm(clients[2], offered.reservation_id).status_code == 409
    joined_at = offered.joined_at
    offered.refresh_from_db()
    # The offer was withdrawn, not declined: owner-2 is back in line, with the same place.
    assert (offered.status, offered.reservation_id, offered.joined_at) == (
        "waiting",
        None,
        joined_at,
    )
    withdrawn = Event.objects.filter(aggregate_id=str(offered.id)).order_by("-id").first()
    assert (withdrawn.event_type, withdrawn.payload["reason"]) == (
        "WaitlistOfferExpired",
        "slot_closed",
    )
    waiting = WaitlistEntry.objects.get(user_id="owner-3")
    assert waiting.status == "waiting"  # the slot is closed: no offer is made to the next
    assert not Reservation.objects.filter(slot_id=slot.id, status="held").exists()
    assert counters(slot) == (0, 0)

    # Staff reopen the slot: the first in line, owner-2, is offered the unit again.
    from slots.services import slot_update

    slot_update(actor=staff_of(slot.clinic_id), slot_id=slot.id, status="open")
    offered.refresh_from_db()
    waiting.refresh_from_db()
    assert (offered.status, waiting.status) == ("offered", "waiting")
    assert _confirm(clients[2], offered.reservation_id).status_code == 201
