"""The sandbox provider of the embedded default: idempotent creates, a settled payment a
moment later and a correctly signed webhook delivered to the registered handler."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.models import SandboxPayment
from integrations.payments import gateway, sandbox
from integrations.payments.gateway import PaymentRejected
from integrations.payments.webhook import webhook_event_parse, webhook_signature_valid

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received(settings, monkeypatch):
    """Webhooks the sandbox delivers, captured in place of the bookings handler."""
    settings.PAYMENT_SERVICE_URL = ""
    settings.PAYMENT_SANDBOX_DELAY_SECONDS = 0.05
    settings.PAYMENT_SANDBOX_WEBHOOK_URL = ""
    deliveries: list[tuple[bytes, str]] = []
    arrived = threading.Event()

    def receiver(body: bytes, signature: str) -> None:
        deliveries.append((body, signature))
        arrived.set()

    provider = sandbox.SandboxPaymentProvider()
    monkeypatch.setattr(sandbox, "_receiver", receiver)
    monkeypatch.setattr(sandbox, "_provider", provider)
    yield deliveries, arrived
    provider.close()


def create(key: str):
    return gateway.payment_create(
        idempotency_key=key,
        booking_id="b-1",
        amount=Decimal("45"),
        currency="EUR",
        description="checkup",
        customer_id="owner-1",
    )


def test_settles_and_delivers_a_signed_webhook(received, settings):
    deliveries, arrived = received

    payment = create("k-1")

    assert payment.status == "pending"
    assert payment.checkout_url.endswith(payment.payment_id)
    assert arrived.wait(5)
    body, signature = deliveries[0]
    assert webhook_signature_valid(
        body=body, signature=signature, secret=settings.PAYMENT_WEBHOOK_SECRET
    )
    event = webhook_event_parse(body)
    assert (event.type, event.payment_id, event.amount) == (
        "payment.succeeded",
        payment.payment_id,
        Decimal("45.00"),
    )
    assert gateway.payment_get(payment_id=payment.payment_id).status == "succeeded"


def test_the_same_idempotency_key_returns_the_same_payment(received):
    assert create("k-1").payment_id == create("k-1").payment_id
    assert create("k-1").payment_id != create("k-2").payment_id


def test_outcome_failed_delivers_payment_failed(received, settings):
    settings.PAYMENT_SANDBOX_OUTCOME = "failed"
    deliveries, arrived = received

    payment = create("k-1")

    assert arrived.wait(5)
    assert webhook_event_parse(deliveries[0][0]).type == "payment.failed"
    assert gateway.payment_get(payment_id=payment.payment_id).status == "failed"


def test_refund_marks_refunded_and_tells_the_service(received):
    deliveries, arrived = received
    payment = create("k-1")
    assert arrived.wait(5)
    arrived.clear()

    assert gateway.payment_refund(payment_id=payment.payment_id, idempotency_key="r").status == (
        "refunded"
    )

    assert arrived.wait(5)
    assert webhook_event_parse(deliveries[-1][0]).type == "payment.refunded"


def test_unknown_payments_are_refused(received):
    with pytest.raises(PaymentRejected):
        gateway.payment_get(payment_id="sbx_nope")


def test_state_is_shared_by_every_process_and_settled_by_a_reader(received, settings):
    """A second provider (another process: no timers, no memory of the first) sees the payment,
    and settles it when its settling time has passed and the first process's timer is gone."""
    settings.PAYMENT_SANDBOX_DELAY_SECONDS = 60
    payment = create("k-1")
    sandbox.provider().close()  # the creating process dies before its timer fires
    other = sandbox.SandboxPaymentProvider()
    assert other.get_payment(payment_id=payment.payment_id).status == "pending"
    assert (
        other.create_payment(
            idempotency_key="k-1",
            booking_id="b-1",
            amount=Decimal("45"),
            currency="EUR",
            description="checkup",
            customer_id="owner-1",
        ).payment_id
        == payment.payment_id
    )
    SandboxPayment.objects.filter(payment_id=payment.payment_id).update(settles_at=timezone.now())
    assert other.get_payment(payment_id=payment.payment_id).status == "succeeded"
