"""One entry point for the Payment Service; settings choose HTTP client or sandbox provider."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

from petpro_booking.core.errors import DependencyUnavailable

DEPENDENCY = "payment service"
PROVIDER_STATUSES = frozenset({"pending", "succeeded", "failed", "refunded"})


class PaymentServiceUnavailable(DependencyUnavailable):
    """The Payment Service did not answer usefully in time (timeouts, 5xx, 429, bad answer)."""

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(DEPENDENCY, message)
        self.details.update(details)


class PaymentRejected(PaymentServiceUnavailable):
    """The Payment Service refused the request (a 4xx other than 429); retrying will not help."""

    def __init__(self, message: str | None = None, *, provider_status: int) -> None:
        super().__init__(
            message or "The payment service refused the request.",
            provider_status=provider_status,
        )
        self.provider_status = provider_status


@dataclass(frozen=True)
class CreatedPayment:
    payment_id: str
    status: str
    checkout_url: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class PaymentState:
    payment_id: str
    status: str
    amount: Decimal
    currency: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class RefundResult:
    payment_id: str
    status: str
    payload: dict[str, Any]


class PaymentProvider(Protocol):
    def create_payment(
        self,
        *,
        idempotency_key: str,
        booking_id: str,
        amount: Decimal,
        currency: str,
        description: str,
        customer_id: str,
    ) -> CreatedPayment: ...

    def get_payment(self, *, payment_id: str) -> PaymentState: ...

    def refund_payment(self, *, payment_id: str, idempotency_key: str) -> RefundResult: ...


def _provider() -> PaymentProvider:
    if settings.PAYMENT_SERVICE_URL:
        from . import client

        return client.client_for_settings()
    from . import sandbox

    return sandbox.provider()


def payment_create(
    *,
    idempotency_key: str,
    booking_id: str,
    amount: Decimal,
    currency: str,
    description: str,
    customer_id: str,
) -> CreatedPayment:
    """Ask for a payment. The caller fixes `idempotency_key` once and reuses it on every retry,
    so the provider creates one payment however often this is called for the same attempt."""
    return _provider().create_payment(
        idempotency_key=idempotency_key,
        booking_id=booking_id,
        amount=amount,
        currency=currency,
        description=description,
        customer_id=customer_id,
    )


def payment_get(*, payment_id: str) -> PaymentState:
    return _provider().get_payment(payment_id=payment_id)


def payment_refund(*, payment_id: str, idempotency_key: str) -> RefundResult:
    return _provider().refund_payment(payment_id=payment_id, idempotency_key=idempotency_key)
