"""OpenTelemetry: a request's spans reach into the Celery task it enqueues (through a real
worker and broker transport), its trace id is on the logs of both and in the message metadata;
nothing is installed when tracing is off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from celery.contrib.testing.worker import start_worker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from petpro_booking.celery import app as celery_app
from petpro_booking.core import tracing
from petpro_booking.events.models import Event

from ..bookings.payment_fixtures import paid_slot  # noqa: F401  (fixture)
from .log_capture import captured_logs


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = tracing.build_tracer_provider(exporters=[exporter], sampler=ALWAYS_ON)
    tracing.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        tracing.uninstrument()
        provider.shutdown()


@pytest.fixture
def celery_worker(settings, tmp_path):
    """A real Celery worker in a thread, consuming from the broker transport (in-memory here,
    so no other test's queue is touched); tasks are published, not run eagerly."""
    settings.EVENT_RELAY_ON_COMMIT = True
    settings.EVENT_BROKER_URL = ""  # the relay writes its messages to the log sink
    settings.EVENT_LOG_SINK_PATH = str(tmp_path / "events.log")
    assert celery_app.conf.broker_url.startswith("memory")
    celery_app.conf.task_always_eager = False
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="INFO"):
            yield tmp_path / "events.log"
    finally:
        celery_app.conf.task_always_eager = True


def _wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# The worker thread reads what the request committed.
@pytest.mark.django_db(transaction=True)
def test_the_request_trace_reaches_the_messages_through_a_coalesced_relay_pass(
    spans, celery_worker, staff_client, clinic_service
):
    """The relay pass is shared by every commit of its interval (events/nudge.py), so it runs
    in a trace of its own, linked across the broker to the nudge that sent it; the request's
    trace travels with the event (metadata) into every message it becomes."""
    with captured_logs() as logs:
        response = staff_client.post(
            "/api/v1/slots",
            {
                "clinic_id": clinic_service.clinic_id,
                "service_id": clinic_service.id,
                "start_at": "2031-04-07T10:00:00+02:00",
                "end_at": "2031-04-07T10:30:00+02:00",
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        event = Event.objects.get(aggregate_id=response.json()["id"])
        # The after-commit nudge published `events.relay_outbox`; the worker relays the event.
        assert _wait_until(lambda: Event.objects.filter(pk=event.pk, published_at__isnull=False))
        assert _wait_until(
            lambda: any(s.name.startswith("run/") for s in spans.get_finished_spans())
        )

    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == SpanKind.SERVER]
    (producer,) = [s for s in finished if s.name == "apply_async/events.relay_outbox"]
    (consumer,) = [s for s in finished if s.name == "run/events.relay_outbox"]
    trace_id = server.context.trace_id
    # The nudge is sent from the nudger thread, outside the request: not a child of it.
    assert producer.context.trace_id != trace_id
    # Linked across the broker through the message headers (the task ran in another thread).
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.kind == SpanKind.CONSUMER
    assert any(s.name == "EVALSHA" or s.attributes.get("db.system") == "redis" for s in finished)

    hex_trace_id = format(trace_id, "032x")
    (access,) = logs.messages("request finished")
    assert access["traceId"] == hex_trace_id
    task_lines = [line for line in logs.lines if line.get("taskName") == "events.relay_outbox"]
    assert task_lines, "the task wrote no log line"
    assert {line["traceId"] for line in task_lines} == {format(consumer.context.trace_id, "032x")}

    event.refresh_from_db()
    assert event.metadata["trace_id"] == hex_trace_id
    analytics = [json.loads(line) for line in celery_worker.read_text().splitlines()]
    assert analytics, "the relay wrote no message to the log sink"
    assert {m["body"]["metadata"]["trace_id"] for m in analytics if "metadata" in m["body"]} == {
        hex_trace_id
    }


@pytest.mark.django_db(transaction=True)
def test_a_task_the_request_enqueues_runs_in_the_requests_trace(
    spans,
    celery_worker,
    owner_client,
    owner_pet,
    paid_slot,  # noqa: F811  (the fixture imported above)
    settings,
):
    """An owner cancels a paid booking: the request enqueues the refund after its commit, a
    real worker runs it, and the task's span is a child of the request's publish span in the
    same trace; the task's log lines carry the request's trace id and name the booking."""
    from bookings.models import Booking

    from ..bookings.payment_fixtures import book_paid
    from ..factories import PaymentRecordFactory

    settings.PAYMENT_SERVICE_URL = ""  # the sandbox answers the refund in-process
    booking = book_paid(paid_slot)
    Booking.objects.filter(id=booking.id).update(status="confirmed")
    PaymentRecordFactory(
        booking=booking,
        payment_id="pay_trace_1",
        status="succeeded",
    )
    spans.clear()
    with captured_logs() as logs:
        response = owner_client.post(
            f"/api/v1/bookings/{booking.id}/cancel", {"reason": "we moved"}, format="json"
        )
        assert response.status_code == 200, response.json()
        assert _wait_until(
            lambda: any(
                s.name == "run/bookings.payment_refund_owed" for s in spans.get_finished_spans()
            )
        )

    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == SpanKind.SERVER]
    (producer,) = [s for s in finished if s.name == "apply_async/bookings.payment_refund_owed"]
    (consumer,) = [s for s in finished if s.name == "run/bookings.payment_refund_owed"]
    trace_id = server.context.trace_id
    assert producer.context.trace_id == trace_id  # published by the request's on-commit hook
    assert consumer.context.trace_id == trace_id  # across the broker, in the worker's thread
    assert consumer.parent.span_id == producer.context.span_id
    task_lines = [
        line for line in logs.lines if line.get("taskName") == "bookings.payment_refund_owed"
    ]
    assert task_lines, "the task wrote no log line"
    assert {line["traceId"] for line in task_lines} == {format(trace_id, "032x")}
    assert any(line.get("bookingId") == str(booking.id) for line in task_lines)


