"""Payments under real concurrency (threads, PostgreSQL, Redis, the stub provider): many pay
requests make one payment; a success racing the deadline job never loses the payer's money
nor books the unit twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.conf import settings as django_settings
from django.db import connections
from rest_framework.test import APIClient

from bookings import services
from bookings.models import PaymentRecord

from ..factories import SlotFactory
from .conftest import OWNER
from .payment_fixtures import age_booking, book_paid, deliver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_together(functions: list[Callable[[], object]]) -> list[object]:
    """Start every function at the same moment, each in its own thread and connection."""
    barrier = threading.Barrier(len(functions))
    results: list[object] = [None] * len(functions)

    def worker(index: int, function: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = function()
        except Exception as exc:  # kept, and asserted on by the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twenty_pay_requests_at_once_make_one_payment(unpaid_booking, payment_stub):
    results = run_together(
        [
            lambda: services.payment_create_for_booking(actor=OWNER, booking_id=unpaid_booking.id)
            for _ in range(20)
        ]
    )

    assert all(isinstance(r, PaymentRecord) for r in results), results
    assert {r.payment_id for r in results} == set(payment_stub.payments)
    assert len(payment_stub.payments) == 1
    assert PaymentRecord.objects.filter(booking=unpaid_booking).count() == 1


def test_a_success_racing_the_deadline_job_ends_consistent(owner_pet, paid_slot, payment_stub):
    """Ten rounds: the success webhook and the deadline job start together. Whoever wins, the
    payer ends with a confirmed booking holding exactly one unit and keeps no refund: either
    the success lands first (the deadline job then finds nothing to do), or the deadline
    cancels first and the late success takes the freed unit again."""
    outcomes = []
    for round_number in range(10):
        slot = SlotFactory(clinic=paid_slot.clinic, service=paid_slot.service, capacity=1)
        booking = book_paid(slot)
        payment_id = services.payment_create_for_booking(
            actor=OWNER, booking_id=booking.id
        ).payment_id
        payment_stub.settle(payment_id, "succeeded")
        age_booking(booking, seconds=django_settings.PAYMENT_DEADLINE_SECONDS + 60)
        body, signature = payment_stub.webhook(payment_id, "payment.succeeded")

        webhook, deadline = run_together(
            [
                lambda body=body, signature=signature: deliver(APIClient(), body, signature).json(),
                lambda booking_id=booking.id, pause=0.005 * round_number: (
                    time.sleep(pause),  # spread the start so both orders happen
                    services.booking_cancel_for_payment_deadline(booking_id=booking_id),
                )[1],
            ]
        )

        outcomes.append((webhook, deadline))
        booking.refresh_from_db()
        slot.refresh_from_db()
        record = PaymentRecord.objects.get(payment_id=payment_id)
        assert booking.status == "confirmed", outcomes
        assert (slot.booked_count, slot.held_count) == (1, 0)
        assert (record.status, record.refund_requested_at) == ("succeeded", None)
        assert webhook in ({"status": "confirmed"}, {"status": "late_rebooked"})
        assert (webhook == {"status": "late_rebooked"}) == (deadline == "cancelled")
    assert payment_stub.requests_to("/refund") == []
