"""JSON logs: mandatory fields, the request's ids and trace id, no PII."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from petpro_booking.core import logging as petpro_logging
from petpro_booking.core.logging import get_logger
from petpro_booking.events.models import Event

from .log_capture import captured_logs

MANDATORY = {"timestamp", "service", "traceId", "spanId", "level", "message"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_every_line_of_a_request_is_json_with_the_mandatory_fields_and_its_trace_id(
    owner_client, clinic_service, slot
):
    with captured_logs() as logs:
        response = owner_client.get(
            f"/api/v1/slots?clinic_id={clinic_service.clinic_id}",
            HTTP_TRACEPARENT=TRACEPARENT,
            HTTP_X_REQUEST_ID="req-abc-123",
        )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-abc-123"
    lines = logs.lines  # each line parses as JSON
    assert lines
    for line in lines:
        assert set(line) >= MANDATORY, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["timestamp"])
        assert line["service"] == "petpro-booking"
    (access,) = logs.messages("request finished")
    # Tracing is off in the tests: the caller's W3C trace id is continued all the same.
    assert access["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert re.fullmatch(r"[0-9a-f]{16}", access["spanId"])
    assert access["level"] == "info"
    assert access["requestId"] == "req-abc-123"
    assert access["userId"] == "owner-1"
    assert access["clinicId"] == clinic_service.clinic_id
    assert access["route"] == "slot-list"
    assert access["status"] == 200
    assert access["durationMs"] > 0


def test_logs_of_a_write_and_its_event_metadata_share_one_trace_id(staff_client, clinic_service):
    with captured_logs() as logs:
        response = staff_client.post(
            "/api/v1/slots",
            {
                "clinic_id": clinic_service.clinic_id,
                "service_id": clinic_service.id,
                "start_at": "2031-03-03T09:00:00+01:00",
                "end_at": "2031-03-03T09:30:00+01:00",
                "capacity": 2,
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    (access,) = logs.messages("request finished")
    assert re.fullmatch(r"[0-9a-f]{32}", access["traceId"])  # started here: no traceparent
    assert access["userId"] == "staff-1"
    event = Event.objects.get(aggregate_id=response.json()["id"], event_type="SlotCreated")
    assert event.metadata["trace_id"] == access["traceId"]
    assert event.metadata["correlation_id"] == access["requestId"]


def test_ids_from_the_route_are_bound_to_the_request_lines(owner_client, db):
    with captured_logs() as logs:
        response = owner_client.get("/api/v1/bookings/8d7b6c36-1111-4d0e-9a55-0a4f3c2e1b00")
    assert response.status_code == 404
    (access,) = logs.messages("request finished")
    assert access["bookingId"] == "8d7b6c36-1111-4d0e-9a55-0a4f3c2e1b00"
    assert access["status"] == 404
    # Django's own 4xx line comes after the middleware returned: it keeps the request's ids.
    (django_line,) = [line for line in logs.lines if line.get("logger") == "django.request"]
    assert django_line["traceId"] == access["traceId"]
    assert django_line["requestId"] == access["requestId"]


@pytest.mark.django_db(transaction=True)
def test_a_hold_and_its_confirm_name_their_hold_and_booking_in_the_access_line(
    owner_client, owner_pet, slot
):
    with captured_logs() as logs:
        held = owner_client.post(
            "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
        )
    assert held.status_code == 201, held.json()
    (access,) = logs.messages("request finished")
    assert access["reservationId"] == held.json()["id"]
    with captured_logs() as logs:
        confirmed = owner_client.post(f"/api/v1/reservations/{held.json()['id']}/confirm")
    assert confirmed.status_code == 201, confirmed.json()
    (access,) = logs.messages("request finished")
    assert access["reservationId"] == held.json()["id"]  # from the route's argument
    assert access["bookingId"] == confirmed.json()["id"]


def test_a_route_argument_that_is_no_id_is_not_logged_as_one(owner_client, db):
    with captured_logs() as logs:
        owner_client.get("/api/v1/slots/not%20an%20id%0Aforged/availability")
    (access,) = logs.messages("request finished")
    assert "slotId" not in access


def test_pii_never_reaches_a_log_line():
    secret_jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvd25lci0xIn0.c2lnbmF0dXJlLXZhbHVl"
    with captured_logs() as logs:
        get_logger("petpro.test").info(
            "owner alice@example.com paid",
            userId="owner-1",
            bookingId="b-1",
            email="alice@example.com",
            phone="+49 30 1234567",
            token=secret_jwt,
            payload={"amount": "40.00", "customer": {"email": "alice@example.com"}},
            webhook_body='{"payment_id": "p-1"}',
            pet_name="Rex",
        )
        logging.getLogger("petpro.stdlib").warning(
            "webhook from %s with Authorization: Bearer %s signed sha256=%s",
            "bob@example.org",
            secret_jwt,
            "ab" * 32,
        )
    raw = logs.raw
    for leaked in (
        "alice@example.com",
        "bob@example.org",
        "+49 30 1234567",
        secret_jwt,
        "Rex",
        "p-1",
        "ab" * 32,
    ):
        assert leaked not in raw
    structured, plain = logs.lines
    assert structured["userId"] == "owner-1"  # ids stay
    assert structured["bookingId"] == "b-1"
    assert structured["email"] == structured["token"] == structured["pet_name"] == "[redacted]"
    assert structured["payload"] == "[redacted]"
    assert structured["message"] == "owner [email] paid"
    assert plain["level"] == "warning"
    assert "[email]" in plain["message"]
    assert "Bearer [jwt]" in plain["message"]
    assert "sha256=[redacted]" in plain["message"]


def test_what_a_caller_sends_is_scanned_even_where_the_service_writes_ids(anon_client):
    """The service's own fields (time, level, trace ids, logger) are not scanned; the request
    id comes from the caller's X-Request-ID and is: a token there never reaches the line."""
    jwt_shaped = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig"
    with captured_logs() as logs:
        anon_client.get("/api/v1/slots", HTTP_X_REQUEST_ID=jwt_shaped)
    assert jwt_shaped not in logs.raw
    (access,) = logs.messages("request finished")
    assert access["requestId"] == "[jwt]"
    assert access["logger"] == "petpro.request"
    assert re.fullmatch(r"[0-9a-f]{32}", access["traceId"])


