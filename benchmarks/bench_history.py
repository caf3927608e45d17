"""The history checker under faults (issue 16 point 2), against the production topology:
every operation recorded, faults injected by the run itself, the history checked offline
(`benchmarks/history.py`).

`make bench-history` (`python -m benchmarks.run history`). Env: HISTORY_SECONDS (default 180;
the faults are spread over it), HISTORY_OPERATIONS (a safety cap, default 60,000),
HISTORY_REAL_BROKER_STOP=1 to stop
the whole RabbitMQ node with `rabbitmqctl stop_app` instead of blocking our vhost (only on a
machine nobody else uses).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kombu import Connection, Exchange, Queue

from .history import Event, Violations, check, history_factory
from .load import Load, Record
from .topology import Options, Topology, _pg, machine_load_line, rabbitmqctl

SECONDS = float(os.environ.get("HISTORY_SECONDS", "180"))
OPERATIONS = int(os.environ.get("HISTORY_OPERATIONS", "60000"))
REAL_BROKER_STOP = os.environ.get("HISTORY_REAL_BROKER_STOP", "0") == "1"
AUDIT_QUEUE = "bench.history.audit"
CONNECTIONS = 12
SLOTS = 100
CAPACITY = 2
HOLD_TTL_SECONDS = 20


@dataclass
class Fault:
    what: str
    start: float
    end: float = 0.0
    detail: str = ""


@dataclass
class HistoryResult:
    ops: list[Record]
    faults: list[Fault]
    violations: Violations
    events: int
    queued: int
    drain: float | None
    server_errors: list[Record] = field(default_factory=list)
    planned_faults: int = 0
    analytics_queue: int | None = None  # messages in the analytics queue (no consumer here)


def audit_queue_declare(amqp_url: str, exchange: str) -> None:
    """A durable queue bound to the event exchange with `#`: a copy of every message."""
    with Connection(amqp_url, connect_timeout=5) as conn:
        queue = Queue(
            AUDIT_QUEUE, Exchange(exchange, type="topic", durable=True), "#", durable=True
        )
        queue(conn.default_channel).declare()
        queue(conn.default_channel).purge()


def audit_queue_ids(amqp_url: str) -> set[str]:
    ids: set[str] = set()
    with Connection(amqp_url, connect_timeout=5) as conn:
        channel = conn.default_channel
        queue = Queue(AUDIT_QUEUE, channel=channel)
        while True:
            message = queue.get(no_ack=True)
            if message is None:
                break
            message_id = message.properties.get("message_id")
            if message_id:
                ids.add(str(message_id))
        queue.delete()
    return ids


def fault_plan(stack: Topology, seconds: float, *, broker: bool, real_broker: bool):
    """(at second, name, action) for one run: Redis down 3 s, a gunicorn worker and the
    Celery worker killed with SIGKILL (the worker restarted 2 s later, as a supervisor
    would), RabbitMQ away 6 s; twice over when the run is long enough."""

    def redis_outage() -> str:
        stack.redis_stop()
        time.sleep(3)
        stack.redis_start()
        return "redis-server SIGKILL, restarted empty after 3 s"

    def web_worker() -> str:
        return f"gunicorn worker {stack.kill_web_worker()} SIGKILL (master starts another)"

    def celery_worker() -> str:
        stack.kill_celery_worker()
        time.sleep(2)
        stack.worker_start()
        return "celery worker and its pool SIGKILL, restarted after 2 s"

    def broker_outage() -> str:
        stack.broker_outage_start(real=real_broker)
        time.sleep(6)
        stack.broker_restore()
        return (
            "RabbitMQ node stopped (stop_app), started again 6 s later"
            if real_broker
            else "vhost blocked (max-connections 0, its connections closed), unblocked 6 s "
            "later (the span includes rabbitmqctl's own time)"
        )

    steps: list[tuple[str, Callable[[], str]]] = [
        ("Redis stop/restart", redis_outage),
        ("kill -9 gunicorn worker", web_worker),
        ("kill -9 celery worker", celery_worker),
    ]
    if broker:
        steps.append(("RabbitMQ outage", broker_outage))
    rounds = 2 if seconds >= 90 else 1
    plan = []
    for round_ in range(rounds):
        for position, (name, action) in enumerate(steps):
            at = seconds * (round_ + (position + 1) / (len(steps) + 1)) / rounds
            plan.append((at, name, action))
    return plan


def inject(plan, t0: float, faults: list[Fault], stop: threading.Event) -> None:
    for at, name, action in plan:
        if stop.wait(max(0.0, t0 + at - time.time())):
            return
        fault = Fault(name, time.time())
        try:
            fault.detail = action()
        except Exception as exc:  # a fault that could not be injected is reported, not hidden
            fault.detail = f"FAILED to inject: {exc!r}"
        fault.end = time.time()
        faults.append(fault)


def collect(stack: Topology) -> tuple[list[Event], dict[str, int], dict[str, str]]:
    with _pg(stack.options.database) as conn:
        events = [
            Event(
                row[0],
                str(row[1]),
                row[2],
                row[3],
                row[4],
                row[5],
                row[6] if isinstance(row[6], dict) else json.loads(row[6]),
                row[7],
                row[8],
            )
            for row in conn.execute(
                "SELECT id, event_id, event_type, aggregate_type, aggregate_id, "
                "aggregate_version, payload, extract(epoch FROM created_at)::float8, "
                "published_at IS NOT NULL FROM events ORDER BY id"
            )
        ]
        capacity = {str(r[0]): r[1] for r in conn.execute("SELECT id, capacity FROM slots")}
        bookings = {str(r[0]): r[1] for r in conn.execute("SELECT id, status FROM bookings")}
    return events, capacity, bookings


def run_history(
    *,
    seconds: float,
    operations: int,
    connections: int = CONNECTIONS,
    options: Options | None = None,
    broker: bool = True,
    real_broker: bool = False,
    plan_factory=fault_plan,
) -> HistoryResult:
    options = options or Options(
        slots=SLOTS,
        searched=SLOTS,
        capacity=CAPACITY,
        baseline=False,
        extra_env={"RESERVATION_TTL_SECONDS": str(HOLD_TTL_SECONDS)},
    )
    options.extra_env.setdefault("RESERVATION_TTL_SECONDS", str(HOLD_TTL_SECONDS))
    with Topology(options) as stack:
        amqp_url = stack.env["EVENT_BROKER_URL"]
        audit_queue_declare(amqp_url, stack.env.get("EVENT_EXCHANGE", "petpro.booking"))
        load = Load(
            stack.ports.web,
            history_factory(stack.seed, connections),
            seconds=seconds,
            connections=connections,
            processes=2,
            max_requests=operations,
        )
        faults: list[Fault] = []
        stop = threading.Event()
        plan = plan_factory(stack, seconds, broker=broker, real_broker=real_broker)
        injector = threading.Thread(target=inject, args=(plan, time.time() + 0.2, faults, stop))
        injector.start()
        try:
            ops = load.run()
        finally:
            stop.set()
            injector.join()
        # Faults are over; the system must now catch up by itself (beat sweep, worker).
        drain = stack.drain_seconds(time.monotonic(), limit=90)
        time.sleep(1.0)  # the last confirms' messages routed to the audit queue
        events, capacity, bookings = collect(stack)
        queued = audit_queue_ids(amqp_url)
        analytics = queue_depth("booking.events.analytics", vhost=stack.vhost)
    violations = check(ops, events, capacity, bookings, queued)
    if analytics is not None and analytics < len(events):
        violations.messages.append(
            f"the analytics queue holds {analytics} messages for {len(events)} events"
        )
    result = HistoryResult(
        ops,
        faults,
        violations,
        len(events),
        len(queued),
        drain,
        [op for op in ops if op.status >= 500 and op.status != 503],
        len(plan),
        analytics,
    )
    return result


def queue_depth(name: str, *, vhost: str) -> int | None:
    """Messages ready in one queue of the stack's vhost (None when it does not exist)."""
    listing = rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "--no-table-headers")
    for line in listing.strip().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return int(parts[1])
    return None


