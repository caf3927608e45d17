"""Our service-to-service token: iss = sub = booking-service, roles [service], exp at most
5 min away (docs/security.md), reused until near its expiry."""

from __future__ import annotations

import time

import jwt

from petpro_booking.core import service_tokens
from petpro_booking.core.service_tokens import service_token


def claims_of(token: str, key: str, **options: bool) -> dict:
    return jwt.decode(token, key, algorithms=["HS256"], options={"verify_aud": False, **options})


def test_token_claims(settings):
    settings.SERVICE_JWT_SIGNING_KEY = "a-service-key-of-at-least-32-bytes!!"

    claims = claims_of(service_token(audience="user-service"), settings.SERVICE_JWT_SIGNING_KEY)

    assert claims["iss"] == claims["sub"] == "booking-service"
    assert claims["roles"] == ["service"]
    assert claims["exp"] - claims["iat"] == 300


def test_token_is_reused_until_near_expiry_and_follows_a_new_key(settings, monkeypatch):
    settings.SERVICE_JWT_SIGNING_KEY = "first-service-key-of-at-least-32-bytes"
    start = time.time()
    monkeypatch.setattr(service_tokens.time, "time", lambda: start)
    first = service_token(audience="user-service")

    monkeypatch.setattr(service_tokens.time, "time", lambda: start + 239)
    assert (
        service_token(audience="user-service") == first
    )  # 61 s left: still good for a call and its retries
    monkeypatch.setattr(service_tokens.time, "time", lambda: start + 241)
    renewed = service_token(audience="user-service")
    assert renewed != first
    claims = claims_of(renewed, settings.SERVICE_JWT_SIGNING_KEY, verify_iat=False)
    assert claims["exp"] == int(start + 241) + 300

    settings.SERVICE_JWT_SIGNING_KEY = "rotated-service-key-of-at-least-32-bytes"
    rotated = service_token(audience="user-service")
    claims = claims_of(rotated, "rotated-service-key-of-at-least-32-bytes", verify_iat=False)
    assert claims["sub"] == "booking-service"


def test_lifetime_setting_is_capped_at_five_minutes(settings):
    settings.SERVICE_JWT_SIGNING_KEY = "capped-service-key-of-at-least-32-bytes"
    settings.SERVICE_JWT_LIFETIME_SECONDS = 3600

    claims = claims_of(service_token(audience="user-service"), settings.SERVICE_JWT_SIGNING_KEY)

    assert claims["exp"] - claims["iat"] == 300
