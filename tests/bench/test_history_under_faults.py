"""The history checker's short run (issue 16 point 2): a few hundred operations through the
HTTP API against the production topology (gunicorn, Celery worker and beat, RabbitMQ, a
PRIVATE redis-server, the service stubs), while the run kills Redis and restarts it and
kill -9s a gunicorn worker; then the offline check finds no violation. The long version with
every fault is `make bench-history` (docs/benchmarks.md)."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.parse

import pytest

from benchmarks.bench_history import run_history
from benchmarks.topology import AMQP_URL, Options, Ports

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("redis-server") and shutil.which("rabbitmqctl")),
        reason="needs redis-server and rabbitmqctl on this machine",
    ),
]

SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def short_plan(stack, seconds, *, broker, real_broker):
    def redis_outage() -> str:
        stack.redis_stop()
        time.sleep(2)
        stack.redis_start()
        return "redis-server SIGKILL, restarted empty after 2 s"

    def web_worker() -> str:
        return f"gunicorn worker {stack.kill_web_worker()} SIGKILL"

    return [
        (seconds * 0.3, "Redis stop/restart", redis_outage),
        (seconds * 0.65, "kill -9 gunicorn worker", web_worker),
    ]


def test_a_short_history_under_faults_has_no_violation():
    ports = Ports(
        web=free_port(),
        baseline=free_port(),
        user=free_port(),
        clinic=free_port(),
        payment=free_port(),
        redis=free_port(),
    )
    database = os.environ.get("TEST_DATABASE_NAME", "test_pp") + "_history"
    options = Options(
        database=database,
        # A vhost of its own: with `make bench`'s (a developer's stack up on this machine),
        # the other stack's Celery worker took this one's relay tasks and the outbox stayed.
        amqp_url=urllib.parse.urlsplit(AMQP_URL)._replace(path=f"/{database}").geturl(),
        owners=60,
        slots=12,
        searched=12,
        capacity=2,
        baseline=False,
        ports=ports,
        extra_env={"RESERVATION_TTL_SECONDS": "8"},
    )

    result = run_history(
        seconds=SECONDS,
        # Bounded by time, not by a count: a fast machine finished 1,500 operations before
        # the second fault was due, and the run then had one fault in place of two.
        operations=100_000,
        connections=8,
        options=options,
        broker=False,
        plan_factory=short_plan,
    )

    assert [f.what for f in result.faults] == ["Redis stop/restart", "kill -9 gunicorn worker"]
    assert not any("FAILED" in f.detail for f in result.faults), result.faults
    acknowledged = [op for op in result.ops if 200 <= op.status < 300]
    assert len(result.ops) >= 100, len(result.ops)
    assert len(acknowledged) >= 50, len(acknowledged)
    assert {op.kind for op in acknowledged} >= {"hold", "confirm", "search"}
    assert any(op.status == 409 for op in result.ops)  # slots were full at times
    assert result.drain is not None, "the outbox was not drained after the faults"
    assert result.violations.total == 0, [v for v in result.violations.items() if v[1]]
