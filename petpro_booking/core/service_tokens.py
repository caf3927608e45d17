"""Our service-to-service JWT (HS256, iss = sub = booking-service): short-lived, signed once
and reused until near expiry."""

from __future__ import annotations

import threading
import time

import jwt
from django.conf import settings

from .principal import ROLE_SERVICE, SYSTEM

ISSUER = SYSTEM.sub  # "booking-service": both `iss` and `sub`
MAX_LIFETIME_SECONDS = 300  # the other services accept exp at most 5 min away
# A cached token is replaced once less than this is left, so it never expires in flight
# (a call plus its retries lasts at most a few seconds).
REFRESH_MARGIN_SECONDS = 60

_lock = threading.Lock()
# (signing key, audience) -> (token, expires at, epoch seconds)
_cached: dict[tuple[str, str], tuple[str, float]] = {}


def service_token(*, audience: str) -> str:
    """A bearer token for calls to the PetPro service `audience` (its `aud`), cached per
    process: a token stolen from one callee cannot be replayed against another."""
    key = settings.SERVICE_JWT_SIGNING_KEY
    lifetime = min(MAX_LIFETIME_SECONDS, settings.SERVICE_JWT_LIFETIME_SECONDS)
    now = time.time()
    with _lock:
        cached = _cached.get((key, audience))
        if cached is not None and cached[1] - now > min(REFRESH_MARGIN_SECONDS, lifetime / 2):
            return cached[0]
        issued_at = int(now)
        expires_at = issued_at + lifetime
        token = jwt.encode(
            {
                "iss": ISSUER,
                "sub": ISSUER,
                "aud": audience,
                "roles": [ROLE_SERVICE],
                "iat": issued_at,
                "exp": expires_at,
            },
            key,
            algorithm="HS256",
        )
        for stale in [k for k in _cached if k[0] != key]:
            del _cached[stale]  # one key in use at a time; a rotated key drops the old tokens
        _cached[(key, audience)] = (token, float(expires_at))
        return token
