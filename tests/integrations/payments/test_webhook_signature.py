"""Webhook signing and verification over the raw body, and parsing of the §7 event."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from integrations.payments.webhook import (
    WebhookMalformed,
    webhook_event_parse,
    webhook_sign,
    webhook_signature_valid,
)

SECRET = "s3cret"
BODY = json.dumps(
    {
        "event_id": "evt_1",
        "type": "payment.succeeded",
        "payment_id": "pay_1",
        "booking_id": "b-1",
        "amount": "45.00",
        "currency": "eur",
        "occurred_at": "2026-01-01T10:00:00+00:00",
    }
).encode()


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body():
    # Known answer from openssl: printf '%s' '{}' | openssl dgst -sha256 -hmac s3cret
    assert webhook_sign(body=b"{}", secret=SECRET) == (
        "sha256=adbde1ce40c89c14215687d5d762a47df6dfaefcfad61e2e86718ffc8498571b"
    )
    assert webhook_signature_valid(
        body=BODY, signature=webhook_sign(body=BODY, secret=SECRET), secret=SECRET
    )


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        webhook_sign(body=BODY, secret="other-secret"),
        webhook_sign(body=BODY + b" ", secret=SECRET),  # signed a different body
        webhook_sign(body=BODY, secret=SECRET).removeprefix("sha256="),
        "sha256=ünïcode",
    ],
)
def test_missing_or_wrong_signatures_are_refused(signature):
    assert not webhook_signature_valid(body=BODY, signature=signature, secret=SECRET)


def test_upper_case_hex_is_the_same_signature():
    signature = webhook_sign(body=BODY, secret=SECRET)
    assert webhook_signature_valid(body=BODY, signature=signature.upper(), secret=SECRET)


def test_re_serialised_json_does_not_verify_only_the_raw_bytes_do():
    signature = webhook_sign(body=BODY, secret=SECRET)
    reserialised = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    assert not webhook_signature_valid(body=reserialised, signature=signature, secret=SECRET)


def test_no_secret_configured_means_nothing_verifies():
    assert not webhook_signature_valid(
        body=BODY, signature=webhook_sign(body=BODY, secret=""), secret=""
    )


def test_parse_reads_the_event():
    event = webhook_event_parse(BODY)
    assert (event.event_id, event.type, event.payment_id, event.booking_id) == (
        "evt_1",
        "payment.succeeded",
        "pay_1",
        "b-1",
    )
    assert (event.amount, event.currency) == (Decimal("45.00"), "EUR")


def test_parse_reads_numbers_where_a_provider_may_send_them():
    """Ids and the time as numbers are read as their text (the columns are text)."""
    body = json.dumps(
        {
            "event_id": 981,
            "type": "payment.succeeded",
            "payment_id": 77,
            "amount": 45,
            "currency": "EUR",
            "occurred_at": 1733472000.25,
        }
    ).encode()
    event = webhook_event_parse(body)
    assert (event.event_id, event.payment_id, event.occurred_at) == ("981", "77", "1733472000.25")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"event_id": "e", "type": "payment.succeeded"}).encode(),
        json.dumps(
            {
                "event_id": "e",
                "type": "payment.exploded",
                "payment_id": "p",
                "amount": "1",
                "currency": "EUR",
            }
        ).encode(),
        json.dumps(
            {
                "event_id": "e",
                "type": "payment.failed",
                "payment_id": "p",
                "amount": "lots",
                "currency": "EUR",
            }
        ).encode(),
    ],
)
def test_parse_refuses_what_is_not_a_known_event(body):
    with pytest.raises(WebhookMalformed):
        webhook_event_parse(body)
