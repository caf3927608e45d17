"""Production settings refuse to start on an embedded fallback or without a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPLETE = {
    "DJANGO_SETTINGS_MODULE": "petpro_booking.settings.production",
    "DJANGO_SECRET_KEY": "s",
    "DJANGO_ALLOWED_HOSTS": "booking.example.com",
    "DATABASE_URL": "postgres://u:p@db:5432/booking",
    "REDIS_URL": "redis://redis:6379/0",
    "CELERY_BROKER_URL": "amqp://rabbitmq//",
    "EVENT_BROKER_URL": "amqp://rabbitmq//",
    "JWT_SIGNING_KEY": "k",
    "JWT_ISSUER": "https://auth.petpro.example",
    "JWT_AUDIENCE": "booking-service",
    "SERVICE_JWT_SIGNING_KEY": "another-key",
    "PAYMENT_WEBHOOK_SECRET": "w",
    "PAYMENT_SERVICE_URL": "http://payments:8080",
    "PAYMENT_API_KEY": "key",
    "FIELD_ENCRYPTION_KEYS": "Y29tcG9zZS1leGFtcGxlLWZpZWxkLWtleS0zMmJ5dGU=",
    "PERSONAL_DATA_LOOKUP_KEY": "l",
    "ANALYTICS_PSEUDONYM_KEYS": "a",
}


def load(
    env: dict[str, str], code: str = "print(settings.DEBUG)"
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in COMPLETE and "_URL" not in k and not k.startswith(("SECURE_", "JWT_"))
    }
    code = "import django; django.setup(); from django.conf import settings; " + code
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_complete_configuration_loads():
    result = load(COMPLETE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "missing",
    [
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "EVENT_BROKER_URL",
        "PAYMENT_SERVICE_URL",
        "FIELD_ENCRYPTION_KEYS",
    ],
)
def test_missing_variable_is_refused(missing):
    result = load({k: v for k, v in COMPLETE.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr


def test_an_earlier_secret_key_still_verifies_while_it_is_a_fallback():
    """Rotating DJANGO_SECRET_KEY (docs/security.md): a value signed under the old key (an admin
    session, a CSRF token) still verifies while the old key is in DJANGO_SECRET_KEY_FALLBACKS."""
    code = (
        "from django.core import signing; "
        "old = signing.Signer(key='the-old-key').sign('admin-session'); "
        "print(signing.Signer().unsign(old))"
    )
    rotated = {**COMPLETE, "DJANGO_SECRET_KEY": "the-new-key"}
    result = load({**rotated, "DJANGO_SECRET_KEY_FALLBACKS": "the-old-key,older"}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "admin-session"
    refused = load(rotated, code)
    assert refused.returncode != 0
    assert "BadSignature" in refused.stderr


def test_sandbox_payments_only_when_asked_for():
    without_payments = {
        k: v for k, v in COMPLETE.items() if k not in ("PAYMENT_SERVICE_URL", "PAYMENT_API_KEY")
    }
    assert load({**without_payments, "PAYMENT_SANDBOX": "true"}).returncode == 0


@pytest.mark.parametrize("missing", ["JWT_ISSUER", "JWT_AUDIENCE"])
def test_tokens_without_issuer_or_audience_are_refused(missing):
    result = load({k: v for k, v in COMPLETE.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr


def test_service_key_equal_to_the_user_token_key_is_refused():
    result = load({**COMPLETE, "SERVICE_JWT_SIGNING_KEY": COMPLETE["JWT_SIGNING_KEY"]})
    assert result.returncode != 0
    assert "SERVICE_JWT_SIGNING_KEY" in result.stderr


@pytest.mark.parametrize(
    "empty",
    [
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "EVENT_BROKER_URL",
        "PAYMENT_SERVICE_URL",
        "PAYMENT_API_KEY",
        "PAYMENT_WEBHOOK_SECRET",
        "SERVICE_JWT_SIGNING_KEY",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
    ],
)
def test_present_but_empty_is_refused_like_missing(empty):
    result = load({**COMPLETE, empty: ""})
    assert result.returncode != 0
    assert empty in result.stderr


def test_empty_payment_url_never_falls_back_to_the_sandbox():
    """Even with the demo switch on, an explicitly empty URL is a mistake, not a wish."""
    result = load({**COMPLETE, "PAYMENT_SERVICE_URL": "", "PAYMENT_SANDBOX": "true"})
    assert result.returncode != 0
    assert "PAYMENT_SERVICE_URL" in result.stderr


def test_production_sends_hsts_redirects_to_https_and_has_a_csp():
    code = (
        "from csp.middleware import CSPMiddleware; "
        "from django.utils.module_loading import import_string; "
        "print(settings.SECURE_HSTS_SECONDS, settings.SECURE_SSL_REDIRECT, "
        "any(issubclass(import_string(m), CSPMiddleware) for m in settings.MIDDLEWARE), "
        "settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['script-src'])"
    )
    result = load(COMPLETE, code)
    assert result.returncode == 0, result.stderr
    hsts, redirect, csp, script_src = result.stdout.split(" ", 3)
    assert int(hsts) >= 31536000
    assert (redirect, csp) == ("True", "True")
    assert "http" not in script_src  # our own origin only, no third-party script


def test_ssl_redirect_and_hsts_can_be_left_to_the_ingress():
    code = "print(settings.SECURE_HSTS_SECONDS, settings.SECURE_SSL_REDIRECT)"
    result = load({**COMPLETE, "SECURE_SSL_REDIRECT": "false", "SECURE_HSTS_SECONDS": "0"}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False"]


def test_a_negative_hsts_lifetime_is_refused_at_start():
    result = load({**COMPLETE, "SECURE_HSTS_SECONDS": "-1"}, "print(settings.SECURE_HSTS_SECONDS)")
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS must be 0 (off) or more, not -1." in result.stderr


def test_demo_data_is_refused_under_production_settings():
    code = "from django.core.management import call_command; call_command('load_demo_data')"
    result = load(COMPLETE, code)
    assert result.returncode != 0
    assert "production" in result.stderr