def report(result: HistoryResult, seconds: float) -> str:
    by_kind: dict[str, Counter] = {}
    for op in result.ops:
        by_kind.setdefault(op.kind, Counter())[op.status or "no answer"] += 1
    op_rows = "\n".join(
        f"| {kind} | {sum(c.values()):,} | "
        + ", ".join(f"{code}: {n:,}" for code, n in sorted(c.items(), key=str))
        + " |"
        for kind, c in sorted(by_kind.items())
    )
    t0 = min((op.start for op in result.ops), default=0.0)
    fault_rows = "\n".join(
        f"| {f.start - t0:.1f} s | {f.end - t0:.1f} s | {f.what} | {f.detail} |"
        for f in result.faults
    )
    violation_rows = "\n".join(
        f"| {name} | {len(found)} | {'; '.join(found[:3])} |"
        for name, found in result.violations.items()
    )
    drained = "not within 90 s" if result.drain is None else f"{result.drain:.1f} s"
    return f"""## History checker under faults (issue 16)

{machine_load_line()}

The production topology of `benchmarks/topology.py` (production settings, gunicorn 2 x 4,
Celery worker and beat, RabbitMQ vhost `wt-bench`, private Redis, service stubs; no baseline),
{SLOTS} slots of capacity {CAPACITY} (so slots fill and free all the time), holds expiring
after {HOLD_TTL_SECONDS} s. {CONNECTIONS} clients (`benchmarks/history.py`: search, hold,
release, confirm, cancel, reschedule, owners in turn) for up to {seconds:.0f} s, every
operation recorded with start, end and outcome, while the run injected the faults below by
itself. Then offline: capacity in the event replay and by acknowledged operations,
acknowledged operations and bookings against the events and the database, every event
published and its message in an audit queue bound to the exchange (`#`), every 409
`slot_unavailable` justified by the replay within the call's window.

Operations: **{len(result.ops):,}** ({len(result.server_errors)} 5xx other than 503;
503 is the documented answer while a dependency is down). Events: {result.events:,}; messages
in the audit queue: {result.queued:,}; in the analytics queue: {result.analytics_queue};
outbox empty {drained} after the load. Faults: {len(result.faults)} of
{result.planned_faults} planned.

| operation | count | outcomes |
|---|---|---|
{op_rows}

| fault at | over at | fault | what happened |
|---|---|---|---|
{fault_rows}

| check | violations | first ones |
|---|---|---|
{violation_rows}

**Violations: {result.violations.total}.**

Command: `make bench-history` (`python -m benchmarks.run history`; `HISTORY_SECONDS`,
`HISTORY_OPERATIONS`; `HISTORY_REAL_BROKER_STOP=1` stops the whole RabbitMQ node instead of
blocking the vhost -- only on a machine nobody else uses). A short version runs in the test
suite: `tests/bench/test_history_under_faults.py`."""


def run() -> tuple[str, list[str]]:
    result = run_history(seconds=SECONDS, operations=OPERATIONS, real_broker=REAL_BROKER_STOP)
    problems = [f"{name}: {len(found)}" for name, found in result.violations.items() if found]
    if result.server_errors:
        problems.append(f"{len(result.server_errors)} 5xx other than 503")
    if result.drain is None:
        problems.append("outbox not drained within 90 s after the load")
    injected = [f for f in result.faults if not f.detail.startswith("FAILED")]
    if len(injected) < result.planned_faults:
        problems.append(f"only {len(injected)} of {result.planned_faults} faults injected")
    return report(result, SECONDS), problems
