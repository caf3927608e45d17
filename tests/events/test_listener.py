"""The relay woken by LISTEN/NOTIFY (`manage.py outbox listen`, `EVENT_RELAY_NUDGE=notify`),
against the real PostgreSQL and RabbitMQ: a commit's nudge wakes it and nothing else does
(short of its sweep), a burst costs one pass per interval, it survives its backend being
terminated and the broker going down, and the command stops cleanly on SIGTERM."""

from __future__ import annotations

import faulthandler
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections

from petpro_booking.events import tasks
from petpro_booking.events.listener import CHANNEL, RelayListener, listen_conninfo
from petpro_booking.events.selectors import outbox_backlog

from ..core.test_settings_ranges import settings_started_with
from .conftest import child_process_env, slot_events

pytestmark = pytest.mark.django_db(transaction=True)

# Aggregate ids of this run only: the events' version guard outlives each test's flush.
RUN = uuid.uuid4().hex[:8]


@contextmanager
def running(listener: RelayListener) -> Iterator[RelayListener]:
    """`listener` in a thread of its own, listening before the block starts."""
    stop = threading.Event()

    def run() -> None:
        try:
            listener.run(stop)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="test-outbox-listener", daemon=True)
    thread.start()
    try:
        assert listener.listening.wait(10), "the listener never listened"
        yield listener
    finally:
        stop.set()
        thread.join(10)
        if thread.is_alive():
            faulthandler.dump_traceback()
        assert not thread.is_alive(), "the listener did not stop"


def wait_for(condition, *, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def notify(times: int = 1) -> None:
    with psycopg.connect(autocommit=True, **listen_conninfo()) as other:
        for _ in range(times):
            other.execute("SELECT pg_notify(%s, '')", [CHANNEL])


def test_a_commits_nudge_wakes_the_listener_and_nothing_else_does(
    broker_tap, relay_on_commit, settings, monkeypatch
):
    settings.EVENT_RELAY_NUDGE = "notify"
    with running(RelayListener(sweep_seconds=60, min_interval=0.05)) as listener:
        assert wait_for(lambda: listener.passes == 1)  # the pass at start, outbox empty

        settings.EVENT_RELAY_ON_COMMIT = False  # no nudge: the event waits (60 s sweep)
        slot_events(f"listener-{RUN}-unnudged", 1)
        assert broker_tap.drain(timeout=1.0) == []
        assert listener.passes == 1
        assert outbox_backlog().unpublished == 1

        # As with a broker: the commit's hook only flags the nudger, whose thread notifies.
        settings.EVENT_RELAY_ON_COMMIT = True
        monkeypatch.setitem(tasks.relay_outbox.app.conf, "task_always_eager", False)
        monkeypatch.setattr(
            tasks.relay_outbox, "apply_async", lambda *a, **k: pytest.fail("a Celery send")
        )
        slot_events(f"listener-{RUN}-nudged", 1)
        messages = broker_tap.drain(expect=2, timeout=5)
    assert sorted(m.body["aggregate_id"] for m in messages) == [
        f"listener-{RUN}-nudged",
        f"listener-{RUN}-unnudged",
    ]
    assert outbox_backlog().unpublished == 0


def test_a_burst_of_notifications_costs_one_pass_per_interval(broker_tap):
    with running(RelayListener(sweep_seconds=60, min_interval=0.3)) as listener:
        assert wait_for(lambda: listener.passes == 1)
        started = time.monotonic()
        for index in range(20):
            slot_events(f"listener-{RUN}-burst-{index}", 1)
            notify(3)
        elapsed = time.monotonic() - started
        messages = broker_tap.drain(expect=20, timeout=10)
        assert wait_for(lambda: outbox_backlog().unpublished == 0)
        passes = listener.passes - 1
    assert len(messages) == 20
    assert 1 <= passes <= elapsed / 0.3 + 2, f"{passes} passes for 60 notifications"


def test_a_listen_database_url_is_where_the_listener_listens(broker_tap, settings):
    """EVENT_RELAY_LISTEN_DATABASE_URL (a session of its own past PgBouncer): the LISTEN
    connection is made from it (its application_name shows), and a NOTIFY still wakes it."""
    database = connection.settings_dict
    settings.EVENT_RELAY_LISTEN_DATABASE_URL = (
        f"postgresql://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}?application_name=relay-url-{RUN}"
    )
    with running(RelayListener(sweep_seconds=60, min_interval=0.05)) as listener:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query = %s",
                [f"relay-url-{RUN}", f"LISTEN {CHANNEL}"],
            )
            assert cursor.fetchone()[0] == 1
        slot_events(f"listener-{RUN}-via-url", 1)
        notify()
        assert len(broker_tap.drain(expect=1, timeout=5)) == 1
        assert listener.passes == 2


