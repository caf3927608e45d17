"""Webhook consistency (issue 12, point 7): a body naming another booking changes nothing and
is a security event; payment.refunded on a confirmed booking cancels it (cancelled-with-refund);
the webhook secret can be rotated (current and previous accepted)."""

from __future__ import annotations

import json
import logging

import pytest
from rest_framework.test import APIClient

from bookings.models import Booking, PaymentRecord, ProcessedWebhook
from integrations.payments.webhook import webhook_sign

from .payment_fixtures import deliver, event_types, payment_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def payment_id(owner_client, unpaid_booking, payment_stub) -> str:
    response = owner_client.post(payment_url(unpaid_booking))
    assert response.status_code == 201
    return response.json()["payment_id"]


def test_a_body_naming_another_booking_changes_nothing(
    unpaid_booking, payment_id, payment_stub, caplog
):
    payment_stub.settle(payment_id, "succeeded")
    body, _ = payment_stub.webhook(payment_id, "payment.succeeded", event_id="evt-mismatch")
    forged = json.loads(body)
    forged["booking_id"] = "00000000-0000-0000-0000-000000000001"
    body = json.dumps(forged).encode()
    signature = webhook_sign(body=body, secret=payment_stub.webhook_secret)

    with caplog.at_level(logging.WARNING, logger="petpro.security"):
        response = deliver(APIClient(), body, signature)

    assert 400 <= response.status_code < 500
    assert response.json()["error"]["details"]["booking_id"]
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"
    assert PaymentRecord.objects.get(payment_id=payment_id).status != "succeeded"
    assert not ProcessedWebhook.objects.filter(event_id="evt-mismatch").exists()
    security = [r for r in caplog.records if r.name == "petpro.security"]
    assert [r.getMessage() for r in security] == ["webhook_booking_mismatch"]


def test_refund_of_a_confirmed_booking_cancels_it_and_frees_the_unit(
    unpaid_booking, payment_id, payment_stub
):
    payment_stub.settle(payment_id, "succeeded")
    assert deliver(APIClient(), *payment_stub.webhook(payment_id)).status_code == 200
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "confirmed"

    payment_stub.settle(payment_id, "refunded")
    response = deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.refunded"))

    assert response.status_code == 200, response.content
    booking = Booking.objects.select_related("slot").get(id=unpaid_booking.id)
    assert booking.status == "cancelled"
    assert booking.slot.booked_count == 0
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "refunded"
    assert event_types(booking)[-1] == "BookingCancelled"


def test_previous_webhook_secret_is_accepted_during_a_rollover(
    unpaid_booking, payment_id, payment_stub, settings
):
    payment_stub.settle(payment_id, "succeeded")
    old = payment_stub.webhook_secret
    settings.PAYMENT_WEBHOOK_SECRET = "the-new-webhook-secret"
    settings.PAYMENT_WEBHOOK_SECRET_PREVIOUS = old
    assert deliver(APIClient(), *payment_stub.webhook(payment_id)).status_code == 200

    settings.PAYMENT_WEBHOOK_SECRET_PREVIOUS = ""  # rollover over: the old one is refused
    body, signature = payment_stub.webhook(payment_id, "payment.refunded")
    assert deliver(APIClient(), body, signature).status_code == 401
    body, signature = payment_stub.webhook(
        payment_id, "payment.refunded", secret="the-new-webhook-secret"
    )
    assert deliver(APIClient(), body, signature).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"event_id": "e1", "type": ["x"], "payment_id": "p1", "amount": 1, "currency": "EUR"}',
        b'{"event_id": "e\\ud800", "type": "payment.succeeded", "payment_id": "p1",'
        b' "amount": 1, "currency": "EUR"}',
        b'{"event_id": "e1", "type": "payment.succeeded", "payment_id": "p\\u0000",'
        b' "amount": 1, "currency": "EUR"}',
        b'{"event_id": "' + b"e" * 101 + b'", "type": "payment.succeeded", "payment_id": "p1",'
        b' "amount": 1, "currency": "EUR"}',
        b'{"event_id": "e1", "type": "payment.succeeded", "payment_id": {"a": 1},'
        b' "amount": 1, "currency": "EUR"}',
        b'{"event_id": "e1", "type": "payment.succeeded", "payment_id": "p1",'
        b' "amount": 1, "currency": "EUR", "occurred_at": [1]}',
        b'{"event_id": "e1", "type": "payment.succeeded", "payment_id": "p1",'
        b' "amount": 1e999, "currency": "EUR"}',
        b"[" * 1000 + b"]" * 1000,
        b'{"event_id": "e1", "type": "payment.succeeded", "payment_id": "p1",'
        b' "amount": 1, "currency": "EUR", "extra": 1e400}',
    ],
    ids=[
        "type not a string",
        "lone surrogate in event_id",
        "NUL in payment_id",
        "event_id longer than its column",
        "payment_id an object",
        "occurred_at a list",
        "amount infinite",
        "nested 1,000 deep",
        "a number past a float's range",
    ],
)
def test_a_signed_body_we_cannot_carry_is_a_400_and_changes_nothing(body, settings):
    """Signed by the provider (or by anyone holding the secret), yet not an event we can store:
    each was a 500 (TypeError, an encoding error, a DataError, RecursionError) before."""
    client = APIClient()
    client.raise_request_exception = False
    signature = webhook_sign(body=body, secret=settings.PAYMENT_WEBHOOK_SECRET)
    response = deliver(client, body, signature)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] == "validation_error"
    assert not ProcessedWebhook.objects.exists()
