"""The embedded default boots with no servers: migrate, demo data, serve, search, hold and
confirm over HTTP; the hot path's precompiled SQL on SQLite; the embedded clock cancels an
unpaid booking after a short PAYMENT_DEADLINE_SECONDS, as `make run` does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 4
SERVER_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "EVENT_BROKER_URL",
    "PAYMENT_SERVICE_URL",
    "USER_SERVICE_URL",
    "CLINIC_SERVICE_URL",
    "DATABASE_REPLICA_URLS",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("embedded")
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env.update(
        DJANGO_SETTINGS_MODULE="petpro_booking.settings.local",
        DATABASE_URL=f"sqlite:///{workdir / 'embedded.sqlite3'}",
        EVENT_LOG_SINK_PATH=str(workdir / "events.log"),
        LOG_LEVEL="WARNING",
        PAYMENT_DEADLINE_SECONDS=str(DEADLINE_SECONDS),  # the clock's sweep: every second
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    subprocess.run(
        [*manage, "load_demo_data", "--quiet-tokens", "--days", "7"], env=env, check=True, cwd=ROOT
    )
    token = subprocess.run(
        [*manage, "issue_token", "--sub", "owner-anna", "--role", "pet_owner"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(
        [*manage, "run_embedded", "--noreload", f"127.0.0.1:{port}"],
        env={**env, "LOG_LEVEL": "INFO"},  # the clock's lines, as `make run` shows them
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        else:
            server.kill()
            output = (workdir / "server.log").read_text()[-2000:]
            pytest.fail(f"embedded server did not start: {output}")
        yield base, token, workdir
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, response.read()


def test_search_finds_available_demo_slots(embedded_server):
    base, token, _ = embedded_server
    status, body = get(f"{base}/api/v1/slots?available=true", token)
    page = json.loads(body)
    assert status == 200
    assert page["count"] > 0
    assert all(slot["available_capacity"] > 0 for slot in page["results"])
    clinics = json.loads(get(f"{base}/api/v1/clinics", token)[1])
    assert {c["timezone"] for c in clinics["results"]} == {"Europe/Berlin", "Europe/Lisbon"}


def test_docs_schema_and_admin_are_reachable(embedded_server):
    base, _, _ = embedded_server
    assert get(f"{base}/api/docs/")[0] == 200
    status, schema = get(f"{base}/api/schema/?format=json")
    assert status == 200
    assert "/api/v1/slots" in json.loads(schema)["paths"]
    assert get(f"{base}/admin/login/")[0] == 200


def post(url: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_embedded_clock_cancels_an_unpaid_booking_after_the_deadline(embedded_server):
    """No celery, no beat: `run_embedded` runs the beat schedule of settings in a thread."""
    base, token, workdir = embedded_server
    page = json.loads(get(f"{base}/api/v1/slots?available=true&page_size=100", token)[1])
    paid = set()
    for clinic_id in {slot["clinic_id"] for slot in page["results"]}:
        offered = json.loads(get(f"{base}/api/v1/clinics/{clinic_id}/services", token)[1])
        paid |= {
            s["id"] for s in offered["results"] if s["requires_payment"] and "dog" in s["species"]
        }
    slot = next(slot for slot in reversed(page["results"]) if slot["service_id"] in paid)
    status, hold = post(
        f"{base}/api/v1/reservations", token, {"slot_id": slot["id"], "pet_id": "pet-bello"}
    )
    assert status == 201, hold
    status, booking = post(f"{base}/api/v1/reservations/{hold['id']}/confirm", token, {})
    assert (status, booking["status"]) == (201, "pending_payment")
    deadline = time.monotonic() + DEADLINE_SECONDS + 15
    while time.monotonic() < deadline:
        current = json.loads(get(f"{base}/api/v1/bookings/{booking['id']}", token)[1])
        # The clock logs the job's result after the job has committed: a reader can see the
        # booking cancelled a moment before the line is written (a loaded machine did).
        log = (workdir / "server.log").read_text()
        if current["status"] == "cancelled" and "'cancelled': 1" in log:
            break
        time.sleep(0.5)
    assert current["status"] == "cancelled"
    assert "embedded clock: cancel-unpaid-bookings" in log
    assert "'cancelled': 1" in log
    # The relay on SQLite: the cancellation goes to the log sink as one notification per
    # channel the owner chose (the demo's Anna: email and push), her preferences looked up.
    notes: list[dict] = []
    while time.monotonic() < deadline + 10 and len(notes) < 2:
        time.sleep(0.2)
        notes = [
            record
            for record in sink_records(workdir)
            if record["routing_key"].startswith("booking.notification.")
            and record["body"].get("booking_id") == booking["id"]
        ]
    assert sorted(
        (n["body"]["template"], n["body"]["channel"], n["body"]["recipient"]["user_id"])
        for n in notes
    ) == [
        ("booking_cancelled", "email", "owner-anna"),
        ("booking_cancelled", "push", "owner-anna"),
    ]


def sink_records(workdir: Path) -> list[dict]:
    """The messages the relay wrote to the embedded log sink (EVENT_LOG_SINK_PATH)."""
    sink = workdir / "events.log"
    if not sink.exists():
        return []
    text = sink.read_text()
    written = text[: text.rfind("\n") + 1]  # a line still being written is left for later
    return [json.loads(line) for line in written.splitlines() if line.strip()]


def test_hold_and_confirm_on_sqlite(embedded_server):
    """The hold path's precompiled reads (slot with names, the pet) on SQLite as well."""
    base, token, _ = embedded_server
    page = json.loads(get(f"{base}/api/v1/slots?available=true&page_size=100", token)[1])
    accepts_dogs = set()
    for clinic_id in {slot["clinic_id"] for slot in page["results"]}:
        offered = json.loads(get(f"{base}/api/v1/clinics/{clinic_id}/services", token)[1])
        accepts_dogs |= {s["id"] for s in offered["results"] if "dog" in s["species"]}
    slot = next(slot for slot in page["results"] if slot["service_id"] in accepts_dogs)
    status, hold = post(
        f"{base}/api/v1/reservations", token, {"slot_id": slot["id"], "pet_id": "pet-bello"}
    )
    assert status == 201, hold
    assert hold["status"] == "held"
    status, refused = post(
        f"{base}/api/v1/reservations",
        token,
        {"slot_id": slot["id"], "pet_id": "pet-kiwi"},  # João's bird, not Anna's
    )
    assert (status, refused["error"]["code"]) == (400, "invalid_pet")
    status, booking = post(f"{base}/api/v1/reservations/{hold['id']}/confirm", token, {})
    assert status == 201, booking
    assert booking["slot_id"] == slot["id"]


