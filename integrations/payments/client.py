"""HTTP client of the Payment Service: its three endpoints and their answers, on the shared
resilient HTTP stack (`integrations/http.py`): API key, PAYMENT_TIMEOUT_SECONDS per attempt,
the `payment_service` retry policy (timeouts, 5xx, 429 with its Retry-After, and refused or
reset connections: one Idempotency-Key for every attempt makes a repeat harmless) within
PAYMENT_TOTAL_DEADLINE_SECONDS, so a hanging provider costs the caller a bounded time; the
payment-service circuit breaker; failures as PaymentServiceUnavailable (503).

Wire format: `POST /api/v1/payments/create` (header Idempotency-Key) `{"booking_id", "amount"
(decimal string), "currency", "description", "customer_id"}` -> `{"payment_id", "status":
"pending", "checkout_url"}`; `GET /api/v1/payments/{id}` -> `{"payment_id", "status",
"amount", "currency"}`; `POST /api/v1/payments/{id}/refund` -> `{"payment_id", "status"}`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import httpx
from django.conf import settings
from tenacity import RetryCallState

from petpro_booking.core import metrics
from petpro_booking.core.breaker import WindowedCircuitBreaker
from petpro_booking.core.health import register_check
from petpro_booking.core.parsers import UntrustedJSONError, check_untrusted
from petpro_booking.core.retrying import RetryPolicy, retry_policy

from ..http import PROVIDER_ERROR, Failure, MalformedAnswer, ServiceHTTP
from .gateway import (
    PROVIDER_STATUSES,
    CreatedPayment,
    PaymentRejected,
    PaymentServiceUnavailable,
    PaymentState,
    RefundResult,
)

T = TypeVar("T")

API_PREFIX = "/api/v1/payments"

breaker = WindowedCircuitBreaker("payment-service")
register_check(
    "payment_service",
    lambda: breaker.health() if settings.PAYMENT_SERVICE_URL else {"status": "not_configured"},
)


def _unavailable(failure: Failure) -> PaymentServiceUnavailable:
    details: dict[str, Any] = {"reason": failure.reason}
    if failure.status is not None and failure.reason == PROVIDER_ERROR:
        details["provider_status"] = failure.status
    return PaymentServiceUnavailable(failure.message, **details)


class PaymentServiceClient:
    """One configuration of the Payment Service (base URL, key, timeout, retry policy);
    thread-safe."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 3.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry
        self.http = ServiceHTTP(
            dependency="payment service",
            breaker=breaker,
            retry_policy_name="payment_service",
            headers={"X-API-Key": api_key},
            base_url=base_url,
            retry_rate_limited=True,
            retry_unreachable=True,
            error=_unavailable,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    # --- the three operations -------------------------------------------------------------

    def create_payment(
        self,
        *,
        idempotency_key: str,
        booking_id: str,
        amount: Decimal,
        currency: str,
        description: str,
        customer_id: str,
    ) -> CreatedPayment:
        def created(body: dict[str, Any]) -> CreatedPayment:
            return CreatedPayment(
                payment_id=_required_str(body, "payment_id"),
                status=_status(body, default="pending"),
                checkout_url=str(body.get("checkout_url") or ""),
                payload=body,
            )

        return self._call(
            "create",
            "POST",
            f"{API_PREFIX}/create",
            parse=created,
            json={
                "booking_id": booking_id,
                "amount": f"{Decimal(amount):.2f}",
                "currency": currency,
                "description": description,
                "customer_id": customer_id,
            },
            idempotency_key=idempotency_key,
        )

    def get_payment(self, *, payment_id: str) -> PaymentState:
        def state(body: dict[str, Any]) -> PaymentState:
            try:
                amount = Decimal(str(body.get("amount")))
            except InvalidOperation as exc:
                raise MalformedAnswer(
                    "The payment service gave an answer without a valid amount."
                ) from exc
            if not amount.is_finite():  # "NaN", "sNaN", "Infinity": no amount to compare
                raise MalformedAnswer("The payment service gave an answer without a valid amount.")
            return PaymentState(
                payment_id=_required_str(body, "payment_id"),
                status=_status(body),
                amount=amount,
                currency=str(body.get("currency") or "").upper(),
                payload=body,
            )

        return self._call("get", "GET", f"{API_PREFIX}/{payment_id}", parse=state)

    def refund_payment(self, *, payment_id: str, idempotency_key: str) -> RefundResult:
        def refunded(body: dict[str, Any]) -> RefundResult:
            return RefundResult(
                payment_id=str(body.get("payment_id") or payment_id),
                status=_status(body, default="refunded"),
                payload=body,
            )

        return self._call(
            "refund",
            "POST",
            f"{API_PREFIX}/{payment_id}/refund",
            parse=refunded,
            json={},
            idempotency_key=idempotency_key,
        )

    # --- one call -------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Callable[[dict[str, Any]], T],
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> T:
        # Built once, before the first attempt: every retry sends the very same key.
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}

        def counted(outcome: str) -> None:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome=outcome).inc()

        def retried(state: RetryCallState) -> None:
            counted("retried")

        def failed(failure: Failure) -> None:
            counted("failed")

        reply = self.http.call(
            method,
            path,
            timeout=self.timeout,
            parse=lambda response: parse(_json_object(response)),
            policy=self.retry,
            headers=headers,
            json=json,
            on_retry=retried,
            on_failure=failed,
        )
        if reply.body is None:  # a 4xx other than 429: retrying will not help
            counted("failed")
            raise PaymentRejected(provider_status=reply.status)
        counted("ok")
        return reply.body


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise MalformedAnswer("The payment service gave an answer that is not JSON.") from exc
    if not isinstance(body, dict):
        raise MalformedAnswer("The payment service gave an unexpected answer.")
    try:
        check_untrusted(body)  # its ids go into our columns as they are: no NUL, no surrogate
    except UntrustedJSONError as exc:
        raise MalformedAnswer(f"The payment service's answer is refused: {exc}.") from exc
    return body


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not value:
        raise MalformedAnswer(f"The payment service answer has no {key}.")
    return str(value)


def _status(body: dict[str, Any], *, default: str | None = None) -> str:
    status = str(body.get("status") or default or "")
    if status == "processing":  # 3-D Secure, a bank transfer under way: still pending to us
        return "pending"
    if status not in PROVIDER_STATUSES:
        raise MalformedAnswer(f"The payment service answered an unknown status {status!r}.")
    return status


_clients: dict[tuple, PaymentServiceClient] = {}
_clients_lock = threading.Lock()


def client_for_settings() -> PaymentServiceClient:
    """The client for the current settings (one per configuration, so pooled connections are
    reused and a test that overrides the settings gets its own)."""
    policy = retry_policy("payment_service")
    key = (
        settings.PAYMENT_SERVICE_URL,
        settings.PAYMENT_API_KEY,
        settings.PAYMENT_TIMEOUT_SECONDS,
        policy,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = PaymentServiceClient(
                base_url=settings.PAYMENT_SERVICE_URL,
                api_key=settings.PAYMENT_API_KEY,
                timeout=settings.PAYMENT_TIMEOUT_SECONDS,
                retry=policy,
            )
            _clients[key] = client
        return client
