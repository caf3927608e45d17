"""Sandbox Payment Service for the embedded default (PAYMENT_SERVICE_URL unset).

It behaves like the real provider seen from our side: creating a payment answers `pending` with a
checkout URL (idempotent by Idempotency-Key), and a moment later (PAYMENT_SANDBOX_DELAY_SECONDS)
the payment settles with PAYMENT_SANDBOX_OUTCOME and a correctly signed webhook is delivered to
this service. Celery runs eagerly in the embedded default, so "a moment later" is a timer thread,
not a countdown task. Payments live in the database (`sandbox_payments`), so every process of the
embedded or compose stack sees them; a payment whose timer died with its process is settled by
the next reader (reconciliation). Delivery goes over HTTP to PAYMENT_SANDBOX_WEBHOOK_URL when
set, otherwise straight to the handler that the bookings app registered (same signature check,
no port to guess).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from tenacity import retry_if_result

from integrations.models import SandboxPayment
from petpro_booking.core.retrying import retry_policy

from .gateway import CreatedPayment, PaymentRejected, PaymentState, RefundResult
from .webhook import webhook_sign

logger = logging.getLogger(__name__)

CHECKOUT_BASE_URL = "https://sandbox.payments.petpro.invalid/checkout/"

# Called with the raw body and the X-Signature header, exactly like the HTTP endpoint.
WebhookReceiver = Callable[[bytes, str], object]
_receiver: WebhookReceiver | None = None


def webhook_receiver_register(receiver: WebhookReceiver) -> None:
    """The bookings app registers its webhook handler here (integrations never import apps)."""
    global _receiver
    _receiver = receiver


class SandboxPaymentProvider:
    """The provider's state is the `sandbox_payments` table (every process sees it); the
    timers that settle and deliver a moment later are this process's own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
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
        delay = settings.PAYMENT_SANDBOX_DELAY_SECONDS
        try:
            with transaction.atomic():
                payment, created = SandboxPayment.objects.get_or_create(
                    idempotency_key=idempotency_key,
                    defaults={
                        "payment_id": f"sbx_{uuid.uuid4().hex}",
                        "booking_id": booking_id,
                        "amount": Decimal(amount).quantize(Decimal("0.01")),
                        "currency": currency,
                        "settles_at": timezone.now() + dt.timedelta(seconds=delay),
                    },
                )
        except IntegrityError:  # the same key created by a concurrent request meanwhile
            payment, created = SandboxPayment.objects.get(idempotency_key=idempotency_key), False
        if created:
            transaction.on_commit(
                lambda: self._later(delay, self._settle, payment.payment_id), robust=True
            )
        return self._created(payment)

    def get_payment(self, *, payment_id: str) -> PaymentState:
        payment = self._known(payment_id)
        if payment.status == "pending" and payment.settles_at <= timezone.now():
            # Its settling timer ran in a process that is gone: settle it now (what the real
            # provider would report by then); reconciliation applies the outcome.
            self._mark_settled(payment_id)
            payment = self._known(payment_id)
        return PaymentState(
            payment_id=payment.payment_id,
            status=payment.status,
            amount=payment.amount,
            currency=payment.currency,
            payload=self._state_body(payment),
        )

    def refund_payment(self, *, payment_id: str, idempotency_key: str) -> RefundResult:
        self._known(payment_id)
        newly_refunded = (
            SandboxPayment.objects.filter(payment_id=payment_id)
            .exclude(status="refunded")
            .update(status="refunded")
        )
        if newly_refunded:
            transaction.on_commit(
                lambda: self._later(0.0, self._deliver, payment_id, "payment.refunded"),
                robust=True,
            )
        return RefundResult(
            payment_id=payment_id,
            status="refunded",
            payload={"payment_id": payment_id, "status": "refunded"},
        )

    @staticmethod
    def _known(payment_id: str) -> SandboxPayment:
        payment = SandboxPayment.objects.filter(payment_id=payment_id).first()
        if payment is None:
            raise PaymentRejected("The sandbox knows no such payment.", provider_status=404)
        return payment

    @staticmethod
    def _outcome() -> str:
        outcome = settings.PAYMENT_SANDBOX_OUTCOME
        return outcome if outcome in ("succeeded", "failed") else "succeeded"

    def _mark_settled(self, payment_id: str) -> str | None:
        """Settle a pending payment once (a conditional UPDATE: one process wins)."""
        outcome = self._outcome()
        changed = SandboxPayment.objects.filter(payment_id=payment_id, status="pending").update(
            status=outcome
        )
        return outcome if changed else None

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
    def _state_body(payment: SandboxPayment) -> dict[str, Any]:
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
        try:
            outcome = self._mark_settled(payment_id)
        finally:
            connections.close_all()  # this thread's own database connections
        if outcome is not None:
            self._deliver(payment_id, f"payment.{outcome}")

    def _deliver(self, payment_id: str, event_type: str) -> None:
        try:
            payment = SandboxPayment.objects.get(payment_id=payment_id)
        finally:
            connections.close_all()  # this thread's own database connections
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
            retrying = retry_policy("sandbox_webhook").retrying(
                retry=retry_if_result(lambda delivered: not delivered),
                retry_error_callback=lambda state: False,
            )
            if retrying(self._deliver_once, body, signature):
                return
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