def _run_python(script: str, **env: str) -> str:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "LOG_LEVEL"
    }
    environment.update(DJANGO_SETTINGS_MODULE="petpro_booking.settings.test", **env)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def test_tracing_off_installs_nothing():
    out = _run_python(
        "import sys, django; django.setup(); from django.conf import settings; "
        "from opentelemetry import trace; "
        "print(any(m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.instrumentation', "
        "'opentelemetry.exporter')) for m in sys.modules), "
        "any('opentelemetry' in m for m in settings.MIDDLEWARE), "
        "type(trace.get_tracer_provider()).__name__)"
    )
    assert out.split() == ["False", "False", "ProxyTracerProvider"]


def test_tracing_on_from_the_standard_env_vars_with_a_parent_based_ratio_sampler():
    out = _run_python(
        "import django; django.setup(); from django.conf import settings; "
        "from opentelemetry import trace; p = trace.get_tracer_provider(); "
        "print(type(p).__name__, p.sampler.get_description().replace(' ', ''), "
        "any('opentelemetry' in m for m in settings.MIDDLEWARE), "
        "p.resource.attributes['service.name'])",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
        OTEL_TRACES_SAMPLER_ARG="0.1",
        OTEL_SERVICE_NAME="petpro-booking-test",
    )
    kind, sampler, middleware, service = out.split()
    assert kind == "TracerProvider"
    assert sampler.startswith("ParentBased{root:TraceIdRatioBased{0.1}")
    assert middleware == "True"
    assert service == "petpro-booking-test"


def test_a_named_sampler_is_taken_from_the_environment():
    out = _run_python(
        "import django; django.setup(); from opentelemetry import trace; "
        "print(trace.get_tracer_provider().sampler.get_description())",
        OTEL_TRACES_EXPORTER="console",
        OTEL_TRACES_SAMPLER="always_off",
    )
    assert out == "AlwaysOffSampler"


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_which_environments_turn_tracing_on(monkeypatch, env, configured):
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.tracing_configured() is configured


def test_exporters_come_from_otel_traces_exporter(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    otlp, console = tracing._exporters_from_env()
    assert isinstance(otlp, OTLPSpanExporter)
    assert isinstance(console, ConsoleSpanExporter)
    assert otlp._endpoint == "http://127.0.0.1:4318/v1/traces"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        tracing._exporters_from_env()
