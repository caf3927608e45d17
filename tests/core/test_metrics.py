"""GET /metrics after a real booking flow through the API: request latency per route, the
business counters, the scrape-time gauges (outbox, expiry lag, health checks, DB pool) and the
Celery task metrics."""

from __future__ import annotations

import datetime as dt
import os
import time
from decimal import Decimal

import pytest
from django.urls import path
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from integrations.payments import sandbox
from petpro_booking.urls import urlpatterns as project_urlpatterns
from reservations.models import Reservation
from reservations.tasks import reservations_expire_due

from ..conftest import api_client_for
from ..factories import ClinicServiceFactory, LocalPetFactory, SlotFactory

# Holds and bookings run in durable SERIALIZABLE transactions; the sandbox settles in a thread.
pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def present(samples, name: str, **labels: str) -> float:
    """The sample's value; fails when it is not exported at all (`value` reads that as 0)."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} is not exported"
    return samples[key]


def total(samples, name: str, **labels: str) -> float:
    """Sum over every label set that contains `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def sandbox_payments(settings, monkeypatch):
    settings.PAYMENT_SERVICE_URL = ""
    settings.PAYMENT_SANDBOX_DELAY_SECONDS = 0.05
    settings.PAYMENT_SANDBOX_OUTCOME = "succeeded"
    provider = sandbox.SandboxPaymentProvider()
    monkeypatch.setattr(sandbox, "_provider", provider)
    yield provider
    provider.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_metrics_expose_the_business_metrics_after_a_booking_flow(
    anon_client, owner_client, owner_pet, clinic, sandbox_payments, settings
):
    # Single-process here: the events app's own backlog callback (cached) answers.
    settings.EVENT_BACKLOG_METRIC_CACHE_SECONDS = 0
    service = ClinicServiceFactory(
        id="svc-metrics", clinic=clinic, requires_payment=True, price=Decimal("40.00")
    )
    slot, other_slot = SlotFactory(service=service), SlotFactory(service=service)
    before = scrape(anon_client)

    # Hold, confirm into a booking, pay (sandbox + signed webhook), reschedule, cancel.
    hold = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": owner_pet.id}, format="json"
    )
    assert hold.status_code == 201, hold.json()
    booking = owner_client.post(f"/api/v1/reservations/{hold.json()['id']}/confirm")
    assert booking.status_code == 201, booking.json()
    booking_id = booking.json()["id"]
    payment = owner_client.post(f"/api/v1/bookings/{booking_id}/payment")
    assert payment.status_code == 201, payment.json()
    assert wait_for(
        lambda: owner_client.get(f"/api/v1/bookings/{booking_id}").json()["status"] == "confirmed"
    )
    moved = owner_client.post(
        f"/api/v1/bookings/{booking_id}/reschedule", {"slot_id": str(other_slot.id)}, format="json"
    )
    assert moved.status_code == 200, moved.json()
    cancelled = owner_client.post(
        f"/api/v1/bookings/{booking_id}/cancel", {"reason": "plans changed"}, format="json"
    )
    assert cancelled.status_code == 200, cancelled.json()

    # A second owner finds the slot full; a third hold expires through the expiry job.
    LocalPetFactory(owner__id="owner-2", id="pet-2")
    second = api_client_for(sub="owner-2", roles=["pet_owner"])
    full_slot = SlotFactory(service=service)
    assert (
        owner_client.post(
            "/api/v1/reservations",
            {"slot_id": str(full_slot.id), "pet_id": owner_pet.id},
            format="json",
        ).status_code
        == 201
    )
    refused = second.post(
        "/api/v1/reservations", {"slot_id": str(full_slot.id), "pet_id": "pet-2"}, format="json"
    )
    assert refused.status_code == 409
    Reservation.objects.filter(slot=full_slot).update(
        expires_at=timezone.now() - dt.timedelta(minutes=10)
    )
    after_lag = scrape(anon_client)
    reservations_expire_due.delay()

    after = scrape(anon_client)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    # Requests, per route and method (latency histogram) and by status.
    assert delta(
        "django_http_requests_latency_seconds_by_view_method_count",
        view="reservation-list",
        method="POST",
    ) == pytest.approx(3)
    assert delta(
        "django_http_responses_total_by_status_view_method_total",
        view="reservation-list",
        status="409",
    ) == pytest.approx(1)
    # Business counters.
    assert delta("petpro_holds_total", outcome="created") == pytest.approx(2)
    assert delta("petpro_holds_total", outcome="unavailable") == pytest.approx(1)
    assert delta("petpro_bookings_total", change="created") == pytest.approx(1)
    assert delta("petpro_bookings_total", change="confirmed") == pytest.approx(1)
    assert delta("petpro_bookings_total", change="rescheduled") == pytest.approx(1)
    assert delta("petpro_bookings_total", change="cancelled") == pytest.approx(1)
    assert delta("petpro_payments_total", outcome="created") == pytest.approx(1)
    assert delta("petpro_payments_total") >= 2  # created + the webhook's outcome
    assert delta("petpro_expired_holds_total", how="job") == pytest.approx(1)
    assert delta("petpro_lock_wait_seconds_count") >= 3
    # Celery task metrics (eager here; the worker exposes the same on its metrics port).
    assert delta(
        "petpro_celery_tasks_total", task="reservations.reservations_expire_due"
    ) == pytest.approx(1)
    # Scrape-time gauges: the outbox holds the flow's events (the relay is off in tests).
    assert value(after, "petpro_outbox_backlog") >= 8
    assert value(after, "petpro_outbox_oldest_age_seconds") >= 0
    assert value(after_lag, "petpro_expiry_lag_seconds") >= 590
    assert value(after, "petpro_expiry_lag_seconds") == 0
    for check in ("database", "redis", "event_broker"):
        assert value(after, "petpro_health_check_up", check=check) == 1
    assert value(after, "petpro_db_pool_connections", alias="default", state="max") == 10
    # Families present even before their first sample (dashboards and alerts can rely on them).
    exposition = anon_client.get("/metrics").content.decode()
    for family in (
        "petpro_serializable_retries_total",
        "petpro_redis_unavailable_fallbacks_total",
        "petpro_breaker_state",
        "petpro_outbox_failed",
    ):
        assert f"# TYPE {family}" in exposition


def test_a_failing_health_check_shows_as_zero(anon_client, settings, db):
    settings.EVENT_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    samples = scrape(anon_client)
    assert present(samples, "petpro_health_check_up", check="event_broker") == 0
    assert present(samples, "petpro_health_check_up", check="database") == 1


def test_http_metrics_name_unrouted_paths_and_unknown_methods(anon_client):
    """The middleware's labels are django-prometheus's: a path no route matches is
    `<unnamed view>`, a method HTTP does not define is `<invalid method>` (one label value,
    whatever a client invents); each answer is counted once and timed once."""
    before = scrape(anon_client)
    assert anon_client.get("/no-such-page").status_code == 404
    anon_client.generic("BREW", "/healthz")
    after = scrape(anon_client)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    responses = "django_http_responses_total_by_status_view_method_total"
    latency = "django_http_requests_latency_seconds_by_view_method_count"
    assert delta(responses, view="<unnamed view>", method="GET", status="404") == 1
    assert delta(latency, view="<unnamed view>", method="GET") == 1
    assert delta(responses, view="healthz", method="<invalid method>") == 1
    assert delta(latency, view="healthz", method="<invalid method>") == 1
    # The scrape between them is counted too, by the time of the next one.
    assert delta(responses, view="prometheus-django-metrics", method="GET", status="200") == 1


class Boom(Exception):
    pass


def boom_view(request):
    raise Boom("a view that lets an exception out")


# The project's routes and one that fails (test_http_metrics_count_an_exception_a_view_lets_out).
urlpatterns = [*project_urlpatterns, path("boom", boom_view, name="boom")]


def test_http_metrics_count_an_exception_a_view_lets_out(anon_client, settings):
    """The exception is counted by type and route, and its 500 answer with the others."""
    settings.ROOT_URLCONF = __name__
    anon_client.raise_request_exception = False
    before = scrape(anon_client)
    assert anon_client.get("/boom").status_code == 500
    after = scrape(anon_client)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("django_http_exceptions_total_by_type_total", type="Boom") == 1
    assert delta("django_http_exceptions_total_by_view_total", view="boom") == 1
    assert (
        delta(
            "django_http_responses_total_by_status_view_method_total",
            view="boom",
            method="GET",
            status="500",
        )
        == 1
    )


def test_a_start_up_reset_keeps_this_process_s_own_sample_files(tmp_path):
    """Metrics made at import time already write to this process's files; a reset that
    deleted them (as it did before the relay served its metrics) lost every sample."""
    from petpro_booking.core.metrics_export import reset_multiprocess_dir

    own = tmp_path / f"counter_{os.getpid()}.db"
    dead = tmp_path / "counter_4194303.db"
    for sample_file in (own, dead):
        sample_file.write_bytes(b"\0" * 8)
    reset_multiprocess_dir(str(tmp_path))
    assert own.exists()
    assert not dead.exists()


def test_a_refused_hold_is_counted_under_its_reason(
    anon_client, clinic_service, owner_client, owner_pet
):
    """petpro_holds_total{outcome}: busy and unavailable as before, every other refusal under
    its own code (a started slot, a pet that is not the caller's), once."""
    started = SlotFactory(service=clinic_service, start_at=timezone.now() - dt.timedelta(hours=1))
    open_slot = SlotFactory(service=clinic_service)
    before = scrape(anon_client)
    answers = [
        owner_client.post(
            "/api/v1/reservations", {"slot_id": str(started.id), "pet_id": "pet-1"}, format="json"
        ),
        owner_client.post(
            "/api/v1/reservations",
            {"slot_id": str(open_slot.id), "pet_id": "someone-elses-pet"},
            format="json",
        ),
    ]
    assert [a.status_code for a in answers] == [409, 400], [a.json() for a in answers]
    after = scrape(anon_client)

    def delta(**labels):
        return total(after, "petpro_holds_total", **labels) - total(
            before, "petpro_holds_total", **labels
        )

    assert delta(outcome="slot_started") == pytest.approx(1)
    assert delta(outcome="invalid_pet") == pytest.approx(1)
    assert delta(outcome="unavailable") == pytest.approx(0)
    assert delta() == pytest.approx(2)
