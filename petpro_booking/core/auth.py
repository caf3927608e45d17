"""Bearer-JWT authentication: HS256 with JWT_SIGNING_KEY or RS256 with JWT_PUBLIC_KEY."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import jwt
from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .local_cache import MISSING, LocalLRU
from .logging import bind_log_context
from .parsers import text_problem
from .principal import ROLES, Principal

# Ids of other services' entities (users, clinics) are stored in columns of this length.
MAX_ID_LENGTH = 64

# Tokens verified by this process, remembered so a caller's next requests skip the signature
# check and the claim parsing (about 85 µs a request). Only a token that passed every check
# is kept, keyed by the token and the verification settings it passed under, and at most
# VERIFIED_TOKEN_SECONDS or until it expires, whichever comes first. A token that once passed
# stays good until its `exp` (nothing else about it changes with time, and there is no
# revocation list to consult), so an answer from here is the answer the check would give.
VERIFIED_TOKEN_SECONDS = 120.0
VERIFIED_TOKEN_ENTRIES = 4096
_verified = LocalLRU(VERIFIED_TOKEN_ENTRIES)


def _verification() -> tuple[str, list[str]]:
    if settings.JWT_PUBLIC_KEY:
        return settings.JWT_PUBLIC_KEY, ["RS256"]
    return settings.JWT_SIGNING_KEY, ["HS256"]


def principal_from_token(token: str) -> Principal:
    """Verify signature, expiry and (when configured) issuer/audience; map claims to a Principal.
    A token this process verified a moment ago is answered from memory (`_verified`)."""
    key, algorithms = _verification()
    config = (key, settings.JWT_ISSUER, settings.JWT_AUDIENCE, settings.JWT_LEEWAY_SECONDS)
    remembered = _verified.get((token, config))
    if remembered is not MISSING:
        principal, good_until = remembered
        if time.time() < good_until:
            return principal
    principal, expires = _verify(token, key, algorithms)
    # PyJWT refuses a token once `now > exp + leeway`; keep it no longer than that.
    good_until = expires + settings.JWT_LEEWAY_SECONDS
    ttl = min(VERIFIED_TOKEN_SECONDS, good_until - time.time())
    if ttl > 0:
        _verified.set((token, config), (principal, good_until), ttl=ttl)
    return principal


def forget_verified_tokens() -> None:
    """Drop every remembered verification (tests that change keys without the settings API)."""
    _verified.clear()


def _is_id(value: object) -> bool:
    """An id of another service's entity as a claim may carry it: a string or an integer (not
    a boolean), 1 to MAX_ID_LENGTH characters, text our columns can hold."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    text = str(value)
    return 0 < len(text) <= MAX_ID_LENGTH and text_problem(text) is None


def _verify(token: str, key: str, algorithms: list[str]) -> tuple[Principal, float]:
    """The full check: the Principal and the token's `exp` (seconds since the epoch)."""
    options: Any = {"require": ["sub", "exp"]}
    kwargs: dict[str, Any] = {}
    if settings.JWT_ISSUER:
        kwargs["issuer"] = settings.JWT_ISSUER
    if settings.JWT_AUDIENCE:
        kwargs["audience"] = settings.JWT_AUDIENCE
    else:
        options["verify_aud"] = False
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options=options,
            leeway=settings.JWT_LEEWAY_SECONDS,
            **kwargs,
        )
    except jwt.ExpiredSignatureError as exc:
        raise exceptions.AuthenticationFailed("The token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise exceptions.AuthenticationFailed("The token is not valid.") from exc
    roles = claims.get("roles") or []
    clinic_ids = claims.get("clinic_ids") or []
    if (
        not isinstance(roles, list)
        or not roles
        or not all(isinstance(role, str) for role in roles)
        or not set(roles) <= ROLES
    ):
        raise exceptions.AuthenticationFailed("The token's roles are not valid.")
    if not isinstance(clinic_ids, list) or not all(_is_id(c) for c in clinic_ids):
        raise exceptions.AuthenticationFailed("The token's clinic_ids are not valid.")
    sub = claims["sub"]
    if not _is_id(sub):
        # Longer than our user_id columns, or text no column can hold (a NUL, a lone
        # surrogate): refused here instead of failing at the first query that uses it.
        raise exceptions.AuthenticationFailed("The token's sub is not valid.")
    principal = Principal(
        sub=str(sub),
        roles=frozenset(roles),
        clinic_ids=frozenset(str(c) for c in clinic_ids),
    )
    try:
        expires = float(claims["exp"])
    except OverflowError:  # an integer past any float (JSON allows it): as far off as it gets
        expires = math.inf
    return principal, expires


def issue_token(
    *,
    sub: str,
    roles: list[str],
    clinic_ids: list[str] | None = None,
    lifetime: dt.timedelta = dt.timedelta(hours=12),
) -> str:
    """Sign a caller token with the configured HS256 key (local use, tests, demo tokens)."""
    now = timezone.now()
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": now, "exp": now + lifetime}
    if clinic_ids:
        claims["clinic_ids"] = clinic_ids
    if settings.JWT_ISSUER:
        claims["iss"] = settings.JWT_ISSUER
    if settings.JWT_AUDIENCE:
        claims["aud"] = settings.JWT_AUDIENCE
    return jwt.encode(claims, settings.JWT_SIGNING_KEY, algorithm="HS256")


class JWTAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request) -> tuple[Principal, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise exceptions.AuthenticationFailed("Use `Authorization: Bearer <token>`.")
        principal = principal_from_token(token.strip())
        bind_log_context(userId=principal.sub)
        return principal, token.strip()

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "petpro_booking.core.auth.JWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
