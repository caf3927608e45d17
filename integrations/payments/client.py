"""HTTP client of the Payment Service (DESIGN.md §7): API key, per-attempt timeout, bounded
retries with exponential backoff and jitter, one Idempotency-Key for every attempt, and a total
deadline so a hanging provider costs the caller a bounded time."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from django.conf import settings
from tenacity import RetryCallState, retry_if_exception_type

from petpro_booking.core import metrics
from petpro_booking.core.retrying import EQUAL, RetryPolicy

from .gateway import (
    PROVIDER_STATUSES,
    CreatedPayment,
    PaymentRejected,
    PaymentServiceUnavailable,
    PaymentState,
    RefundResult,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/payments"


class RetryableStatus(Exception):
    """A 429 or 5xx answer: worth another attempt while the budget lasts."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"payment service answered {response.status_code}")
        self.response = response


# Timeouts, 5xx and 429 are retried. Network errors (refused or reset connections) are too:
# the request either never arrived or its answer was lost, and the Idempotency-Key makes a
# repeat harmless. Any other 4xx is final.
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, RetryableStatus)


def _retry_after_seconds(retry_state: RetryCallState) -> float:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    if not isinstance(exc, RetryableStatus):
        return 0.0
    value = exc.response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


class PaymentServiceClient:
    """Talks the §7 wire format. Thread-safe; keeps one pooled httpx.Client."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 3.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        backoff_max: float = 2.0,
        total_deadline: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.total_deadline = total_deadline
        self.retry = RetryPolicy(
            attempts=1 + max_retries,
            base=backoff,
            cap=backoff_max,
            jitter=EQUAL,
            deadline=total_deadline,
        )
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "X-API-Key": api_key,
                "Accept": "application/json",
                "User-Agent": "petpro-booking-service",
            },
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

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
        body = self._call(
            "create",
            "POST",
            f"{API_PREFIX}/create",
            json={
                "booking_id": booking_id,
                "amount": f"{Decimal(amount):.2f}",
                "currency": currency,
                "description": description,
                "customer_id": customer_id,
            },
            idempotency_key=idempotency_key,
        )
        payment_id = _required_str(body, "payment_id")
        return CreatedPayment(
            payment_id=payment_id,
            status=_status(body, default="pending"),
            checkout_url=str(body.get("checkout_url") or ""),
            payload=body,
        )

    def get_payment(self, *, payment_id: str) -> PaymentState:
        body = self._call("get", "GET", f"{API_PREFIX}/{payment_id}")
        try:
            amount = Decimal(str(body.get("amount")))
        except InvalidOperation as exc:
            raise PaymentServiceUnavailable(
                "The payment service gave an answer without a valid amount."
            ) from exc
        return PaymentState(
            payment_id=_required_str(body, "payment_id"),
            status=_status(body),
            amount=amount,
            currency=str(body.get("currency") or "").upper(),
            payload=body,
        )

    def refund_payment(self, *, payment_id: str, idempotency_key: str) -> RefundResult:
        body = self._call(
            "refund",
            "POST",
            f"{API_PREFIX}/{payment_id}/refund",
            json={},
            idempotency_key=idempotency_key,
        )
        return RefundResult(
            payment_id=str(body.get("payment_id") or payment_id),
            status=_status(body, default="refunded"),
            payload=body,
        )

    # --- one call, its retries and its deadline --------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self.total_deadline
        # Built once, before the first attempt: every retry sends the very same key.
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}

        def attempt() -> httpx.Response:
            remaining = deadline - time.monotonic()
            timeout = max(0.01, min(self.timeout, remaining))
            response = self._http.request(method, path, json=json, headers=headers, timeout=timeout)
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableStatus(response)
            return response

        def before_sleep(retry_state: RetryCallState) -> None:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="retried").inc()
            outcome = retry_state.outcome
            logger.warning(
                "payment service %s attempt %d failed (%s); retrying in %.2fs",
                operation,
                retry_state.attempt_number,
                outcome.exception() if outcome is not None else "?",
                retry_state.upcoming_sleep,
            )

        retrying = self.retry.retrying(
            retry=retry_if_exception_type(RETRYABLE),
            before_sleep=before_sleep,
            at_least=_retry_after_seconds,  # a 429's Retry-After, when longer than the pause
        )
        try:
            response = retrying(attempt)
        except httpx.TimeoutException as exc:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="failed").inc()
            raise PaymentServiceUnavailable(
                "The payment service did not answer in time; try again shortly.",
                reason="timeout",
            ) from exc
        except RetryableStatus as exc:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="failed").inc()
            raise PaymentServiceUnavailable(
                "The payment service is unavailable; try again shortly.",
                reason="provider_error",
                provider_status=exc.response.status_code,
            ) from exc
        except httpx.HTTPError as exc:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="failed").inc()
            raise PaymentServiceUnavailable(
                "The payment service cannot be reached; try again shortly.",
                reason="unreachable",
            ) from exc

        if response.status_code >= 400:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="failed").inc()
            raise PaymentRejected(provider_status=response.status_code)
        try:
            body = response.json()
        except ValueError as exc:
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="failed").inc()
            raise PaymentServiceUnavailable(
                "The payment service gave an answer that is not JSON.", reason="bad_answer"
            ) from exc
        if not isinstance(body, dict):
            metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="failed").inc()
            raise PaymentServiceUnavailable(
                "The payment service gave an unexpected answer.", reason="bad_answer"
            )
        metrics.PAYMENT_PROVIDER_CALLS.labels(operation=operation, outcome="ok").inc()
        return body


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not value:
        raise PaymentServiceUnavailable(
            f"The payment service answer has no {key}.", reason="bad_answer"
        )
    return str(value)


def _status(body: dict[str, Any], *, default: str | None = None) -> str:
    status = str(body.get("status") or default or "")
    if status == "processing":  # 3-D Secure, a bank transfer under way: still pending to us
        return "pending"
    if status not in PROVIDER_STATUSES:
        raise PaymentServiceUnavailable(
            f"The payment service answered an unknown status {status!r}.", reason="bad_answer"
        )
    return status


_clients: dict[tuple, PaymentServiceClient] = {}
_clients_lock = threading.Lock()


def client_for_settings() -> PaymentServiceClient:
    """The client for the current settings (one per configuration, so pooled connections are
    reused and a test that overrides the settings gets its own)."""
    key = (
        settings.PAYMENT_SERVICE_URL,
        settings.PAYMENT_API_KEY,
        settings.PAYMENT_TIMEOUT_SECONDS,
        settings.PAYMENT_MAX_RETRIES,
        settings.PAYMENT_RETRY_BACKOFF_SECONDS,
        settings.PAYMENT_TOTAL_DEADLINE_SECONDS,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = PaymentServiceClient(
                base_url=settings.PAYMENT_SERVICE_URL,
                api_key=settings.PAYMENT_API_KEY,
                timeout=settings.PAYMENT_TIMEOUT_SECONDS,
                max_retries=settings.PAYMENT_MAX_RETRIES,
                backoff=settings.PAYMENT_RETRY_BACKOFF_SECONDS,
                total_deadline=settings.PAYMENT_TOTAL_DEADLINE_SECONDS,
            )
            _clients[key] = client
        return client
