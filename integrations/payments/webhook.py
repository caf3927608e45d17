"""The Payment Service's webhook: signing, constant-time verification and parsing (`X-Signature:
sha256=<hex HMAC-SHA256 of the raw body>`, docs/payments.md)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from petpro_booking.core.parsers import UntrustedJSONError, loads_untrusted

SIGNATURE_PREFIX = "sha256="
EVENT_TYPES = frozenset({"payment.succeeded", "payment.failed", "payment.refunded"})


def webhook_sign(*, body: bytes, secret: str) -> str:
    """The `X-Signature` header value for this exact body: `sha256=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


def webhook_signature_valid_any(
    *, body: bytes, signature: str | None, secrets: tuple[str, ...]
) -> bool:
    """Valid under any of `secrets` (the current one and, during a rollover, the previous);
    every secret is tried, so the time taken does not tell which one matched."""
    results = [webhook_signature_valid(body=body, signature=signature, secret=s) for s in secrets]
    return any(results)


def webhook_signature_valid(*, body: bytes, signature: str | None, secret: str) -> bool:
    """True only when `signature` is the HMAC of the raw `body` (as received, before any JSON
    parsing) under `secret`. Compared in constant time; no secret means nothing is valid."""
    if not signature or not secret:
        return False
    expected = webhook_sign(body=body, secret=secret).encode()
    received = signature.strip().lower().encode("utf-8", "replace")  # hex case is no secret
    return hmac.compare_digest(expected, received)


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: str
    payment_id: str
    booking_id: str
    amount: Decimal
    currency: str
    occurred_at: str
    payload: dict[str, Any]


class WebhookMalformed(ValueError):
    """A correctly signed body that is not a webhook event we understand."""


# Fields read as text: a string or a number (an id, a Unix time), at most this long as text
# (our columns).
_TEXT_FIELDS = {"event_id": 100, "type": 64, "payment_id": 100, "currency": 3}
_OPTIONAL_TEXT_FIELDS = {"booking_id": 64, "occurred_at": 64}


def _text_fields_problem(payload: dict[str, Any]) -> str | None:
    for key, limit in (*_TEXT_FIELDS.items(), *_OPTIONAL_TEXT_FIELDS.items()):
        value = payload.get(key)
        if value is None or (key in _OPTIONAL_TEXT_FIELDS and value == ""):
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return f"{key} is not a string or a number"
        if len(str(value)) > limit:
            return f"{key} is longer than {limit} characters"
    return None


def webhook_event_parse(body: bytes) -> WebhookEvent:
    try:
        payload = loads_untrusted(body)
    except UntrustedJSONError as exc:
        raise WebhookMalformed(f"the body is refused: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookMalformed("the body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookMalformed("the body is not a JSON object")
    required = ("event_id", "type", "payment_id", "amount", "currency")
    missing = [key for key in required if not payload.get(key)]
    if missing:
        raise WebhookMalformed(f"missing fields: {', '.join(missing)}")
    problem = _text_fields_problem(payload)
    if problem:
        raise WebhookMalformed(problem)
    if payload["type"] not in EVENT_TYPES:
        raise WebhookMalformed(f"unknown event type {payload['type']!r}")
    try:
        amount = Decimal(str(payload["amount"]))
    except InvalidOperation as exc:
        raise WebhookMalformed("amount is not a decimal") from exc
    if not amount.is_finite():
        raise WebhookMalformed("amount is not a finite decimal")
    return WebhookEvent(
        event_id=str(payload["event_id"]),
        type=str(payload["type"]),
        payment_id=str(payload["payment_id"]),
        booking_id=str(payload.get("booking_id") or ""),
        amount=amount,
        currency=str(payload["currency"]).upper(),
        occurred_at=str(payload.get("occurred_at") or ""),
        payload=payload,
    )
