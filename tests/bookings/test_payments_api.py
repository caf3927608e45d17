"""POST /api/v1/bookings/{id}/payment against a real stub Payment Service on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from bookings.models import Booking, PaymentRecord

from .payment_fixtures import payment_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_creates_the_payment_and_returns_it(owner_client, unpaid_booking, payment_stub):
    response = owner_client.post(payment_url(unpaid_booking))

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"payment_id", "status", "checkout_url"}
    assert body["status"] == "pending"
    assert body["payment_id"] in payment_stub.payments
    assert body["checkout_url"].endswith(body["payment_id"])

    (request,) = payment_stub.create_requests
    assert request.headers["x-api-key"] == payment_stub.api_key
    assert request.body == {
        "booking_id": str(unpaid_booking.id),
        "amount": "45.00",
        "currency": "EUR",
        "description": f"PetPro booking {unpaid_booking.reference}",
        "customer_id": "owner-1",
    }
    record = PaymentRecord.objects.get(booking=unpaid_booking)
    assert record.idempotency_key == request.idempotency_key
    assert (record.payment_id, record.status) == (body["payment_id"], "pending")


def test_a_retry_returns_the_same_payment(owner_client, unpaid_booking, payment_stub):
    first = owner_client.post(payment_url(unpaid_booking)).json()
    again = owner_client.post(payment_url(unpaid_booking))

    assert again.status_code == 201
    assert again.json() == first
    assert len(payment_stub.payments) == 1
    assert PaymentRecord.objects.filter(booking=unpaid_booking).count() == 1


def test_provider_500s_then_recovers_one_payment_only(owner_client, unpaid_booking, payment_stub):
    payment_stub.fail_next = 2
    payment_stub.fail_after_create = True  # the provider created it; the answers got lost

    response = owner_client.post(payment_url(unpaid_booking))

    assert response.status_code == 201
    assert list(payment_stub.payments) == [response.json()["payment_id"]]
    keys = {r.idempotency_key for r in payment_stub.create_requests}
    assert len(payment_stub.create_requests) == 3
    assert keys == {PaymentRecord.objects.get(booking=unpaid_booking).idempotency_key}


def test_provider_down_is_503_and_a_later_request_reuses_the_same_key(
    owner_client, unpaid_booking, payment_stub
):
    payment_stub.fail_next = 100
    payment_stub.fail_after_create = True

    down = owner_client.post(payment_url(unpaid_booking))

    assert down.status_code == 503
    assert down.json()["error"]["code"] == "dependency_unavailable"
    assert down.json()["error"]["details"]["dependency"] == "payment service"
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"
    assert len(payment_stub.create_requests) == 4  # first attempt + 3 retries

    payment_stub.fail_next = 0
    up = owner_client.post(payment_url(unpaid_booking))

    assert up.status_code == 201
    assert len(payment_stub.payments) == 1  # every attempt, in both requests, had one key
    assert len({r.idempotency_key for r in payment_stub.create_requests}) == 1
    assert PaymentRecord.objects.get(booking=unpaid_booking).payment_id == up.json()["payment_id"]


def test_slow_provider_is_a_bounded_503(owner_client, unpaid_booking, payment_stub, settings):
    payment_stub.hang_seconds = 5.0

    started = time.monotonic()
    response = owner_client.post(payment_url(unpaid_booking))
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "dependency_unavailable"
    assert elapsed < settings.PAYMENT_TOTAL_DEADLINE_SECONDS + 0.5
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"


def test_only_a_pending_payment_booking_can_be_paid(owner_client, booking, payment_stub):
    assert booking.status == "confirmed"  # its service needs no payment

    response = owner_client.post(payment_url(booking))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert payment_stub.create_requests == []


def test_past_the_deadline_it_cannot_be_paid(owner_client, unpaid_booking, payment_stub, settings):
    Booking.objects.filter(id=unpaid_booking.id).update(
        created_at=unpaid_booking.created_at.replace(year=2020)
    )

    response = owner_client.post(payment_url(unpaid_booking))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert "payment_deadline" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("client_fixture", "status_code"),
    [("other_owner_client", 404), ("staff_client", 403), ("anon_client", 401)],
)
def test_only_the_owner_pays(request, unpaid_booking, payment_stub, client_fixture, status_code):
    client = request.getfixturevalue(client_fixture)

    response = client.post(payment_url(unpaid_booking))

    assert response.status_code == status_code
    assert payment_stub.create_requests == []


def test_unknown_booking_is_404(owner_client, db, payment_stub):
    response = owner_client.post("/api/v1/bookings/00000000-0000-0000-0000-000000000000/payment")

    assert response.status_code == 404


def test_idempotency_key_replays_the_first_answer(owner_client, unpaid_booking, payment_stub):
    first = owner_client.post(payment_url(unpaid_booking), HTTP_IDEMPOTENCY_KEY="pay-1")
    again = owner_client.post(payment_url(unpaid_booking), HTTP_IDEMPOTENCY_KEY="pay-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
