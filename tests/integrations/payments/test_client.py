"""Unit tests of the Payment Service client's retry, timeout and idempotency rules (respx)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import pytest
import respx

from integrations.payments.client import PaymentServiceClient
from integrations.payments.gateway import PaymentRejected, PaymentServiceUnavailable
from petpro_booking.core.retrying import EQUAL, RetryPolicy

BASE = "http://payments.test"
CREATE = f"{BASE}/api/v1/payments/create"
CREATED = {"payment_id": "pay_1", "status": "pending", "checkout_url": "https://pay/1"}


def make_client(*, timeout=3.0, deadline=8.0, backoff=0.001, backoff_max=0.01):
    retry = RetryPolicy(attempts=4, base=backoff, cap=backoff_max, jitter=EQUAL, deadline=deadline)
    return PaymentServiceClient(base_url=BASE, api_key="key-123", timeout=timeout, retry=retry)


def create(client: PaymentServiceClient, key: str = "idem-1"):
    return client.create_payment(
        idempotency_key=key,
        booking_id="b-1",
        amount=Decimal("45"),
        currency="EUR",
        description="PP-ABC234 checkup",
        customer_id="owner-1",
    )


@respx.mock
def test_create_sends_the_wire_format_with_api_key_and_idempotency_key():
    route = respx.post(CREATE).mock(return_value=httpx.Response(201, json=CREATED))

    payment = create(make_client())

    assert (payment.payment_id, payment.status, payment.checkout_url) == (
        "pay_1",
        "pending",
        "https://pay/1",
    )
    request = route.calls.last.request
    assert request.headers["X-API-Key"] == "key-123"
    assert request.headers["Idempotency-Key"] == "idem-1"
    assert json.loads(request.content) == {
        "booking_id": "b-1",
        "amount": "45.00",
        "currency": "EUR",
        "description": "PP-ABC234 checkup",
        "customer_id": "owner-1",
    }
    assert request.extensions["timeout"]["read"] == pytest.approx(3.0, abs=0.01)


@respx.mock
def test_5xx_is_retried_with_the_same_idempotency_key_until_it_succeeds():
    route = respx.post(CREATE).mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(502),
            httpx.Response(503),
            httpx.Response(201, json=CREATED),
        ]
    )

    payment = create(make_client())

    assert payment.payment_id == "pay_1"
    assert route.call_count == 4  # the first attempt and three retries
    assert {c.request.headers["Idempotency-Key"] for c in route.calls} == {"idem-1"}


@respx.mock
def test_429_and_timeouts_are_retried_too():
    route = respx.post(CREATE).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.ReadTimeout("slow"),
            httpx.ConnectTimeout("slow"),
            httpx.Response(201, json=CREATED),
        ]
    )

    assert create(make_client()).payment_id == "pay_1"
    assert route.call_count == 4


@respx.mock
def test_gives_up_after_three_retries_with_a_503_naming_the_payment_service():
    route = respx.post(CREATE).mock(return_value=httpx.Response(500))

    with pytest.raises(PaymentServiceUnavailable) as caught:
        create(make_client())

    assert route.call_count == 4
    assert caught.value.status_code == 503
    assert caught.value.code == "dependency_unavailable"
    assert caught.value.details["dependency"] == "payment service"
    assert caught.value.details["provider_status"] == 500


@respx.mock
def test_other_4xx_answers_are_final_and_not_retried():
    route = respx.post(CREATE).mock(return_value=httpx.Response(400, json={"error": "bad"}))

    with pytest.raises(PaymentRejected) as caught:
        create(make_client())

    assert route.call_count == 1
    assert caught.value.provider_status == 400


@respx.mock
def test_a_hanging_provider_costs_at_most_the_total_deadline():
    """Each attempt waits its read timeout and times out; the attempts' timeouts shrink to what
    is left of the budget, and no attempt starts after it."""
    seen_timeouts: list[float] = []

    def hang(request: httpx.Request):
        timeout = request.extensions["timeout"]["read"]
        seen_timeouts.append(timeout)
        time.sleep(timeout)
        raise httpx.ReadTimeout("no answer", request=request)

    respx.post(CREATE).mock(side_effect=hang)
    client = make_client(timeout=0.3, deadline=0.8, backoff=0.05, backoff_max=0.1)

    started = time.monotonic()
    with pytest.raises(PaymentServiceUnavailable) as caught:
        create(client)
    elapsed = time.monotonic() - started

    assert elapsed < 0.8 + 0.15
    assert caught.value.details["reason"] == "timeout"
    assert max(seen_timeouts) <= 0.3
    assert len(seen_timeouts) <= 4


@respx.mock
def test_network_errors_end_as_unreachable_after_the_retries():
    route = respx.post(CREATE).mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(PaymentServiceUnavailable) as caught:
        create(make_client())

    assert route.call_count == 4
    assert caught.value.details["reason"] == "unreachable"


@respx.mock
def test_an_answer_that_is_not_the_wire_format_is_a_dependency_failure():
    respx.post(CREATE).mock(return_value=httpx.Response(201, json={"status": "pending"}))

    with pytest.raises(PaymentServiceUnavailable):
        create(make_client())


@respx.mock
def test_get_payment_reads_status_amount_and_currency():
    respx.get(f"{BASE}/api/v1/payments/pay_1").mock(
        return_value=httpx.Response(
            200,
            json={"payment_id": "pay_1", "status": "succeeded", "amount": "45", "currency": "eur"},
        )
    )

    state = make_client().get_payment(payment_id="pay_1")

    assert (state.status, state.amount, state.currency) == ("succeeded", Decimal("45.00"), "EUR")


@respx.mock
def test_get_payment_with_an_unknown_status_is_refused():
    respx.get(f"{BASE}/api/v1/payments/pay_1").mock(
        return_value=httpx.Response(
            200, json={"payment_id": "pay_1", "status": "weird", "amount": "1", "currency": "EUR"}
        )
    )

    with pytest.raises(PaymentServiceUnavailable):
        make_client().get_payment(payment_id="pay_1")


@respx.mock
def test_refund_is_retried_with_one_idempotency_key():
    route = respx.post(f"{BASE}/api/v1/payments/pay_1/refund").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(200, json={"payment_id": "pay_1", "status": "refunded"}),
        ]
    )

    result = make_client().refund_payment(payment_id="pay_1", idempotency_key="refund-pay_1")

    assert result.status == "refunded"
    assert [c.request.headers["Idempotency-Key"] for c in route.calls] == ["refund-pay_1"] * 2
