"""JWT authentication: HS256 and RS256, expiry, roles, issuer/audience, the token command."""

from __future__ import annotations

import datetime as dt
import io
import time

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from django.utils import timezone

from petpro_booking.core import auth
from petpro_booking.core.auth import issue_token, principal_from_token

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_expired_token_is_401(anon_client):
    token = issue_token(sub="u1", roles=["pet_owner"], lifetime=dt.timedelta(seconds=-60))
    response = anon_client.get("/api/v1/slots", **bearer(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "expired" in response.json()["error"]["message"]


def test_wrong_signature_and_bad_scheme_are_401(anon_client, settings):
    forged = jwt.encode(
        {"sub": "u1", "roles": ["support"], "exp": timezone.now() + dt.timedelta(hours=1)},
        "not-the-key",
        algorithm="HS256",
    )
    assert anon_client.get("/api/v1/slots", **bearer(forged)).status_code == 401
    response = anon_client.get("/api/v1/slots", HTTP_AUTHORIZATION="Basic dXNlcjpwdw==")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("roles", [[], ["admin"], "support"])
def test_unknown_roles_are_refused(anon_client, roles):
    token = jwt.encode(
        {"sub": "u1", "roles": roles, "exp": timezone.now() + dt.timedelta(hours=1)},
        "dev-jwt-signing-key-not-for-production",
        algorithm="HS256",
    )
    assert anon_client.get("/api/v1/slots", **bearer(token)).status_code == 401


def test_rs256_with_public_key(settings):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings.JWT_PUBLIC_KEY = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode(
        {
            "sub": "staff-7",
            "roles": ["clinic_staff"],
            "clinic_ids": ["c1", "c2"],
            "exp": timezone.now() + dt.timedelta(minutes=5),
        },
        private,
        algorithm="RS256",
    )
    principal = principal_from_token(token)
    assert principal.clinic_ids == frozenset({"c1", "c2"})
    assert principal.can_manage_clinic("c2")
    assert not principal.can_manage_clinic("c3")
    hs_token = issue_token(sub="u1", roles=["support"])
    with pytest.raises(Exception, match="not valid"):
        principal_from_token(hs_token)  # an HS256 token is refused once RS256 is configured


def test_issuer_and_audience_are_checked_when_configured(settings):
    settings.JWT_ISSUER = "https://auth.petpro.example"
    settings.JWT_AUDIENCE = "booking"
    good = issue_token(sub="u1", roles=["pet_owner"])
    assert principal_from_token(good).sub == "u1"
    settings.JWT_AUDIENCE = "someone-else"
    with pytest.raises(Exception, match="not valid"):
        principal_from_token(good)


def test_issue_token_command_prints_a_working_token(anon_client, clinic):
    out = io.StringIO()
    call_command(
        "issue_token",
        "--sub",
        "staff-1",
        "--role",
        "clinic_staff",
        "--clinic",
        clinic.id,
        stdout=out,
    )
    principal = principal_from_token(out.getvalue().strip())
    assert principal.is_clinic_staff
    assert principal.clinic_ids == frozenset({clinic.id})
    with pytest.raises(CommandError):
        call_command("issue_token", "--sub", "s", "--role", "clinic_staff", stdout=out)


def test_a_verified_token_is_remembered_until_it_expires_and_never_past_it(settings):
    settings.JWT_LEEWAY_SECONDS = 5
    auth.forget_verified_tokens()
    start = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        token = issue_token(sub="u1", roles=["pet_owner"], lifetime=dt.timedelta(seconds=60))
        assert principal_from_token(token).sub == "u1"
        assert len(auth._verified) == 1
        # The key is part of what was remembered: under another key it is checked again.
        key = settings.JWT_SIGNING_KEY
        settings.JWT_SIGNING_KEY = "another-signing-key-of-at-least-32-bytes"
        with pytest.raises(Exception, match="not valid"):
            principal_from_token(token)
        settings.JWT_SIGNING_KEY = key
        clock.shift(64)  # exp + leeway - 1 s: still good, from memory
        assert principal_from_token(token).sub == "u1"
        clock.shift(2)  # past exp + leeway: refused, as the full check refuses it
        with pytest.raises(Exception, match="expired"):
            principal_from_token(token)


def test_a_refused_token_is_not_remembered(settings):
    auth.forget_verified_tokens()
    bad = jwt.encode(
        {"sub": "u1", "roles": ["nobody"], "exp": timezone.now() + dt.timedelta(minutes=5)},
        settings.JWT_SIGNING_KEY,
        algorithm="HS256",
    )
    for _ in range(2):
        with pytest.raises(Exception, match="roles"):
            principal_from_token(bad)
    assert len(auth._verified) == 0


def test_a_remembered_token_is_kept_no_longer_than_the_bound(settings):
    auth.forget_verified_tokens()
    token = issue_token(sub="u1", roles=["pet_owner"], lifetime=dt.timedelta(hours=12))
    principal_from_token(token)
    [(expires, _)] = auth._verified._entries.values()
    assert expires - time.monotonic() <= auth.VERIFIED_TOKEN_SECONDS


def test_a_signed_token_whose_exp_is_past_any_float_is_accepted_not_a_500(anon_client, settings):
    # PyJWT checks an integer `exp` exactly; turning it into a float for the verified-token
    # memory raised OverflowError, a 500 on every authenticated route (found by a sweep).
    far = 10**400
    token = jwt.encode(
        {"sub": "owner-far", "roles": ["pet_owner"], "exp": far}, settings.JWT_SIGNING_KEY
    )
    auth.forget_verified_tokens()
    response = anon_client.get("/api/v1/reservations", **bearer(token))
    assert response.status_code == 200, response.content
    assert principal_from_token(token).sub == "owner-far"  # remembered, then from memory