def test_the_sweep_publishes_without_any_notification(broker_tap):
    with running(RelayListener(sweep_seconds=0.5, min_interval=0.05)):
        slot_events(f"listener-{RUN}-swept", 2)
        assert len(broker_tap.drain(expect=2, timeout=5)) == 2
    assert outbox_backlog().unpublished == 0


def _listening_backends(*, terminate: bool = False) -> int:
    """This database's backends that LISTEN for the relay (terminated, with `terminate`)."""
    counted = "count(pg_terminate_backend(pid))" if terminate else "count(*)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {counted} FROM pg_stat_activity "  # noqa: S608 - one of two constants
            "WHERE query = %s AND datname = current_database() AND pid <> pg_backend_pid()",
            [f"LISTEN {CHANNEL}"],
        )
        return cursor.fetchone()[0]


def test_the_listener_listens_again_after_its_backend_is_terminated(broker_tap):
    with running(RelayListener(sweep_seconds=60, min_interval=0.05)) as listener:
        assert _listening_backends(terminate=True) >= 1
        assert wait_for(lambda: listener.connections == 2, timeout=15), "no reconnection"
        assert listener.listening.wait(5)
        slot_events(f"listener-{RUN}-after-reconnect", 1)
        notify()
        assert len(broker_tap.drain(expect=1, timeout=5)) == 1


def test_a_broker_outage_leaves_the_events_and_they_go_out_once_it_is_back(
    broker_tap, stop_rabbitmq
):
    with running(RelayListener(sweep_seconds=0.5, min_interval=0.05)) as listener:
        with stop_rabbitmq():
            slot_events(f"listener-{RUN}-outage", 2)
            notify()
            assert wait_for(lambda: listener.failures >= 1, timeout=15)
            assert outbox_backlog().unpublished == 2
        # No new notification: the backoff (at most the sweep) brings the next pass.
        assert len(broker_tap.drain(expect=2, timeout=30)) == 2
        assert wait_for(lambda: listener.failures == 0)
    assert outbox_backlog().unpublished == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_relays_until_sigterm_and_then_stops(broker_tap, private_exchange, tmp_path):
    env = child_process_env(
        EVENT_EXCHANGE=private_exchange,
        EVENT_RELAY_LISTEN_SWEEP_SECONDS="60",
        RELAY_METRICS_PORT=str(port := _free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "outbox", "listen"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(
            lambda: _listening_backends() == 1 or process.poll() is not None, timeout=60
        ), "the command never listened"
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        slot_events(f"listener-{RUN}-command", 1)
        notify()
        assert len(broker_tap.drain(expect=1, timeout=10)) == 1
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b'petpro_relay_listener_passes_total{woken_by="notify"} 1.0' in scraped
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "outbox listener stopped after" in out


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EVENT_RELAY_NUDGE", "carrier-pigeon", "EVENT_RELAY_NUDGE must be 'celery' or 'notify'"),
        ("EVENT_RELAY_LISTEN_SWEEP_SECONDS", "0", "EVENT_RELAY_LISTEN_SWEEP_SECONDS must be"),
        ("EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS", "-1", "MIN_INTERVAL_SECONDS 0 or more"),
    ],
)
def test_a_relay_setting_that_cannot_work_is_refused_at_start(variable, value, message):
    result = settings_started_with({variable: value})
    assert result.returncode != 0
    assert message in result.stderr