# Text made of the pieces the expressions look for, so that matches are frequent.
_PIECES = st.sampled_from(
    [
        "@",
        "a",
        "Z",
        "0",
        "9",
        ".",
        "-",
        "_",
        "+",
        " ",
        "(",
        ")",
        "=",
        "eyJ",
        "eyj",
        "EYJ",
        "Bearer ",
        "BEARER\t",
        "bearer",
        "sha256=",
        "SHA256=",
        "abcdef0123456789",
        "x.y",
        "İ",
        "ß",
    ]
)


@given(st.lists(_PIECES, max_size=40).map("".join))
def test_scrubbing_skips_an_expression_only_where_it_cannot_match(text):
    """Each expression runs only when the text holds what every match of it contains: the
    result is what running all of them in turn gives."""
    expected = text
    for pattern, replacement, _ in petpro_logging._PII_PATTERNS:
        expected = pattern.sub(replacement, expected)
    assert petpro_logging._scrub_text(text) == expected


@pytest.mark.parametrize(
    ("settings_module", "level"),
    [("petpro_booking.settings.local", "INFO"), ("petpro_booking.settings.production", "INFO")],
)
def test_log_level_defaults_per_environment(settings_module, level):
    env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_ALLOWED_HOSTS="booking.example.com",
        DATABASE_URL="postgres://u:p@127.0.0.1:5432/x",
        JWT_SIGNING_KEY="k",
        JWT_ISSUER="https://auth.petpro.example",
        JWT_AUDIENCE="booking-service",
        SERVICE_JWT_SIGNING_KEY="another-k",
        PAYMENT_WEBHOOK_SECRET="k",
        REDIS_URL="redis://127.0.0.1:6379/0",
        CELERY_BROKER_URL="amqp://127.0.0.1//",
        EVENT_BROKER_URL="amqp://127.0.0.1//",
        PAYMENT_SANDBOX="true",
        FIELD_ENCRYPTION_KEYS="Y29tcG9zZS1leGFtcGxlLWZpZWxkLWtleS0zMmJ5dGU=",
        PERSONAL_DATA_LOOKUP_KEY="k",
        ANALYTICS_PSEUDONYM_KEYS="k",
    )
    script = (
        "import logging, django; django.setup(); from django.conf import settings; "
        "print(settings.LOG_LEVEL, logging.getLevelName(logging.getLogger().level))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [level, level]


@pytest.mark.parametrize("traceparent", ["", "garbage", "00-" + "0" * 10 + "-x-01"])
def test_a_bad_traceparent_starts_a_new_trace(anon_client, traceparent):
    with captured_logs(logging.DEBUG) as logs:
        anon_client.get("/healthz", HTTP_TRACEPARENT=traceparent)
    (access,) = logs.messages("request finished")
    assert access["level"] == "debug"  # probes are quiet at INFO
    assert re.fullmatch(r"[0-9a-f]{32}", access["traceId"])
