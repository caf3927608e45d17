"""The booking endpoints per role: confirm, read, cancel, reschedule, complete, no-show,
history; status codes, error codes, counters, history rows and events."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from bookings.models import Booking, BookingHistory
from petpro_booking.events.models import Event
from reservations.models import Reservation
from slots.models import SlotStatus

from ..conftest import api_client_for
from ..factories import ClinicServiceFactory, SlotFactory
from .conftest import book_on, counters, hold_on, let_slot_start

# The services open their own SERIALIZABLE transactions, so tests cannot wrap them in one.
pytestmark = pytest.mark.django_db(transaction=True)

BOOKING_FIELDS = {
    "id",
    "reference",
    "slot_id",
    "reservation_id",
    "clinic_id",
    "service_id",
    "user_id",
    "pet_id",
    "status",
    "amount",
    "currency",
    "start_at",
    "end_at",
    "timezone",
    "start_local",
    "end_local",
    "clinic_name",
    "service_name",
    "payment_status",
    "version",
    "created_at",
    "updated_at",
}
REFERENCE = re.compile(r"^PP-[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$")


def event_types(aggregate_id) -> list[str]:
    return list(
        Event.objects.filter(aggregate_id=str(aggregate_id))
        .order_by("aggregate_version")
        .values_list("event_type", flat=True)
    )


# --- confirm -------------------------------------------------------------------------------


def test_owner_confirms_hold_into_confirmed_booking(owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    response = owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == BOOKING_FIELDS
    assert REFERENCE.match(body["reference"])
    assert body["status"] == "confirmed"
    assert body["amount"] == "45.00"
    assert body["currency"] == "EUR"
    assert body["slot_id"] == str(slot.id)
    assert body["reservation_id"] == str(reservation.id)
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert counters(slot) == (1, 0)
    reservation.refresh_from_db()
    assert reservation.status == "confirmed"
    assert event_types(reservation.id)[-1] == "ReservationConfirmed"
    assert event_types(body["id"]) == ["BookingCreated", "BookingConfirmed"]
    created = Event.objects.get(aggregate_id=body["id"], event_type="BookingCreated")
    assert created.payload["reference"] == body["reference"]
    assert created.payload["pet_name"] == owner_pet.name
    assert created.payload["clinic_name"] == slot.clinic.name
    history = BookingHistory.objects.get(booking_id=body["id"])
    assert (history.from_status, history.to_status, history.actor_type, history.actor_id) == (
        "",
        "confirmed",
        "user",
        "owner-1",
    )


def test_paid_service_starts_pending_payment(owner_client, owner_pet, clinic):
    service = ClinicServiceFactory(clinic=clinic, requires_payment=True, price="80.00")
    paid_slot = SlotFactory(clinic=clinic, service=service)
    reservation = hold_on(paid_slot)
    response = owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 201
    assert response.json()["status"] == "pending_payment"
    assert response.json()["amount"] == "80.00"
    assert event_types(response.json()["id"]) == ["BookingCreated"]


def test_confirm_twice_is_invalid_transition(owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    assert owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm").status_code == 201
    response = owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert Booking.objects.count() == 1
    assert counters(slot) == (1, 0)


def test_confirm_past_expiry_is_reservation_expired(owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    Reservation.objects.filter(id=reservation.id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    response = owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reservation_expired"
    assert not Booking.objects.exists()
    assert counters(slot) == (0, 1)  # the unit goes back when the hold is expired


def test_confirm_released_hold_is_not_held(owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    assert owner_client.delete(f"/api/v1/reservations/{reservation.id}").status_code == 204
    response = owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reservation_not_held"


def test_confirm_someone_elses_hold_is_404(other_owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    response = other_owner_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_staff_cannot_confirm(staff_client, owner_pet, slot):
    reservation = hold_on(slot)
    response = staff_client.post(f"/api/v1/reservations/{reservation.id}/confirm")
    assert response.status_code == 403


def test_confirm_is_idempotent_with_key(owner_client, owner_pet, slot):
    reservation = hold_on(slot)
    url = f"/api/v1/reservations/{reservation.id}/confirm"
    first = owner_client.post(url, HTTP_IDEMPOTENCY_KEY="confirm-1")
    again = owner_client.post(url, HTTP_IDEMPOTENCY_KEY="confirm-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Booking.objects.count() == 1


# --- reading -------------------------------------------------------------------------------


def test_visibility_per_role(
    booking, owner_client, other_owner_client, staff_client, other_staff_client, support_client
):
    url = f"/api/v1/bookings/{booking.id}"
    for client in (owner_client, staff_client, support_client):
        response = client.get(url)
        assert response.status_code == 200
        assert response.json()["reference"] == booking.reference
        assert response.headers["ETag"] == f'"{booking.version}"'
        listed = client.get("/api/v1/bookings").json()
        assert [row["id"] for row in listed["results"]] == [str(booking.id)]
    for client in (other_owner_client, other_staff_client):
        assert client.get(url).status_code == 404
        assert client.get(f"{url}/history").status_code == 404
        assert client.post(f"{url}/cancel", {"reason": "x"}, format="json").status_code == 404
        assert client.get("/api/v1/bookings").json()["count"] == 0


def test_list_filters_and_paginates(booking, support_client, second_slot):
    other = book_on(second_slot)
    support_client.post(f"/api/v1/bookings/{other.id}/cancel", {"reason": "x"}, format="json")
    body = support_client.get("/api/v1/bookings", {"status": "cancelled"}).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert [row["id"] for row in body["results"]] == [str(other.id)]
    assert support_client.get("/api/v1/bookings", {"clinic_id": "nowhere"}).json()["count"] == 0
    response = support_client.get("/api/v1/bookings", {"status": "nonsense"})
    assert response.status_code == 400


def test_not_a_uuid_is_404(owner_client):
    assert owner_client.get("/api/v1/bookings/not-a-uuid").status_code == 404


# --- cancel --------------------------------------------------------------------------------


def test_owner_cancels_within_window(booking, owner_client, slot):
    response = owner_client.post(
        f"/api/v1/bookings/{booking.id}/cancel", {"reason": "pet is fine"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["version"] == booking.version + 1
    assert counters(slot) == (0, 0)
    assert event_types(booking.id)[-1] == "BookingCancelled"
    cancelled = Event.objects.get(aggregate_id=str(booking.id), event_type="BookingCancelled")
    assert cancelled.payload["from_status"] == "confirmed"
    assert cancelled.payload["reason"] == "pet is fine"
    assert cancelled.metadata["actor"] == {"type": "user", "id": "owner-1"}
    last = BookingHistory.objects.filter(booking=booking).last()
    assert (last.from_status, last.to_status, last.reason) == (
        "confirmed",
        "cancelled",
        "pet is fine",
    )
    # The freed unit can be held again at once.
    assert (
        owner_client.post(
            "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
        ).status_code
        == 201
    )


def test_cancel_twice_is_invalid_transition(booking, owner_client, slot):
    url = f"/api/v1/bookings/{booking.id}/cancel"
    assert owner_client.post(url, {}, format="json").status_code == 200
    response = owner_client.post(url, {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert counters(slot) == (0, 0)
    assert event_types(booking.id).count("BookingCancelled") == 1


def test_owner_outside_window_is_refused(owner_client, owner_pet, clinic_service):
    soon = SlotFactory(
        clinic=clinic_service.clinic,
        service=clinic_service,
        start_at=timezone.now().replace(microsecond=0) + dt.timedelta(hours=3),
    )
    booking = book_on(soon)
    response = owner_client.post(f"/api/v1/bookings/{booking.id}/cancel", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "outside_cancellation_window"
    assert response.json()["error"]["details"]["cancellation_window_hours"] == 24
    assert counters(soon) == (1, 0)


@pytest.mark.parametrize("hours", [99_999_999, 2_147_483_647])
def test_a_window_longer_than_the_calendar_is_a_refusal_not_a_500(
    booking, owner_client, clinic_service, slot, second_slot, hours
):
    """The admin and the Clinic Service may store any whole number; a window past a century
    reached back before the year 1 (OverflowError, a 500). Longer than a century is "never"."""
    clinic_service.cancellation_window_hours = hours
    clinic_service.save(update_fields=["cancellation_window_hours"])
    for action in ("cancel", "reschedule"):
        response = owner_client.post(
            f"/api/v1/bookings/{booking.id}/{action}",
            {"slot_id": str(second_slot.id)},
            format="json",
        )
        assert response.status_code == 409, action
        error = response.json()["error"]
        assert error["code"] == "outside_cancellation_window"
        assert error["details"]["cancellation_window_hours"] == 36_500 * 24
    assert Booking.objects.get(id=booking.id).status == booking.status
    assert counters(slot) == (1, 0)


def test_staff_may_cancel_inside_window_with_reason(staff_client, owner_pet, clinic_service):
    soon = SlotFactory(
        clinic=clinic_service.clinic,
        service=clinic_service,
        start_at=timezone.now().replace(microsecond=0) + dt.timedelta(hours=3),
    )
    booking = book_on(soon)
    url = f"/api/v1/bookings/{booking.id}/cancel"
    missing = staff_client.post(url, {"reason": "  "}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "validation_error"
    assert "reason" in missing.json()["error"]["details"]
    response = staff_client.post(url, {"reason": "vet is ill"}, format="json")
    assert response.status_code == 200
    last = BookingHistory.objects.filter(booking=booking).last()
    assert (last.actor_type, last.actor_id, last.reason) == ("staff", "staff-1", "vet is ill")
    assert counters(soon) == (0, 0)


def test_support_needs_a_reason_too(booking, support_client):
    url = f"/api/v1/bookings/{booking.id}/cancel"
    assert support_client.post(url, {}, format="json").status_code == 400
    response = support_client.post(url, {"reason": "owner called"}, format="json")
    assert response.status_code == 200
    assert BookingHistory.objects.filter(booking=booking).last().actor_type == "support"


def test_stale_if_match_is_412(booking, owner_client):
    url = f"/api/v1/bookings/{booking.id}/cancel"
    response = owner_client.post(url, {}, format="json", HTTP_IF_MATCH=f'"{booking.version - 1}"')
    assert response.status_code == 412
    assert response.json()["error"]["code"] == "version_conflict"
    fresh = owner_client.post(url, {}, format="json", HTTP_IF_MATCH=f'"{booking.version}"')
    assert fresh.status_code == 200


# --- reschedule ----------------------------------------------------------------------------


def test_owner_reschedules_and_counters_move(booking, owner_client, slot, second_slot):
    response = owner_client.post(
        f"/api/v1/bookings/{booking.id}/reschedule",
        {"slot_id": str(second_slot.id)},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["slot_id"] == str(second_slot.id)
    assert body["status"] == "confirmed"
    assert body["start_at"].startswith(second_slot.start_at.strftime("%Y-%m-%dT%H:%M"))
    assert counters(slot) == (0, 0)
    assert counters(second_slot) == (1, 0)
    moved = Event.objects.get(aggregate_id=str(booking.id), event_type="BookingRescheduled")
    assert moved.payload["previous_slot_id"] == str(slot.id)
    assert moved.payload["slot_id"] == str(second_slot.id)
    assert moved.payload["previous_start_local"].endswith(("+01:00", "+02:00"))
    last = BookingHistory.objects.filter(booking=booking).last()
    assert (last.from_status, last.to_status) == ("confirmed", "confirmed")


def test_reschedule_onto_full_slot_is_slot_unavailable(
    booking, owner_client, other_pet, slot, second_slot
):
    from .conftest import OTHER_OWNER

    book_on(second_slot, owner=OTHER_OWNER, pet_id="pet-2")
    response = owner_client.post(
        f"/api/v1/bookings/{booking.id}/reschedule",
        {"slot_id": str(second_slot.id)},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slot_unavailable"
    assert counters(slot) == (1, 0)
    assert counters(second_slot) == (1, 0)


def test_reschedule_takes_the_place_of_an_expired_hold(
    booking, owner_client, other_pet, second_slot
):
    from .conftest import OTHER_OWNER

    stale = hold_on(second_slot, owner=OTHER_OWNER, pet_id="pet-2")
    Reservation.objects.filter(id=stale.id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    response = owner_client.post(
        f"/api/v1/bookings/{booking.id}/reschedule",
        {"slot_id": str(second_slot.id)},
        format="json",
    )
    assert response.status_code == 200
    stale.refresh_from_db()
    assert stale.status == "expired"
    assert counters(second_slot) == (1, 0)


def test_reschedule_rejects_other_service_closed_and_same_slot(
    booking, staff_client, clinic, slot, second_slot
):
    url = f"/api/v1/bookings/{booking.id}/reschedule"
    other_service = SlotFactory(clinic=clinic, service=ClinicServiceFactory(clinic=clinic))
    response = staff_client.post(
        url, {"slot_id": str(other_service.id), "reason": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "slot_id" in response.json()["error"]["details"]
    same = staff_client.post(url, {"slot_id": str(slot.id), "reason": "x"}, format="json")
    assert same.status_code == 400
    second_slot.status = SlotStatus.CLOSED
    second_slot.save()
    closed = staff_client.post(url, {"slot_id": str(second_slot.id), "reason": "x"}, format="json")
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "slot_unavailable"
    no_reason = staff_client.post(url, {"slot_id": str(second_slot.id)}, format="json")
    assert no_reason.status_code == 400


def test_a_started_slot_is_no_target_for_anyone(booking, owner_client, staff_client, slot):
    started = SlotFactory(
        clinic=slot.clinic, service=slot.service, start_at=timezone.now() - dt.timedelta(hours=1)
    )
    url = f"/api/v1/bookings/{booking.id}/reschedule"
    for client, body in (
        (owner_client, {"slot_id": str(started.id)}),
        (staff_client, {"slot_id": str(started.id), "reason": "x"}),
    ):
        response = client.post(url, body, format="json")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "slot_started"
    assert counters(slot) == (1, 0)
    assert counters(started) == (0, 0)


def slot_inside_a_days_notice(slot):
    """The service of `slot` now needs a day's notice; a slot of it two hours from now."""
    service = slot.service
    service.min_notice_minutes = 24 * 60
    service.save()
    return SlotFactory(
        clinic=slot.clinic, service=service, start_at=timezone.now() + dt.timedelta(hours=2)
    )


