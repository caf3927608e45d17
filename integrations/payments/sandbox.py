"""Sandbox Payment Service for the embedded default (PAYMENT_SERVICE_URL unset).

It behaves like the real provider seen from our side: creating a payment answers `pending` with a
checkout URL (idempotent by Idempotency-Key), and a moment later (PAYMENT_SANDBOX_DELAY_SECONDS)
the payment settles with PAYMENT_SANDBOX_OUTCOME and a correctly signed webhook is delivered to
this service. Celery runs eagerly in the embedded default, so "a moment later" is a timer thread,
not a countdown task. Delivery goes over HTTP to PAYMENT_SANDBOX_WEBHOOK_URL when set, otherwise
straight to the handler that the bookings app registered (same signature check, no port to guess).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import httpx
from django.conf import settings
from django.db import connections
from django.utils import timezone

from .gateway import CreatedPayment, PaymentRejected, PaymentState, RefundResult
from .webhook import webhook_sign

logger = logging.getLogger(__name__)

CHECKOUT_BASE_URL = "https://sandbox.payments.petpro.invalid/checkout/"
DELIVERY_ATTEMPTS = 3
DELIVERY_RETRY_SECONDS = 1.0

# Called with the raw body and the X-Signature header, exactly like the HTTP endpoint.
WebhookReceiver = Callable[[bytes, str], object]
_receiver: WebhookReceiver | None = None


def webhook_receiver_register(receiver: WebhookReceiver) -> None:
    """The bookings app registers its webhook handler here (integrations never import apps)."""
    global _receiver
    _receiver = receiver


@dataclass
class SandboxPayment:
    payment_id: str
    booking_id: str
    amount: Decimal
    currency: str
    status: str


class SandboxPaymentProvider:
    """In-memory provider; thread-safe. Its state lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payments: dict[str, SandboxPayment] = {}
        self._by_key: dict[str, str] = {}
        self._timers: set[threading.Timer] = set()

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
        with self._lock:
            known = self._by_key.get(idempotency_key)
            if known is not None:
                payment = self._payments[known]
                return self._created(payment)
            payment = SandboxPayment(
                payment_id=f"sbx_{uuid.uuid4().hex}",
                booking_id=booking_id,
                amount=Decimal(amount).quantize(Decimal("0.01")),
                currency=currency,
                status="pending",
            )
            self._payments[payment.payment_id] = payment
            self._by_key[idempotency_key] = payment.payment_id
        self._later(settings.PAYMENT_SANDBOX_DELAY_SECONDS, self._settle, payment.payment_id)
        return self._created(payment)

    def get_payment(self, *, payment_id: str) -> PaymentState:
        with self._lock:
            payment = self._payments.get(payment_id)
            if payment is None:
                raise PaymentRejected("The sandbox knows no such payment.", provider_status=404)
            return PaymentState(
                payment_id=payment.payment_id,
                status=payment.status,
                amount=payment.amount,
                currency=payment.currency,
                payload=self._state_body(payment),
            )

    def refund_payment(self, *, payment_id: str, idempotency_key: str) -> RefundResult:
        with self._lock:
            payment = self._payments.get(payment_id)
            if payment is None:
                raise PaymentRejected("The sandbox knows no such payment.", provider_status=404)
            newly_refunded = payment.status != "refunded"
            payment.status = "refunded"
        if newly_refunded:
            self._later(0.0, self._deliver, payment_id, "payment.refunded")
        return RefundResult(
            payment_id=payment_id,
            status="refunded",
            payload={"payment_id": payment_id, "status": "refunded"},
        )

    # --- settling and webhook delivery -----------------------------------------------------

    def _created(self, payment: SandboxPayment) -> CreatedPayment:
        return CreatedPayment(
            payment_id=payment.payment_id,
            status="pending",
            checkout_url=f"{CHECKOUT_BASE_URL}{payment.payment_id}",
            payload={
                "payment_id": payment.payment_id,
                "status": "pending",
                "checkout_url": f"{CHECKOUT_BASE_URL}{payment.payment_id}",
            },
        )

    @staticmethod
    def _state_body(payment: SandboxPayment) -> dict:
        return {
            "payment_id": payment.payment_id,
            "status": payment.status,
            "amount": f"{payment.amount:.2f}",
            "currency": payment.currency,
        }

    def _later(self, delay: float, fn: Callable[..., None], *args: str) -> None:
        def run() -> None:
            try:
                fn(*args)
            finally:
                with self._lock:
                    self._timers.discard(timer)

        timer = threading.Timer(max(0.0, delay), run)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def close(self) -> None:
        """Cancel settlements and deliveries not started yet (tests, shutdown)."""
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()

    def _settle(self, payment_id: str) -> None:
        outcome = settings.PAYMENT_SANDBOX_OUTCOME
        if outcome not in ("succeeded", "failed"):
            outcome = "succeeded"
        with self._lock:
            payment = self._payments[payment_id]
            if payment.status != "pending":
                return
            payment.status = outcome
        self._deliver(payment_id, f"payment.{outcome}")

    def _deliver(self, payment_id: str, event_type: str) -> None:
        with self._lock:
            payment = self._payments[payment_id]
            body = json.dumps(
                {
                    "event_id": f"evt_{uuid.uuid4().hex}",
                    "type": event_type,
                    "payment_id": payment.payment_id,
                    "booking_id": payment.booking_id,
                    "amount": f"{payment.amount:.2f}",
                    "currency": payment.currency,
                    "occurred_at": timezone.now().isoformat(),
                }
            ).encode()
        signature = webhook_sign(body=body, secret=settings.PAYMENT_WEBHOOK_SECRET)
        try:
            for attempt in range(1, DELIVERY_ATTEMPTS + 1):
                if self._deliver_once(body, signature):
                    return
                if attempt < DELIVERY_ATTEMPTS:
                    time.sleep(DELIVERY_RETRY_SECONDS * attempt)
            logger.warning(
                "sandbox: webhook %s for %s not delivered; reconciliation will settle it",
                event_type,
                payment_id,
            )
        finally:
            connections.close_all()  # this thread's own database connections

    @staticmethod
    def _deliver_once(body: bytes, signature: str) -> bool:
        url = settings.PAYMENT_SANDBOX_WEBHOOK_URL
        try:
            if url:
                response = httpx.post(
                    url,
                    content=body,
                    headers={"X-Signature": signature, "Content-Type": "application/json"},
                    timeout=5.0,
                )
                return response.status_code < 300
            if _receiver is None:
                logger.warning("sandbox: no webhook receiver registered")
                return False
            _receiver(body, signature)
            return True
        except Exception:
            logger.exception("sandbox: webhook delivery failed")
            return False


_provider: SandboxPaymentProvider | None = None
_provider_lock = threading.Lock()


def provider() -> SandboxPaymentProvider:
    global _provider
    with _provider_lock:
        if _provider is None:
            _provider = SandboxPaymentProvider()
        return _provider
