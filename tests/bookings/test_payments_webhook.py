"""POST /api/v1/payments/webhook: signed by the stub Payment Service, delivered to our endpoint;
create -> webhook -> confirmed, forged and replayed webhooks, failures, refunds, bad amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from bookings.models import Booking, BookingHistory, PaymentRecord, ProcessedWebhook
from integrations.payments.webhook import webhook_sign

from .payment_fixtures import deliver, event_types, last_event, payment_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def webhook_client():
    return APIClient()  # the Payment Service sends no token


@pytest.fixture
def payment_id(owner_client, unpaid_booking, payment_stub) -> str:
    response = owner_client.post(payment_url(unpaid_booking))
    assert response.status_code == 201
    return response.json()["payment_id"]


def test_create_then_webhook_confirms_the_booking(
    webhook_client, owner_client, unpaid_booking, payment_id, payment_stub
):
    payment_stub.settle(payment_id, "succeeded")
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded")

    response = deliver(webhook_client, body, signature)

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "confirmed"}
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "confirmed"
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "succeeded"
    assert event_types(unpaid_booking)[-2:] == ["BookingPaid", "BookingConfirmed"]
    paid = last_event(unpaid_booking, "BookingPaid")
    assert paid.payload["payment_id"] == payment_id
    assert paid.payload["from_status"] == "pending_payment"
    history = BookingHistory.objects.filter(booking=unpaid_booking).order_by("at", "id").last()
    assert (history.from_status, history.to_status, history.actor_type) == (
        "pending_payment",
        "confirmed",
        "system",
    )
    seen = owner_client.get(f"/api/v1/bookings/{unpaid_booking.id}").json()
    assert seen["status"] == "confirmed"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body, sig, stub: (body, None), id="missing"),
        pytest.param(lambda body, sig, stub: (body, "sha256=" + "0" * 64), id="wrong"),
        pytest.param(
            lambda body, sig, stub: (body.replace(b"45.00", b"0.01"), sig), id="tampered-body"
        ),
        pytest.param(
            lambda body, sig, stub: (body, webhook_sign(body=body, secret="not-the-secret")),
            id="other-secret",
        ),
    ],
)
def test_forged_webhooks_are_401_and_change_nothing(
    webhook_client, unpaid_booking, payment_id, payment_stub, forge
):
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded")
    body, signature = forge(body, signature, payment_stub)

    response = deliver(webhook_client, body, signature)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "pending"
    assert not ProcessedWebhook.objects.exists()


def test_a_replayed_webhook_is_200_and_changes_nothing(
    webhook_client, unpaid_booking, payment_id, payment_stub
):
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded")
    assert deliver(webhook_client, body, signature).json() == {"status": "confirmed"}
    events_after_first = event_types(unpaid_booking)
    version_after_first = Booking.objects.get(id=unpaid_booking.id).version

    replay = deliver(webhook_client, body, signature)

    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    assert event_types(unpaid_booking) == events_after_first
    assert Booking.objects.get(id=unpaid_booking.id).version == version_after_first


def test_the_same_success_under_another_event_id_is_applied_once(
    webhook_client, unpaid_booking, payment_id, payment_stub
):
    deliver(webhook_client, *payment_stub.webhook(payment_id, "payment.succeeded"))

    again = deliver(webhook_client, *payment_stub.webhook(payment_id, "payment.succeeded"))

    assert again.json() == {"status": "already_applied"}
    assert event_types(unpaid_booking).count("BookingConfirmed") == 1


def test_a_failed_payment_leaves_the_booking_payable(
    webhook_client, owner_client, unpaid_booking, payment_id, payment_stub
):
    payment_stub.settle(payment_id, "failed")

    response = deliver(webhook_client, *payment_stub.webhook(payment_id, "payment.failed"))

    assert response.json() == {"status": "failed"}
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "failed"
    # The owner tries again: a new payment, under a new idempotency key.
    retry = owner_client.post(payment_url(unpaid_booking))
    assert retry.status_code == 201
    assert retry.json()["payment_id"] != payment_id
    assert len({r.idempotency_key for r in payment_stub.create_requests}) == 2


def test_a_wrong_amount_does_not_confirm_and_is_refunded(
    webhook_client, unpaid_booking, payment_id, payment_stub
):
    payment_stub.settle(payment_id, "succeeded")
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded", amount="4.50")

    response = deliver(webhook_client, body, signature)

    assert response.json() == {"status": "amount_mismatch"}
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"
    assert [r.path for r in payment_stub.requests_to("/refund")] == [
        f"/api/v1/payments/{payment_id}/refund"
    ]
    record = PaymentRecord.objects.get(payment_id=payment_id)
    assert record.status == "refunded"
    # Reasons are encrypted at rest: compared after decryption, not in SQL.
    reasons = BookingHistory.objects.filter(booking=unpaid_booking).values_list("reason", flat=True)
    assert any("does not match" in reason for reason in reasons)


def test_a_wrong_currency_does_not_confirm(
    webhook_client, unpaid_booking, payment_id, payment_stub
):
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded", currency="USD")

    assert deliver(webhook_client, body, signature).json() == {"status": "amount_mismatch"}
    unpaid_booking.refresh_from_db()
    assert unpaid_booking.status == "pending_payment"


def test_a_refund_is_recorded(webhook_client, unpaid_booking, payment_id, payment_stub):
    deliver(webhook_client, *payment_stub.webhook(payment_id, "payment.succeeded"))

    response = deliver(webhook_client, *payment_stub.webhook(payment_id, "payment.refunded"))

    # Issue 12: a refunded booking that held its unit is cancelled (cancelled-with-refund).
    assert response.json() == {"status": "refunded_cancelled"}
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "refunded"
    rows = BookingHistory.objects.filter(booking=unpaid_booking, to_status="cancelled")
    assert [row.reason for row in rows] == ["payment_refunded"]  # reason is encrypted: read it


def test_an_unknown_payment_is_404_so_the_provider_delivers_it_again(
    webhook_client, payment_id, payment_stub
):
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded")
    PaymentRecord.objects.update(payment_id="pay_other")

    response = deliver(webhook_client, body, signature)

    assert response.status_code == 404
    assert not ProcessedWebhook.objects.exists()


def test_a_signed_body_that_is_not_an_event_is_400(webhook_client, db, settings):
    body = b'{"hello": "world"}'
    response = deliver(
        webhook_client, body, webhook_sign(body=body, secret=settings.PAYMENT_WEBHOOK_SECRET)
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_amounts_compare_as_decimals(webhook_client, unpaid_booking, payment_id, payment_stub):
    assert unpaid_booking.amount == Decimal("45.00")
    body, signature = payment_stub.webhook(payment_id, "payment.succeeded", amount="45")

    assert deliver(webhook_client, body, signature).json() == {"status": "confirmed"}
