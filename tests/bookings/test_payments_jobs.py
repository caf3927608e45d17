"""Payment jobs against the stub Payment Service: reconciliation (a lost webhook still
confirms), the payment deadline, late payments (re-booked or refunded) and refunds."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from bookings import tasks
from bookings.models import Booking, BookingHistory, PaymentRecord
from petpro_booking.celery import app as celery_app

from ..factories import SlotFactory
from .conftest import OTHER_OWNER
from .payment_fixtures import (
    age_booking,
    age_payments,
    book_paid,
    deliver,
    event_types,
    last_event,
    payment_url,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def payment_id(owner_client, unpaid_booking, payment_stub) -> str:
    response = owner_client.post(payment_url(unpaid_booking))
    assert response.status_code == 201
    return response.json()["payment_id"]


def past_deadline(booking: Booking) -> None:
    age_booking(booking, seconds=django_settings.PAYMENT_DEADLINE_SECONDS + 60)


def past_every_extension(booking: Booking) -> None:
    """A payment the provider still processes gets more time, up to the maximum: past it."""
    age_booking(booking, seconds=django_settings.PAYMENT_DEADLINE_MAX_SECONDS + 60)


def status_of(booking: Booking) -> str:
    booking.refresh_from_db()
    return booking.status


# --- reconciliation --------------------------------------------------------------------------


def test_lost_webhook_reconciliation_confirms(unpaid_booking, payment_id, payment_stub):
    payment_stub.settle(payment_id, "succeeded")  # ... and its webhook never arrives
    age_payments(unpaid_booking, seconds=django_settings.PAYMENT_RECONCILE_AFTER_SECONDS + 1)

    counts = tasks.payments_reconcile.delay().get()

    assert counts == {"confirmed": 1}
    assert status_of(unpaid_booking) == "confirmed"
    assert event_types(unpaid_booking)[-2:] == ["BookingPaid", "BookingConfirmed"]
    assert payment_stub.requests_to(f"/payments/{payment_id}", method="GET")


def test_reconciliation_leaves_recent_payments_alone(unpaid_booking, payment_id, payment_stub):
    payment_stub.settle(payment_id, "succeeded")

    assert tasks.payments_reconcile.delay().get() == {}
    assert payment_stub.requests_to(f"/payments/{payment_id}", method="GET") == []
    assert status_of(unpaid_booking) == "pending_payment"


def test_still_pending_is_asked_again_only_later(unpaid_booking, payment_id, payment_stub):
    age_payments(unpaid_booking, seconds=django_settings.PAYMENT_RECONCILE_AFTER_SECONDS + 1)

    assert tasks.payments_reconcile.delay().get() == {"still_pending": 1}
    assert tasks.payments_reconcile.delay().get() == {}  # heard of it just now
    assert status_of(unpaid_booking) == "pending_payment"


def test_reconciliation_with_the_provider_down_changes_nothing(
    unpaid_booking, payment_id, payment_stub
):
    payment_stub.settle(payment_id, "succeeded")
    age_payments(unpaid_booking, seconds=django_settings.PAYMENT_RECONCILE_AFTER_SECONDS + 1)
    payment_stub.fail_next = 100

    assert tasks.payments_reconcile.delay().get() == {"provider_unavailable": 1}
    assert status_of(unpaid_booking) == "pending_payment"

    payment_stub.fail_next = 0
    # Asked again PAYMENT_RECONCILE_AFTER_SECONDS after the failed attempt (it went to the
    # back of the line), not at once.
    assert tasks.payments_reconcile.delay().get() == {}
    age_payments(unpaid_booking, seconds=django_settings.PAYMENT_RECONCILE_AFTER_SECONDS + 1)
    assert tasks.payments_reconcile.delay().get() == {"confirmed": 1}


@pytest.fixture
def second_unpaid(owner_client, paid_slot, payment_stub) -> tuple[Booking, str]:
    """Another booking of the same owner waiting for its payment, on a slot an hour later."""
    later = SlotFactory(
        clinic=paid_slot.clinic,
        service=paid_slot.service,
        start_at=paid_slot.start_at + dt.timedelta(hours=1),
        end_at=paid_slot.end_at + dt.timedelta(hours=1),
    )
    booking = book_paid(later)
    response = owner_client.post(payment_url(booking))
    assert response.status_code == 201
    return booking, response.json()["payment_id"]


@pytest.mark.parametrize("unreadable", [{"status": "expired"}, {"amount": "sNaN"}])
def test_a_payment_the_provider_answers_unreadably_does_not_stop_the_others(
    unpaid_booking, payment_id, second_unpaid, payment_stub, unreadable
):
    """The sweep stops at a provider failure and took the same payment first every run (oldest
    `updated_at`): one payment answered with an unknown status held every other one back for
    a week; a non-finite amount crashed the job every run."""
    other, other_payment = second_unpaid
    payment_stub.payments[payment_id].update(unreadable)
    payment_stub.settle(other_payment, "succeeded")
    after = django_settings.PAYMENT_RECONCILE_AFTER_SECONDS
    age_payments(unpaid_booking, seconds=after + 120)  # the oldest: asked first
    age_payments(other, seconds=after + 60)

    assert tasks.payments_reconcile.delay().get() == {"provider_unavailable": 1}
    assert tasks.payments_reconcile.delay().get() == {"confirmed": 1}
    assert status_of(other) == "confirmed"
    assert status_of(unpaid_booking) == "pending_payment"


# --- the payment deadline --------------------------------------------------------------------


def test_unpaid_past_the_deadline_is_cancelled_and_frees_the_slot(unpaid_booking, paid_slot):
    past_deadline(unpaid_booking)

    counts = tasks.payments_cancel_unpaid.delay().get()

    assert counts == {"cancelled": 1}
    assert status_of(unpaid_booking) == "cancelled"
    paid_slot.refresh_from_db()
    assert paid_slot.booked_count == 0
    cancelled = last_event(unpaid_booking, "BookingCancelled")
    assert cancelled.payload["reason"] == "payment_deadline"
    assert cancelled.payload["refund_requested"] is False
    # Reasons are encrypted at rest: compared after decryption, not in SQL.
    cancelled_reasons = BookingHistory.objects.filter(
        booking=unpaid_booking, to_status="cancelled"
    ).values_list("reason", flat=True)
    assert "payment_deadline" in list(cancelled_reasons)


def test_before_the_deadline_nothing_is_cancelled(unpaid_booking):
    assert tasks.payments_cancel_unpaid.delay().get() == {}
    assert status_of(unpaid_booking) == "pending_payment"


def test_the_deadline_job_looks_at_the_provider_first(unpaid_booking, payment_id, payment_stub):
    payment_stub.settle(payment_id, "succeeded")  # paid, webhook lost, not reconciled yet
    past_deadline(unpaid_booking)

    counts = tasks.payments_cancel_unpaid.delay().get()

    assert counts == {"not_due": 1}
    assert status_of(unpaid_booking) == "confirmed"
    assert "BookingCancelled" not in event_types(unpaid_booking)


# --- late payments ---------------------------------------------------------------------------


def test_late_success_rebooks_when_the_slot_still_has_room(
    unpaid_booking, payment_id, payment_stub, paid_slot
):
    past_every_extension(unpaid_booking)  # still pending at the provider
    assert tasks.payments_cancel_unpaid.delay().get() == {"cancelled": 1}
    payment_stub.settle(payment_id, "succeeded")

    response = deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.succeeded"))

    assert response.json() == {"status": "late_rebooked"}
    assert status_of(unpaid_booking) == "confirmed"
    paid_slot.refresh_from_db()
    assert paid_slot.booked_count == 1
    assert event_types(unpaid_booking)[-3:] == [
        "BookingCancelled",
        "BookingPaid",
        "BookingConfirmed",
    ]
    assert last_event(unpaid_booking, "BookingPaid").payload["late"] is True
    assert payment_stub.requests_to("/refund") == []


def test_late_success_after_the_deadline_is_refunded_when_the_slot_is_gone(
    unpaid_booking, payment_id, payment_stub, paid_slot, other_pet
):
    past_every_extension(unpaid_booking)  # still pending at the provider
    assert tasks.payments_cancel_unpaid.delay().get() == {"cancelled": 1}
    book_paid(paid_slot, owner=OTHER_OWNER, pet_id="pet-2")  # the freed unit is taken
    payment_stub.settle(payment_id, "succeeded")

    response = deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.succeeded"))

    assert response.json() == {"status": "late_refunded"}
    assert status_of(unpaid_booking) == "cancelled"
    assert [r.path for r in payment_stub.requests_to("/refund")] == [
        f"/api/v1/payments/{payment_id}/refund"
    ]
    assert payment_stub.payments[payment_id]["status"] == "refunded"
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "refunded"
    paid = last_event(unpaid_booking, "BookingPaid")
    assert paid.payload["refund_requested"] is True
    assert paid.payload["status"] == "cancelled"
    # Reasons are encrypted at rest: compared after decryption, not in SQL.
    reasons = BookingHistory.objects.filter(booking=unpaid_booking).values_list("reason", flat=True)
    assert any(reason.startswith("late_payment") for reason in reasons)
    paid_slot.refresh_from_db()
    assert paid_slot.booked_count == 1  # only the other owner's booking


def test_late_success_found_by_reconciliation_is_handled_too(
    unpaid_booking, payment_id, payment_stub
):
    past_every_extension(unpaid_booking)  # still pending at the provider
    tasks.payments_cancel_unpaid.delay().get()
    payment_stub.settle(payment_id, "succeeded")
    age_payments(unpaid_booking, seconds=django_settings.PAYMENT_RECONCILE_AFTER_SECONDS + 1)

    assert tasks.payments_reconcile.delay().get() == {"late_rebooked": 1}
    assert status_of(unpaid_booking) == "confirmed"


def test_an_owner_cancelled_booking_is_refunded_not_rebooked(
    owner_client, unpaid_booking, payment_id, payment_stub
):
    cancel = owner_client.post(
        f"/api/v1/bookings/{unpaid_booking.id}/cancel", {"reason": "plans changed"}, format="json"
    )
    assert cancel.status_code == 200

    response = deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.succeeded"))

    assert response.json() == {"status": "late_refunded"}
    assert status_of(unpaid_booking) == "cancelled"
    assert payment_stub.payments[payment_id]["status"] == "refunded"


# --- refunds ---------------------------------------------------------------------------------


def test_cancelling_a_paid_booking_requests_a_refund(
    owner_client, unpaid_booking, payment_id, payment_stub
):
    deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.succeeded"))
    assert status_of(unpaid_booking) == "confirmed"

    cancel = owner_client.post(
        f"/api/v1/bookings/{unpaid_booking.id}/cancel", {"reason": "sick"}, format="json"
    )

    assert cancel.status_code == 200
    assert last_event(unpaid_booking, "BookingCancelled").payload["refund_requested"] is True
    assert payment_stub.payments[payment_id]["status"] == "refunded"
    record = PaymentRecord.objects.get(payment_id=payment_id)
    assert record.status == "refunded"
    assert record.refund_requested_at is not None
    refund = payment_stub.requests_to("/refund")[0]
    assert refund.idempotency_key == f"refund-{record.id}"


def test_a_refund_postponed_by_an_outage_is_swept_later(
    owner_client, unpaid_booking, payment_id, payment_stub
):
    deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.succeeded"))
    payment_stub.fail_next = 100

    cancel = owner_client.post(
        f"/api/v1/bookings/{unpaid_booking.id}/cancel", {"reason": "sick"}, format="json"
    )

    assert cancel.status_code == 200  # the cancel does not wait for the provider
    record = PaymentRecord.objects.get(payment_id=payment_id)
    assert (record.status, record.refund_requested_at is not None) == ("succeeded", True)

    payment_stub.fail_next = 0
    assert tasks.payments_refund_owed.delay().get() == {"refunded": 1}
    assert PaymentRecord.objects.get(payment_id=payment_id).status == "refunded"
    assert len({r.idempotency_key for r in payment_stub.requests_to("/refund")}) == 1
    assert tasks.payments_refund_owed.delay().get() == {}


@pytest.mark.parametrize("answered", ["pending", "failed", "succeeded"])
def test_a_refund_the_provider_did_not_make_stays_owed_and_the_others_go_on(
    owner_client, unpaid_booking, payment_id, second_unpaid, payment_stub, answered
):
    """Only an answer of "refunded" is a refund: a pending or failed one was recorded as
    refunded and never asked about again."""
    other, other_payment = second_unpaid
    for booking, paid in ((unpaid_booking, payment_id), (other, other_payment)):
        deliver(APIClient(), *payment_stub.webhook(paid, "payment.succeeded"))
        assert status_of(booking) == "confirmed"
    payment_stub.refund_status[payment_id] = answered
    payment_stub.refund_status[other_payment] = "pending"  # its cancel's refund: not yet
    for booking in (unpaid_booking, other):
        cancel = owner_client.post(
            f"/api/v1/bookings/{booking.id}/cancel", {"reason": "sick"}, format="json"
        )
        assert cancel.status_code == 200
    assert PaymentRecord.objects.filter(status="succeeded").count() == 2  # both still owed
    del payment_stub.refund_status[other_payment]
    age_payments(unpaid_booking, seconds=120)  # the oldest: swept first

    assert tasks.payments_refund_owed.delay().get() == {"not_refunded": 1, "refunded": 1}
    stuck = PaymentRecord.objects.get(payment_id=payment_id)
    assert (stuck.status, stuck.refund_requested_at is not None) == ("succeeded", True)
    assert PaymentRecord.objects.get(payment_id=other_payment).status == "refunded"

    del payment_stub.refund_status[payment_id]  # the provider refunds it when asked again
    assert tasks.payments_refund_owed.delay().get() == {"refunded": 1}
    keys = {r.idempotency_key for r in payment_stub.requests_to(f"{payment_id}/refund")}
    assert keys == {f"refund-{stuck.id}"}


def _two_owed_refunds(owner_client, bookings_and_payments, payment_stub) -> None:
    """Both payments succeeded, both bookings cancelled, both refunds still owed (the
    provider answered the cancels' own refunds "pending"); the first is the older."""
    for booking, paid in bookings_and_payments:
        deliver(APIClient(), *payment_stub.webhook(paid, "payment.succeeded"))
        assert status_of(booking) == "confirmed"
        payment_stub.refund_status[paid] = "pending"
    for booking, _ in bookings_and_payments:
        cancel = owner_client.post(
            f"/api/v1/bookings/{booking.id}/cancel", {"reason": "sick"}, format="json"
        )
        assert cancel.status_code == 200
    payment_stub.refund_status.clear()
    assert PaymentRecord.objects.filter(status="succeeded").count() == 2
    age_payments(bookings_and_payments[0][0], seconds=120)


def test_a_refund_the_provider_refuses_stays_owed_behind_the_others(
    owner_client, unpaid_booking, payment_id, second_unpaid, payment_stub
):
    other, other_payment = second_unpaid
    _two_owed_refunds(
        owner_client, [(unpaid_booking, payment_id), (other, other_payment)], payment_stub
    )
    payment_stub.refund_refused.add(payment_id)
    before = PaymentRecord.objects.get(payment_id=payment_id).updated_at
    rejected = (
        REGISTRY.get_sample_value("petpro_payments_total", {"outcome": "refund_rejected"}) or 0.0
    )

    assert tasks.payments_refund_owed.delay().get() == {"rejected": 1, "refunded": 1}
    refused = PaymentRecord.objects.get(payment_id=payment_id)
    assert (refused.status, refused.refund_requested_at is not None) == ("succeeded", True)
    assert refused.updated_at > before  # behind the others next time
    assert PaymentRecord.objects.get(payment_id=other_payment).status == "refunded"
    assert (
        REGISTRY.get_sample_value("petpro_payments_total", {"outcome": "refund_rejected"})
        == rejected + 1
    )

    payment_stub.refund_refused.clear()  # support sorted it out with the provider
    assert tasks.payments_refund_owed.delay().get() == {"refunded": 1}


def test_the_refund_sweep_stops_at_the_first_outage(
    owner_client, unpaid_booking, payment_id, second_unpaid, payment_stub
):
    other, other_payment = second_unpaid
    _two_owed_refunds(
        owner_client, [(unpaid_booking, payment_id), (other, other_payment)], payment_stub
    )
    payment_stub.fail_next = 1000
    asked_before = len(payment_stub.requests_to(f"{other_payment}/refund"))

    assert tasks.payments_refund_owed.delay().get() == {"provider_unavailable": 1}
    assert len(payment_stub.requests_to(f"{other_payment}/refund")) == asked_before  # not asked
    assert PaymentRecord.objects.filter(status="succeeded").count() == 2

    payment_stub.fail_next = 0
    assert tasks.payments_refund_owed.delay().get() == {"refunded": 2}


# --- admin and wiring ------------------------------------------------------------------------


def test_support_rechecks_a_payment_from_the_admin(unpaid_booking, payment_id, payment_stub):
    user = User.objects.create_superuser("support-admin", "s@example.com", "pw")
    admin = APIClient()
    admin.force_login(user)  # login() passes no request, which django-axes requires
    payment_stub.settle(payment_id, "succeeded")
    record = PaymentRecord.objects.get(payment_id=payment_id)

    page = admin.get(f"/admin/bookings/booking/{unpaid_booking.id}/change/", follow=True)
    assert page.status_code == 200
    assert payment_id in page.content.decode()

    response = admin.post(
        "/admin/bookings/paymentrecord/",
        {"action": "recheck_with_provider", "_selected_action": [str(record.id)]},
        follow=True,
    )

    assert response.status_code == 200
    assert "the booking is confirmed" in response.content.decode()
    assert status_of(unpaid_booking) == "confirmed"


@pytest.mark.parametrize(
    "entry", ["reconcile-payments", "cancel-unpaid-bookings", "refund-owed-payments"]
)
def test_payment_jobs_are_on_beat(entry):
    task_name = django_settings.CELERY_BEAT_SCHEDULE[entry]["task"]
    celery_app.loader.import_default_modules()
    assert task_name in celery_app.tasks


# --- holds that follow the payment -----------------------------------------------------------


def deadline_of(booking: Booking):
    from bookings.services import payment_deadline_of

    booking.refresh_from_db()
    return payment_deadline_of(booking)


def deadline_notes(booking: Booking) -> list[str]:
    # Reasons are encrypted at rest: compared after decryption, not in SQL.
    reasons = BookingHistory.objects.filter(booking=booking).order_by("id")
    return [row.reason for row in reasons if "payment deadline" in row.reason]


@pytest.mark.parametrize("capped", [False, True])
def test_starting_to_pay_counts_the_deadline_from_then_within_the_cap(
    settings, owner_client, unpaid_booking, payment_stub, capped
):
    started_after = 1500  # of the 1800 s an unpaid booking gets
    if capped:
        settings.PAYMENT_DEADLINE_CAP_SECONDS = 2400
    age_booking(unpaid_booking, seconds=started_after)
    unpaid_booking.refresh_from_db()
    before = dt.datetime.now(dt.UTC)
    assert owner_client.post(payment_url(unpaid_booking)).status_code == 201

    deadline = deadline_of(unpaid_booking)
    if capped:
        cap = dt.timedelta(seconds=django_settings.PAYMENT_DEADLINE_CAP_SECONDS)
        assert deadline == unpaid_booking.created_at + cap
    else:
        window = dt.timedelta(seconds=django_settings.PAYMENT_DEADLINE_SECONDS)
        assert before + window <= deadline <= dt.datetime.now(dt.UTC) + window
    assert deadline_notes(unpaid_booking) == [
        f"payment_started: payment deadline {deadline.isoformat()}"
    ]
    # The job leaves it alone until then, though its creation is longer ago than the deadline.
    assert tasks.payments_cancel_unpaid.delay().get() == {}


def test_a_payment_still_processing_extends_the_deadline_up_to_the_maximum(
    unpaid_booking, payment_id, payment_stub, paid_slot
):
    payment_stub.settle(payment_id, "processing")  # 3-D Secure under way
    past_deadline(unpaid_booking)

    assert tasks.payments_cancel_unpaid.delay().get() == {"extended": 1}
    assert status_of(unpaid_booking) == "pending_payment"
    extension = dt.timedelta(seconds=django_settings.PAYMENT_PENDING_EXTENSION_SECONDS)
    assert deadline_of(unpaid_booking) > dt.datetime.now(dt.UTC) + extension - dt.timedelta(
        seconds=30
    )
    assert deadline_notes(unpaid_booking)[-1].startswith("payment_processing: payment deadline")
    assert tasks.payments_cancel_unpaid.delay().get() == {}  # not due again yet

    # Past the maximum the booking goes, paying or not.
    age_booking(unpaid_booking, seconds=django_settings.PAYMENT_DEADLINE_MAX_SECONDS + 60)
    assert tasks.payments_cancel_unpaid.delay().get() == {"cancelled": 1}
    assert status_of(unpaid_booking) == "cancelled"
    notes = deadline_notes(unpaid_booking)
    assert [note.split(":")[0] for note in notes] == [
        "payment_started",
        "payment_processing",
    ]


def test_the_webhooks_log_lines_name_the_booking_it_paid(unpaid_booking, payment_id, payment_stub):
    from ..core.log_capture import captured_logs

    payment_stub.settle(payment_id, "succeeded")
    with captured_logs() as logs:
        response = deliver(APIClient(), *payment_stub.webhook(payment_id, "payment.succeeded"))
    assert response.status_code == 200, response.json()
    (access,) = logs.messages("request finished")
    assert access["bookingId"] == str(unpaid_booking.id)
