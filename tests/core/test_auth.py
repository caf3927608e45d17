"""JWT authentication: HS256 and RS256, expiry, roles, issuer/audience, the token command."""

from __future__ import annotations

import datetime as dt
import io

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from django.utils import timezone

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