def test_an_owner_reschedules_only_where_a_hold_could_go(booking, owner_client, staff_client, slot):
    """The booking rules of a hold apply to an owner's move (a reschedule was a way round
    them); staff of the clinic may still place the visit there."""
    soon = slot_inside_a_days_notice(slot)
    service = soon.service
    url = f"/api/v1/bookings/{booking.id}/reschedule"
    refused = owner_client.post(url, {"slot_id": str(soon.id)}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "too_late_to_book"
    assert refused.json()["error"]["details"]["min_notice_minutes"] == 24 * 60
    assert counters(slot) == (1, 0)
    assert counters(soon) == (0, 0)

    service.min_notice_minutes = 0
    service.active = False
    service.save()
    later = SlotFactory(clinic=slot.clinic, service=service)
    inactive = owner_client.post(url, {"slot_id": str(later.id)}, format="json")
    assert inactive.status_code == 409
    assert inactive.json()["error"]["code"] == "service_inactive"

    moved = staff_client.post(url, {"slot_id": str(soon.id), "reason": "Fits in."}, format="json")
    assert moved.status_code == 200, moved.content
    assert counters(soon) == (1, 0)


def test_an_owner_reschedule_keeps_the_pets_bookings_per_day(booking, owner_client, slot, settings):
    settings.FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY = 1
    zone = ZoneInfo(slot.clinic.timezone)
    booked_day = slot.start_at.astimezone(zone).date()

    def at(day: dt.date, hour: int) -> dt.datetime:
        """A fixed clinic-local hour (the factory's starts may lie near midnight)."""
        return dt.datetime.combine(day, dt.time(hour), tzinfo=zone)

    other_day = SlotFactory(
        clinic=slot.clinic, service=slot.service, start_at=at(booked_day + dt.timedelta(2), 10)
    )
    same_day_as_other = SlotFactory(
        clinic=slot.clinic, service=slot.service, start_at=at(booked_day + dt.timedelta(2), 12)
    )
    book_on(other_day)  # the pet's one booking of that day
    url = f"/api/v1/bookings/{booking.id}/reschedule"
    refused = owner_client.post(url, {"slot_id": str(same_day_as_other.id)}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "limit_exceeded"
    assert refused.json()["error"]["details"]["limit"] == "bookings_per_pet_per_day"
    assert counters(slot) == (1, 0)
    # A move within its own day adds nothing to that day.
    local_start = slot.start_at.astimezone(zone)
    same_day = SlotFactory(
        clinic=slot.clinic,
        service=slot.service,
        start_at=at(booked_day, 8 if local_start.hour >= 12 else 16),
    )
    moved = owner_client.post(url, {"slot_id": str(same_day.id)}, format="json")
    assert moved.status_code == 200, moved.content
    assert counters(same_day) == (1, 0)


def test_an_owners_reschedule_of_a_cancelled_booking_says_so_before_the_rules(
    booking, owner_client, slot
):
    """What the booking refuses (its status, a stale If-Match) comes before what the slot's
    rules would refuse: a cancelled booking is invalid_transition, not too_late_to_book."""
    soon = slot_inside_a_days_notice(slot)
    url = f"/api/v1/bookings/{booking.id}/reschedule"
    stale = owner_client.post(
        url, {"slot_id": str(soon.id)}, format="json", HTTP_IF_MATCH=f'"{booking.version + 5}"'
    )
    assert stale.status_code == 412
    owner_client.post(f"/api/v1/bookings/{booking.id}/cancel", {}, format="json")
    response = owner_client.post(url, {"slot_id": str(soon.id)}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"


def test_cancelled_booking_cannot_be_rescheduled(booking, owner_client, second_slot):
    owner_client.post(f"/api/v1/bookings/{booking.id}/cancel", {}, format="json")
    response = owner_client.post(
        f"/api/v1/bookings/{booking.id}/reschedule",
        {"slot_id": str(second_slot.id)},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert counters(second_slot) == (0, 0)


# --- complete / no-show --------------------------------------------------------------------


def test_staff_completes_and_marks_no_show(booking, staff_client, owner_client, second_slot, slot):
    let_slot_start(slot)
    assert owner_client.post(f"/api/v1/bookings/{booking.id}/complete").status_code == 403
    response = staff_client.post(f"/api/v1/bookings/{booking.id}/complete")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert counters(slot) == (1, 0)  # the place was used
    again = staff_client.post(f"/api/v1/bookings/{booking.id}/no-show")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"

    other = book_on(second_slot)
    let_slot_start(second_slot)
    response = staff_client.post(
        f"/api/v1/bookings/{other.id}/no-show", {"reason": "did not come"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "no_show"
    assert event_types(other.id)[-1] == "BookingNoShow"
    assert event_types(booking.id)[-1] == "BookingCompleted"


def test_cancelled_booking_cannot_be_completed(booking, support_client):
    support_client.post(f"/api/v1/bookings/{booking.id}/cancel", {"reason": "x"}, format="json")
    response = support_client.post(f"/api/v1/bookings/{booking.id}/complete")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"


# --- history -------------------------------------------------------------------------------


def test_history_lists_events_oldest_first(booking, owner_client, staff_client, second_slot):
    owner_client.post(
        f"/api/v1/bookings/{booking.id}/reschedule",
        {"slot_id": str(second_slot.id)},
        format="json",
    )
    staff_client.post(
        f"/api/v1/bookings/{booking.id}/cancel", {"reason": "clinic closed"}, format="json"
    )
    response = owner_client.get(f"/api/v1/bookings/{booking.id}/history")
    assert response.status_code == 200
    items = response.json()["results"]
    assert [item["event_type"] for item in items] == [
        "BookingCreated",
        "BookingConfirmed",
        "BookingRescheduled",
        "BookingCancelled",
    ]
    assert set(items[0]) == {"event_type", "occurred_at", "actor", "data"}
    assert items[-1]["actor"] == {"type": "staff"}  # owners see the role, never a staff id
    assert items[-1]["data"]["reason"] == "clinic closed"
    assert items[0]["occurred_at"] <= items[-1]["occurred_at"]


def test_anonymous_is_401(anon_client, booking):
    assert anon_client.get("/api/v1/bookings").status_code == 401
    other = api_client_for(sub="owner-1", roles=["pet_owner"])
    assert other.get(f"/api/v1/bookings/{booking.id}").status_code == 200


def test_cancel_with_idempotency_key_replays_instead_of_409(booking, owner_client, slot):
    url = f"/api/v1/bookings/{booking.id}/cancel"
    first = owner_client.post(url, {"reason": "ill"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    again = owner_client.post(url, {"reason": "ill"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other_body = owner_client.post(
        url, {"reason": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1"
    )
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert BookingHistory.objects.filter(booking=booking, to_status="cancelled").count() == 1
    assert counters(slot) == (0, 0)