SQLITE_ROWS = """
import datetime as dt, uuid
from django.db import transaction
from petpro_booking.core.db import RowInserter, RowReader
from petpro_booking.events.models import Event
from slots.models import Slot

def same(found, expected):
    for field in type(expected)._meta.concrete_fields:
        got, want = getattr(found, field.attname), getattr(expected, field.attname)
        assert (got, type(got)) == (want, type(want)), (field.name, got, want)

expected = Slot.objects.select_related("clinic", "service").order_by("start_at").first()
found = RowReader(Slot, "clinic", "service").get(str(expected.id))
same(found, expected)
same(found.clinic, expected.clinic)
same(found.service, expected.service)
with transaction.atomic():
    event = RowInserter(Event).insert(Event(
        aggregate_type="slot", aggregate_id=str(uuid.uuid4()), aggregate_version=1,
        event_type="SlotChecked", payload={"ok": True, "n": 1}))
same(event, Event.objects.get(id=event.id))
print("rows ok")
"""


def test_precompiled_reads_and_inserts_match_the_orm_on_sqlite(embedded_server):
    """Values and their Python types (UUID, bool, Decimal, aware datetime, JSON) read and
    written by RowReader/RowInserter are the ORM's, on the embedded SQLite database."""
    _, _, workdir = embedded_server
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env.update(
        DJANGO_SETTINGS_MODULE="petpro_booking.settings.local",
        DATABASE_URL=f"sqlite:///{workdir / 'embedded.sqlite3'}",
        LOG_LEVEL="WARNING",
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", SQLITE_ROWS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows ok" in result.stdout
