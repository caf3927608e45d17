"""Bookings of a pet group (issue 15 point 3): confirm books every pet at once, one payment for
the sum confirmed by one webhook, cancel and reschedule one pet or the whole group, the payment
deadline cancels the unpaid group together, refunds of a paid group, and the consistency
check stays green."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from bookings import tasks
from bookings.consistency import consistency_check
from bookings.models import Booking, BookingHistory, PaymentRecord
from petpro_booking.events.models import Event
from reservations.models import Reservation
from slots.models import Slot

from ..factories import ClinicServiceFactory, LocalPetFactory, SlotFactory
from .payment_fixtures import age_booking, deliver

pytestmark = pytest.mark.django_db(transaction=True)

PETS = ["cat-1", "cat-2", "cat-3"]


@pytest.fixture
def cats(db) -> list[str]:
    for pet_id in PETS:
        LocalPetFactory(owner__id="owner-1", id=pet_id, species="cat")
    return PETS


@pytest.fixture
def free_slot(clinic_service) -> Slot:
    return SlotFactory(service=clinic_service, capacity=4)


@pytest.fixture
def paid_service(clinic):
    return ClinicServiceFactory(
        id="svc-vaccination",
        clinic=clinic,
        requires_payment=True,
        price=Decimal("45.00"),
        currency="EUR",
        species=["dog", "cat"],
    )


@pytest.fixture
def paid_group_slot(paid_service) -> Slot:
    return SlotFactory(service=paid_service, capacity=3)


def hold_group(client, slot: Slot, pet_ids: list[str]) -> dict:
    response = client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_ids": pet_ids}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def confirm(client, hold_id: str):
    return client.post(f"/api/v1/reservations/{hold_id}/confirm")


def book_group(client, slot: Slot, pet_ids: list[str]) -> dict:
    group = hold_group(client, slot, pet_ids)
    response = confirm(client, group["reservations"][0]["id"])
    assert response.status_code == 201, response.json()
    return response.json()


def counters(slot: Slot) -> tuple[int, int]:
    slot.refresh_from_db()
    return slot.booked_count, slot.held_count


def statuses(group_id: str) -> list[str]:
    return list(
        Booking.objects.filter(group_id=group_id)
        .order_by("created_at", "id")
        .values_list("status", flat=True)
    )


def consistent() -> set[str]:
    report = consistency_check().as_dict()
    return {name for name, check in report["checks"].items() if not check["ok"]} - {"outbox_age"}


# --- confirm ---------------------------------------------------------------------------------


def test_confirming_one_hold_books_the_whole_group(owner_client, cats, free_slot):
    group = hold_group(owner_client, free_slot, cats[:2])
    second = group["reservations"][1]["id"]

    response = confirm(owner_client, second)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["reservation_id"] == second
    assert body["pet_id"] == "cat-2"
    assert body["group_id"] == group["group_id"]
    assert [(m["pet_id"], m["status"]) for m in body["group_bookings"]] == [("cat-1", "confirmed")]
    assert statuses(group["group_id"]) == ["confirmed", "confirmed"]
    assert counters(free_slot) == (2, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"confirmed"}
    created = Event.objects.filter(event_type="BookingCreated")
    assert {event.payload["group_id"] for event in created} == {group["group_id"]}
    # Confirming again (any hold of the group) names the booking.
    again = confirm(owner_client, group["reservations"][0]["id"])
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"
    assert consistent() == set()


def test_a_group_confirm_writes_its_bookings_in_two_statements_and_events_in_order(
    owner_client, cats, free_slot
):
    """Three pets: the holds' fenced UPDATEs, then the units, bookings and history rows in one
    statement and the nine events in one INSERT (they were 16 statements)."""
    group = hold_group(owner_client, free_slot, cats)
    with CaptureQueriesContext(connection) as captured:
        assert confirm(owner_client, group["reservations"][1]["id"]).status_code == 201
    sql = [query["sql"] for query in captured.captured_queries]
    (convert,) = [statement for statement in sql if "UPDATE slots" in statement]
    assert convert.count('INSERT INTO "bookings"') == 3
    assert convert.count('INSERT INTO "booking_history"') == 3
    assert len([statement for statement in sql if 'INSERT INTO "events"' in statement]) == 1
    assert len([statement for statement in sql if 'UPDATE "reservations"' in statement]) == 3
    # Per aggregate, ids (the relay's order) follow versions; the named hold's event first.
    written = list(Event.objects.exclude(event_type="ReservationCreated").order_by("id"))
    assert written[0].aggregate_id == group["reservations"][1]["id"]
    assert [e.event_type for e in written[:3]] == ["ReservationConfirmed"] * 3
    bookings = Booking.objects.filter(group_id=group["group_id"])
    for booking in bookings:
        mine = [e for e in written if e.aggregate_id == str(booking.id)]
        assert [(e.event_type, e.aggregate_version) for e in mine] == [
            ("BookingCreated", 1),
            ("BookingConfirmed", 2),
        ]
    assert sorted(bookings.values_list("pet_id", flat=True)) == cats
    assert BookingHistory.objects.filter(booking__in=bookings).count() == 3
    assert counters(free_slot) == (3, 0)
    assert consistent() == set()


def test_one_expired_hold_refuses_the_confirm_and_nothing_is_booked(owner_client, cats, free_slot):
    group = hold_group(owner_client, free_slot, cats)
    Reservation.objects.filter(id=group["reservations"][2]["id"]).update(
        expires_at="2020-01-01T00:00:00Z"
    )

    response = confirm(owner_client, group["reservations"][0]["id"])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reservation_expired"
    assert not Booking.objects.exists()
    assert set(Reservation.objects.values_list("status", flat=True)) == {"held"}
    assert counters(free_slot) == (0, 3)


def test_a_pet_released_alone_is_left_out_of_the_confirm(owner_client, cats, free_slot):
    group = hold_group(owner_client, free_slot, cats)
    assert owner_client.delete(f"/api/v1/reservations/{group['reservations'][1]['id']}").status_code
    response = confirm(owner_client, group["reservations"][0]["id"])
    assert response.status_code == 201
    assert sorted(Booking.objects.values_list("pet_id", flat=True)) == ["cat-1", "cat-3"]
    assert counters(free_slot) == (2, 0)


def test_the_per_pet_per_day_limit_is_checked_for_each_pet(
    owner_client, cats, clinic_service, settings
):
    settings.FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY = 1
    # 09:00 in the clinic's zone, so the slot two hours later is on the same clinic day (the
    # factory's sequence can land anywhere in a day late in a long run).
    berlin = ZoneInfo(clinic_service.clinic.timezone)
    day = (dt.datetime.now(berlin) + dt.timedelta(days=5)).date()
    morning = dt.datetime.combine(day, dt.time(9, 0), tzinfo=berlin)
    first = SlotFactory(service=clinic_service, capacity=3, start_at=morning)
    later = SlotFactory(
        service=clinic_service, capacity=3, start_at=first.start_at + dt.timedelta(hours=2)
    )
    single = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(first.id), "pet_id": "cat-2"}, format="json"
    ).json()
    assert confirm(owner_client, single["id"]).status_code == 201
    group = hold_group(owner_client, later, ["cat-1", "cat-2"])

    refused = confirm(owner_client, group["reservations"][0]["id"])

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["details"]["limit"] == "bookings_per_pet_per_day"
    assert error["details"]["pet_id"] == "cat-2"
    assert Booking.objects.count() == 1
    assert counters(later) == (0, 2)


def test_the_unpaid_limit_counts_every_booking_of_the_group(
    owner_client, cats, paid_group_slot, settings
):
    settings.FAIR_USE_MAX_UNPAID_BOOKINGS = 2
    group = hold_group(owner_client, paid_group_slot, cats)

    refused = confirm(owner_client, group["reservations"][0]["id"])

    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["limit"] == "unpaid_bookings_per_owner"
    assert not Booking.objects.exists()


# --- one payment for the sum -----------------------------------------------------------------


def test_one_payment_for_the_sum_and_the_webhook_confirms_every_pet(
    owner_client, cats, paid_group_slot, payment_stub
):
    booked = book_group(owner_client, paid_group_slot, cats[:2])
    assert booked["status"] == "pending_payment"
    sibling = booked["group_bookings"][0]["id"]

    paid = owner_client.post(f"/api/v1/bookings/{sibling}/payment")
    again = owner_client.post(f"/api/v1/bookings/{booked['id']}/payment")

    assert paid.status_code == 201, paid.json()
    assert again.json()["payment_id"] == paid.json()["payment_id"]
    record = PaymentRecord.objects.get()
    assert record.amount == Decimal("90.00")
    assert str(record.group_id) == booked["group_id"]
    assert [r.body["amount"] for r in payment_stub.create_requests] == ["90.00"]
    payment_id = paid.json()["payment_id"]
    seen = owner_client.get(f"/api/v1/bookings/{booked['id']}/payment").json()
    assert seen["payment_id"] == payment_id

    payment_stub.settle(payment_id, "succeeded")
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded")
    response = deliver(APIClient(), body, signature)

    assert response.json() == {"status": "confirmed"}
    assert statuses(booked["group_id"]) == ["confirmed", "confirmed"]
    assert Event.objects.filter(event_type="BookingPaid").count() == 2
    listed = owner_client.get("/api/v1/bookings").json()["results"]
    assert {b["payment_status"] for b in listed} == {"succeeded"}
    assert consistent() == set()


def test_a_payment_of_another_amount_than_the_sum_is_refunded(
    owner_client, cats, paid_group_slot, payment_stub
):
    booked = book_group(owner_client, paid_group_slot, cats[:2])
    payment_id = owner_client.post(f"/api/v1/bookings/{booked['id']}/payment").json()["payment_id"]
    payment_stub.settle(payment_id, "succeeded")
    body, signature = payment_stub.webhook(payment_id, amount="45.00")

    response = deliver(APIClient(), body, signature)

    assert response.json() == {"status": "amount_mismatch"}
    assert statuses(booked["group_id"]) == ["pending_payment", "pending_payment"]
    assert len(payment_stub.requests_to("/refund")) == 1


def test_the_deadline_cancels_the_unpaid_group_together(owner_client, cats, paid_group_slot):
    booked = book_group(owner_client, paid_group_slot, cats)
    for booking in Booking.objects.filter(group_id=booked["group_id"]):
        age_booking(booking, seconds=django_settings.PAYMENT_DEADLINE_SECONDS + 60)

    counts = tasks.payments_cancel_unpaid.delay().get()

    assert counts.get("cancelled") == 1, counts
    assert statuses(booked["group_id"]) == ["cancelled"] * 3
    assert counters(paid_group_slot) == (0, 0)
    assert set(Booking.objects.values_list("cancel_reason", flat=True)) == {"payment_deadline"}


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_one_pet_leaves_the_others_booked(owner_client, cats, free_slot):
    booked = book_group(owner_client, free_slot, cats)

    response = owner_client.post(f"/api/v1/bookings/{booked['id']}/cancel", {}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert statuses(booked["group_id"]) == ["cancelled", "confirmed", "confirmed"]
    assert counters(free_slot) == (2, 0)


def test_cancel_the_group_cancels_every_live_booking(owner_client, cats, free_slot):
    booked = book_group(owner_client, free_slot, cats)
    owner_client.post(f"/api/v1/bookings/{booked['id']}/cancel", {}, format="json")
    sibling = booked["group_bookings"][0]["id"]

    response = owner_client.post(
        f"/api/v1/bookings/{sibling}/cancel", {"scope": "group"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["id"] == sibling
    assert statuses(booked["group_id"]) == ["cancelled"] * 3
    assert counters(free_slot) == (0, 0)
    assert Event.objects.filter(event_type="BookingCancelled").count() == 3
    again = owner_client.post(
        f"/api/v1/bookings/{sibling}/cancel", {"scope": "group"}, format="json"
    )
    assert again.status_code == 409
    bad = owner_client.post(f"/api/v1/bookings/{sibling}/cancel", {"scope": "all"}, format="json")
    assert bad.status_code == 400
    assert "scope" in bad.json()["error"]["details"]
    assert consistent() == set()


def paid_group(owner_client, slot, pets, payment_stub) -> dict:
    booked = book_group(owner_client, slot, pets)
    payment_id = owner_client.post(f"/api/v1/bookings/{booked['id']}/payment").json()["payment_id"]
    payment_stub.settle(payment_id, "succeeded")
    assert deliver(APIClient(), *payment_stub.webhook(payment_id)).json() == {"status": "confirmed"}
    return booked


def test_a_paid_groups_payment_is_refunded_whole_when_the_last_pet_is_cancelled(
    owner_client, cats, paid_group_slot, payment_stub
):
    booked = paid_group(owner_client, paid_group_slot, cats[:2], payment_stub)
    sibling = booked["group_bookings"][0]["id"]

    one = owner_client.post(f"/api/v1/bookings/{booked['id']}/cancel", {}, format="json")

    assert one.status_code == 200
    assert payment_stub.requests_to("/refund") == []
    assert PaymentRecord.objects.get().status == "succeeded"
    cancelled = Event.objects.get(event_type="BookingCancelled")
    assert cancelled.payload["refund_requested"] is False
    note = BookingHistory.objects.filter(booking_id=booked["id"]).order_by("at", "id")
    assert any(h.reason.startswith("partial_refund_owed: 45.00 EUR") for h in note)
    assert consistent() == set()
    # The sweep leaves a payment the group still uses alone.
    assert tasks.payments_refund_owed.delay().get() == {}

    last = owner_client.post(f"/api/v1/bookings/{sibling}/cancel", {}, format="json")

    assert last.status_code == 200
    assert len(payment_stub.requests_to("/refund")) == 1
    assert PaymentRecord.objects.get().status == "refunded"
    assert consistent() == set()


def test_cancelling_a_paid_group_at_once_refunds_its_payment_once(
    owner_client, cats, paid_group_slot, payment_stub
):
    booked = paid_group(owner_client, paid_group_slot, cats, payment_stub)

    response = owner_client.post(
        f"/api/v1/bookings/{booked['id']}/cancel", {"scope": "group"}, format="json"
    )

    assert response.status_code == 200
    assert statuses(booked["group_id"]) == ["cancelled"] * 3
    assert len(payment_stub.requests_to("/refund")) == 1
    assert PaymentRecord.objects.get().status == "refunded"
    cancelled = Event.objects.filter(event_type="BookingCancelled")
    assert {event.payload["refund_requested"] for event in cancelled} == {True}
    assert counters(paid_group_slot) == (0, 0)


# --- reschedule ------------------------------------------------------------------------------


def test_reschedule_one_pet_moves_it_alone(owner_client, cats, free_slot, clinic_service):
    booked = book_group(owner_client, free_slot, cats[:2])
    target = SlotFactory(
        service=clinic_service, capacity=1, start_at=free_slot.start_at + dt.timedelta(days=1)
    )

    response = owner_client.post(
        f"/api/v1/bookings/{booked['id']}/reschedule", {"slot_id": str(target.id)}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["slot_id"] == str(target.id)
    assert response.json()["group_id"] == booked["group_id"]
    assert counters(free_slot) == (1, 0)
    assert counters(target) == (1, 0)


def test_reschedule_the_group_moves_every_pet_or_none(
    owner_client, cats, free_slot, clinic_service
):
    booked = book_group(owner_client, free_slot, cats)
    small = SlotFactory(
        service=clinic_service, capacity=2, start_at=free_slot.start_at + dt.timedelta(days=1)
    )
    roomy = SlotFactory(
        service=clinic_service, capacity=3, start_at=free_slot.start_at + dt.timedelta(days=2)
    )
    url = f"/api/v1/bookings/{booked['id']}/reschedule"

    refused = owner_client.post(url, {"slot_id": str(small.id), "scope": "group"}, format="json")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "slot_unavailable"
    assert counters(free_slot) == (3, 0)
    assert counters(small) == (0, 0)

    # One pet moved alone first: the group move brings it along from its own slot.
    alone = booked["group_bookings"][0]["id"]
    owner_client.post(
        f"/api/v1/bookings/{alone}/reschedule", {"slot_id": str(small.id)}, format="json"
    )
    moved = owner_client.post(url, {"slot_id": str(roomy.id), "scope": "group"}, format="json")

    assert moved.status_code == 200, moved.json()
    assert set(Booking.objects.values_list("slot_id", flat=True)) == {roomy.id}
    assert counters(free_slot) == (0, 0)
    assert counters(small) == (0, 0)
    assert counters(roomy) == (3, 0)
    assert consistent() == set()


def test_a_refund_from_the_provider_cancels_every_booking_of_the_group(
    owner_client, cats, paid_group_slot, payment_stub
):
    booked = paid_group(owner_client, paid_group_slot, cats[:2], payment_stub)
    payment_id = PaymentRecord.objects.get().payment_id
    payment_stub.settle(payment_id, "refunded")

    response = deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.refunded"))

    assert response.json() == {"status": "refunded_cancelled"}
    assert statuses(booked["group_id"]) == ["cancelled", "cancelled"]
    assert counters(paid_group_slot) == (0, 0)
    assert consistent() == set()


def test_the_consistency_check_flags_a_group_split_across_expiries(owner_client, cats, free_slot):
    group = hold_group(owner_client, free_slot, cats[:2])
    assert consistent() == set()
    Reservation.objects.filter(id=group["reservations"][1]["id"]).update(
        expires_at="2099-01-01T00:00:00Z"
    )

    report = consistency_check().as_dict()

    assert not report["checks"]["pet_groups"]["ok"]
    assert report["checks"]["pet_groups"]["samples"][0]["group_id"] == group["group_id"]


def test_a_pet_cancelled_after_the_payment_started_keeps_the_rest_paid(
    owner_client, cats, paid_group_slot, payment_stub
):
    booked = book_group(owner_client, paid_group_slot, cats)
    payment_id = owner_client.post(f"/api/v1/bookings/{booked['id']}/payment").json()["payment_id"]
    assert PaymentRecord.objects.get().amount == Decimal("135.00")
    sibling = booked["group_bookings"][1]["id"]
    assert (
        owner_client.post(f"/api/v1/bookings/{sibling}/cancel", {}, format="json").status_code
        == 200
    )
    payment_stub.settle(payment_id, "succeeded")

    response = deliver(APIClient(), *payment_stub.webhook(payment_id))

    assert response.json() == {"status": "confirmed"}
    assert statuses(booked["group_id"]) == ["confirmed", "confirmed", "cancelled"]
    notes = BookingHistory.objects.filter(booking_id=booked["id"])
    assert any(h.reason.startswith("partial_refund_owed: 45.00 EUR") for h in notes)
    assert payment_stub.requests_to("/refund") == []
    assert consistent() == set()
