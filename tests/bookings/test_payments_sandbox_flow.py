"""The embedded default's payment flow: the sandbox provider settles the payment a moment later
and its signed webhook confirms the booking, in-process or over real HTTP to our endpoint."""

from __future__ import annotations

import time

import pytest

from bookings.models import Booking
from integrations.payments import sandbox

from .payment_fixtures import event_types, payment_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_provider(settings, monkeypatch):
    settings.PAYMENT_SERVICE_URL = ""
    settings.PAYMENT_SANDBOX_DELAY_SECONDS = 0.1
    settings.PAYMENT_SANDBOX_OUTCOME = "succeeded"
    provider = sandbox.SandboxPaymentProvider()
    monkeypatch.setattr(sandbox, "_provider", provider)
    yield provider
    provider.close()


def wait_for_status(booking: Booking, status: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        booking.refresh_from_db()
        if booking.status == status:
            break
        time.sleep(0.05)
    return booking.status


def test_pending_payment_becomes_confirmed_in_process(
    owner_client, unpaid_booking, sandbox_provider
):
    response = owner_client.post(payment_url(unpaid_booking))

    assert response.status_code == 201
    assert response.json()["payment_id"].startswith("sbx_")
    assert wait_for_status(unpaid_booking, "confirmed") == "confirmed"
    assert event_types(unpaid_booking)[-2:] == ["BookingPaid", "BookingConfirmed"]


def test_pending_payment_becomes_confirmed_over_http(
    owner_client, unpaid_booking, sandbox_provider, live_server, settings
):
    settings.PAYMENT_SANDBOX_WEBHOOK_URL = f"{live_server.url}/api/v1/payments/webhook"

    response = owner_client.post(payment_url(unpaid_booking))

    assert response.status_code == 201
    assert wait_for_status(unpaid_booking, "confirmed") == "confirmed"


def test_a_failing_sandbox_payment_leaves_the_booking_payable(
    owner_client, unpaid_booking, sandbox_provider, settings
):
    settings.PAYMENT_SANDBOX_OUTCOME = "failed"

    payment_id = owner_client.post(payment_url(unpaid_booking)).json()["payment_id"]

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and unpaid_booking.payments.get().status != "failed":
        time.sleep(0.05)
    assert unpaid_booking.payments.get(payment_id=payment_id).status == "failed"
    assert wait_for_status(unpaid_booking, "pending_payment", timeout=0.2) == "pending_payment"
