"""The client against a real HTTP stub of the Payment Service (127.0.0.1, in-process)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from integrations.payments import gateway
from integrations.payments.gateway import PaymentRejected, PaymentServiceUnavailable


def create(key: str = "idem-1"):
    return gateway.payment_create(
        idempotency_key=key,
        booking_id="b-1",
        amount=Decimal("45.00"),
        currency="EUR",
        description="checkup",
        customer_id="owner-1",
    )


def test_lost_answers_are_retried_and_the_provider_keeps_one_payment(payment_stub):
    payment_stub.fail_next = 2
    payment_stub.fail_after_create = True  # the payment exists, only the answers are lost

    payment = create()

    assert list(payment_stub.payments) == [payment.payment_id]
    assert [r.idempotency_key for r in payment_stub.create_requests] == ["idem-1"] * 3


def test_a_later_call_with_the_same_key_gets_the_same_payment(payment_stub):
    first = create()
    again = create()

    assert again.payment_id == first.payment_id
    assert len(payment_stub.payments) == 1


def test_rate_limited_then_served(payment_stub):
    payment_stub.rate_limit_next = 2

    assert create().status == "pending"
    assert len(payment_stub.create_requests) == 3


def test_a_hanging_provider_fails_within_the_total_deadline(payment_stub, settings):
    payment_stub.hang_seconds = 5.0

    started = time.monotonic()
    with pytest.raises(PaymentServiceUnavailable) as caught:
        create()
    elapsed = time.monotonic() - started

    assert elapsed < settings.PAYMENT_TOTAL_DEADLINE_SECONDS + 0.3
    assert caught.value.details["reason"] == "timeout"


def test_a_provider_that_is_down_fails_fast(payment_stub, settings):
    payment_stub.stop()

    started = time.monotonic()
    with pytest.raises(PaymentServiceUnavailable) as caught:
        create()

    assert time.monotonic() - started < settings.PAYMENT_TOTAL_DEADLINE_SECONDS
    assert caught.value.details["reason"] == "unreachable"


def test_a_wrong_api_key_is_a_final_refusal(payment_stub, settings):
    settings.PAYMENT_API_KEY = "wrong"

    with pytest.raises(PaymentRejected) as caught:
        create()

    assert caught.value.provider_status == 401
    assert len(payment_stub.create_requests) == 1


def test_get_and_refund_speak_the_wire_format(payment_stub):
    payment = create()
    payment_stub.settle(payment.payment_id, "succeeded")

    state = gateway.payment_get(payment_id=payment.payment_id)
    refund = gateway.payment_refund(
        payment_id=payment.payment_id, idempotency_key=f"refund-{payment.payment_id}"
    )

    assert (state.status, state.amount, state.currency) == ("succeeded", Decimal("45.00"), "EUR")
    assert refund.status == "refunded"
    assert payment_stub.payments[payment.payment_id]["status"] == "refunded"


def test_an_unknown_payment_is_a_refusal(payment_stub):
    with pytest.raises(PaymentRejected) as caught:
        gateway.payment_get(payment_id="pay_nope")

    assert caught.value.provider_status == 404


@pytest.mark.slow
def test_with_the_default_timings_a_hanging_provider_answers_within_10_seconds(
    payment_stub, settings
):
    """The contract: 3000 ms per attempt, three retries, and still under 10 s in total."""
    settings.PAYMENT_TIMEOUT_SECONDS = 3.0
    settings.PAYMENT_RETRY_BACKOFF_SECONDS = 0.2
    settings.PAYMENT_TOTAL_DEADLINE_SECONDS = 8.0
    payment_stub.hang_seconds = 30.0

    started = time.monotonic()
    with pytest.raises(PaymentServiceUnavailable):
        create()
    elapsed = time.monotonic() - started

    assert 6.0 < elapsed < 10.0
