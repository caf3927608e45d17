"""Strict tokens (clock-skew leeway, sub length, service tokens' aud) and the admin's and
docs' browser protections: login lockout, password validators, CSP, Swagger UI offline."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from petpro_booking.core.auth import issue_token
from petpro_booking.core.service_tokens import service_token

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_small_clock_skew_is_tolerated(anon_client, settings):
    settings.JWT_LEEWAY_SECONDS = 30
    just_expired = issue_token(sub="u1", roles=["pet_owner"], lifetime=dt.timedelta(seconds=-10))
    assert anon_client.get("/api/v1/clinics", **bearer(just_expired)).status_code == 200
    long_expired = issue_token(sub="u1", roles=["pet_owner"], lifetime=dt.timedelta(seconds=-40))
    assert anon_client.get("/api/v1/clinics", **bearer(long_expired)).status_code == 401
    settings.JWT_LEEWAY_SECONDS = 0
    assert anon_client.get("/api/v1/clinics", **bearer(just_expired)).status_code == 401


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "u" * 65},
        {"sub": ""},
        {"sub": ["a"]},
        {"sub": "staff", "roles": ["clinic_staff"], "clinic_ids": ["c" * 65]},
        {"sub": "staff", "roles": ["clinic_staff"], "clinic_ids": [{"x": 1}]},
        # Claims no column can hold, or not of their type (each was a 500 before the check).
        {"sub": "u\x00"},
        {"sub": "u\ud800"},
        {"sub": True},
        {"sub": "staff", "roles": ["clinic_staff"], "clinic_ids": ["c\x00"]},
        {"sub": "u1", "roles": [["pet_owner"]]},
        {"sub": "u1", "roles": [{}]},
    ],
)
def test_ids_longer_than_our_columns_are_401(anon_client, slot, owner_pet, claims, settings):
    token = jwt.encode(
        {"roles": ["pet_owner"], "exp": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), **claims},
        settings.JWT_SIGNING_KEY,
        algorithm="HS256",
    )
    response = anon_client.post(
        "/api/v1/reservations",
        {"slot_id": str(slot.pk), "pet_id": "pet-1"},
        format="json",
        **bearer(token),
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_service_tokens_name_their_callee_and_expire_soon(settings):
    settings.SERVICE_JWT_SIGNING_KEY = "aud-service-key-of-at-least-32-bytes!!"
    for audience in ("user-service", "clinic-service"):
        claims = jwt.decode(
            service_token(audience=audience),
            settings.SERVICE_JWT_SIGNING_KEY,
            algorithms=["HS256"],
            audience=audience,
        )
        assert claims["aud"] == audience
        assert claims["exp"] - claims["iat"] <= 300


def test_admin_login_is_locked_out_after_repeated_failures(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_user("clinic-admin", password="a-long-correct-password", is_staff=True)
    statuses = [
        client.post(
            "/admin/login/",
            {"username": "clinic-admin", "password": "wrong"},
            REMOTE_ADDR="10.0.0.1",
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]  # the form again with an error, then the lockout
    # Now even the right password is refused: per user (from another IP) and per IP.
    locked = client.post(
        "/admin/login/",
        {"username": "clinic-admin", "password": "a-long-correct-password"},
        REMOTE_ADDR="10.0.0.2",
    )
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    other_user = client.post(
        "/admin/login/", {"username": "someone", "password": "x"}, REMOTE_ADDR="10.0.0.1"
    )
    assert other_user.status_code == 429


def test_password_validators_refuse_weak_passwords():
    user = User(username="clinic-admin")
    for weak in ("short", "password1234", "123456789012", "clinic-admin1"):
        with pytest.raises(ValidationError):
            validate_password(weak, user)
    validate_password("purple-otter-drinks-tea-42", user)


def test_swagger_ui_is_served_from_our_static_files_under_a_csp(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert "unpkg" not in html
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "<script>" not in html  # no inline script: the init script is a file of ours
    assert page["Content-Security-Policy"] == client.get("/admin/login/")["Content-Security-Policy"]


def test_the_docs_page_answers_get_and_head_only(client):
    """DRF answered OPTIONS with the view's metadata through its HTML renderer, whose template
    does not exist: a 500 to anyone, no login needed."""
    client.raise_request_exception = False
    assert client.options("/api/docs/").status_code == 405
    assert client.head("/api/docs/").status_code == 200


def test_the_json_api_skips_the_browser_middleware_and_pages_keep_it(client, owner_client):
    """Sessions, CSRF, frame options and the CSP serve pages; an API answer has none of their
    headers or cookies, the docs page and the admin keep all of them."""
    api = owner_client.get("/api/v1/clinics")
    assert api.status_code == 200
    assert "Content-Security-Policy" not in api
    assert "X-Frame-Options" not in api
    assert not api.cookies
    assert api["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware runs for both
    login = client.get("/admin/login/")
    assert "Content-Security-Policy" in login
    assert login["X-Frame-Options"] == "DENY"
    assert "csrftoken" in login.cookies
    docs = client.get("/api/docs/")
    assert "Content-Security-Policy" in docs


@pytest.mark.parametrize("length", [256, 5_000])  # axes' column holds 255
def test_an_over_long_admin_username_is_a_failed_login_not_a_500(client, length):
    # Django's login form does not enforce the username's length; axes' attempt row holds 255
    # characters, so a longer one was a 500 on PostgreSQL (found by a hostile-input sweep).
    User.objects.create_user("clinic-admin", password="a-long-correct-password", is_staff=True)
    page = client.post(
        "/admin/login/", {"username": "u" * length, "password": "x"}, REMOTE_ADDR="10.0.0.3"
    )
    assert page.status_code == 200
    assert "correct username and password" in page.content.decode()
    assert "_auth_user_id" not in client.session
    # The right account still logs in.
    ok = client.post(
        "/admin/login/",
        {"username": "clinic-admin", "password": "a-long-correct-password"},
        REMOTE_ADDR="10.0.0.3",
    )
    assert ok.status_code == 302
