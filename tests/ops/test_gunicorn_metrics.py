"""The web container's gunicorn: /metrics sums every worker (multiprocess mode), a dead worker's
gauges leave with it (child_exit), and everything it logs is JSON."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gunicorn did not listen on {port}")


@pytest.fixture
def gunicorn(django_db_setup, django_db_blocker, tmp_path):
    """gunicorn with two sync workers on the test database, started as the image starts it."""
    with django_db_blocker.unblock():
        database = connection.settings_dict["NAME"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="petpro_booking.settings.test",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        LOG_LEVEL="DEBUG",  # the probes' access lines too: they tell which worker answered
        DB_POOL_METRICS_INTERVAL_SECONDS="0.2",
    )
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(GUNICORN), "petpro_booking.wsgi", "-c", "petpro_booking/gunicorn_conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(base_url: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def get_requests(samples) -> float:
    """GET requests answered, over every route and status."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "django_http_responses_total_by_status_view_method_total"
        and ("method", "GET") in labels
    )


def pool_max(samples) -> float:
    return samples.get(
        ("petpro_db_pool_connections", frozenset({("alias", "default"), ("state", "max")})), 0.0
    )


def hammer(base_url: str, count: int = 40) -> None:
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: client.get(f"{base_url}/readyz").status_code, range(count))
        )
    assert statuses == [200] * count


def access_pids(log_path: Path) -> set[int]:
    """Workers that wrote an access line."""
    pids = set()
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if record["message"] == "request finished":
            pids.add(record["pid"])
    return pids


def workers_of(process: subprocess.Popen) -> list[int]:
    return sorted(child.pid for child in psutil.Process(process.pid).children())


# The workers read the test database, which pytest-django creates only for a session with a
# test that asks for it: run alone, this test would give gunicorn a database that does not exist.
@pytest.mark.django_db(transaction=True)
def test_metrics_sum_every_worker_and_forget_dead_ones(gunicorn):
    process, base_url, log_path = gunicorn
    hammer(base_url)

    totals = [get_requests(scrape(base_url)) for _ in range(6)]
    # One count over both workers: every scrape sees the 40 requests and the scrapes before it
    # (an answer is counted once it is made), whichever worker answers it (per-worker numbers
    # would jump back and forth).
    assert totals[0] >= 40
    assert [b - a for a, b in itertools.pairwise(totals)] == [1.0] * 5
    samples = scrape(base_url)
    assert pool_max(samples) == 20  # two live workers, a pool of 10 each

    totals_pids = workers_of(process)
    victim = totals_pids[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = workers_of(process)
        if len(workers) == 2 and victim not in workers:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("gunicorn did not replace the killed worker")
    (newcomer,) = set(workers) - set(totals_pids)
    deadline = time.monotonic() + 20
    while newcomer not in access_pids(log_path) and time.monotonic() < deadline:
        hammer(base_url)  # /readyz: a database query, so the newcomer opens its pool
    assert newcomer in access_pids(log_path), "the new worker never served a request"
    time.sleep(0.5)  # its pool sampler's next tick

    samples = scrape(base_url)
    # Counters keep what the dead worker counted; its live gauges are gone (child_exit).
    assert get_requests(samples) >= totals[-1] + 1 + 40
    assert pool_max(samples) == 20  # not 30: the killed worker's pool no longer counts

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line gunicorn and Django wrote
    assert all(r["service"] == "petpro-booking" and "traceId" in r for r in records)
    booted = [r for r in records if r["logger"] == "gunicorn.error" and "Booting" in r["message"]]
    assert booted
    assert all(r["component"] == "web" for r in records)


def test_gunicorn_builds_no_access_line_of_its_own():
    """The app writes the access line (JSON, with ids); gunicorn, configured by a logconfig
    dict, would build its own line's fields for every request and drop them."""
    import runpy
    from unittest import mock

    import gunicorn.config

    with mock.patch.dict(os.environ):
        conf = runpy.run_path(str(ROOT / "petpro_booking" / "gunicorn_conf.py"))
    cfg = gunicorn.config.Config()
    cfg.set("logconfig_dict", conf["logconfig_dict"])
    logger = conf["logger_class"](cfg)
    assert logger.access_log_enabled  # gunicorn's own logger would build the line...
    logger.access(None, None, {}, 0.0)  # ...from the response (None here: it would fail)
    # Workers are recycled rarely: at the seed's peak (~100 requests/s a worker) every few
    # minutes at most, not every ~20 s as 2,000 did.
    assert conf["max_requests"] >= 20_000
