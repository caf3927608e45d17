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
    "SERVICE_JWT_SIGNING_KEY": "k",
    "PAYMENT_WEBHOOK_SECRET": "w",
    "PAYMENT_SERVICE_URL": "http://payments:8080",
    "PAYMENT_API_KEY": "key",
    "FIELD_ENCRYPTION_KEYS": "Y29tcG9zZS1leGFtcGxlLWZpZWxkLWtleS0zMmJ5dGU=",
    "PERSONAL_DATA_LOOKUP_KEY": "l",
    "ANALYTICS_PSEUDONYM_KEYS": "a",
}


def load(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in COMPLETE and "_URL" not in k}
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
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


def test_sandbox_payments_only_when_asked_for():
    without_payments = {
        k: v for k, v in COMPLETE.items() if k not in ("PAYMENT_SERVICE_URL", "PAYMENT_API_KEY")
    }
    assert load({**without_payments, "PAYMENT_SANDBOX": "true"}).returncode == 0
