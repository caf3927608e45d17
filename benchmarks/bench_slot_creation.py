"""Slot creation on the production topology: `python -m benchmarks.run slot_creation`.

Clinic staff create slots one by one (`POST /api/v1/slots`) and a schedule at a time (`POST
/api/v1/slots/generate`). Issue 11 found one relay task per commit making creation slow while
the Celery worker ran (41 slots/s with it, 101-155 without). This boots the topology of
`benchmarks/topology.py` without the baseline (production settings, gunicorn 2 x 4, Celery
worker and beat, RabbitMQ, the service stubs) and measures, with the Celery worker running and
then stopped: single slots from 1 and from 8 keep-alive connections (closed loop, `SECONDS`
each), and three schedules of 1,440 slots (30 days, 08:00-20:00 every day, 15 minutes). CPU of
the web tier and of the worker from /proc; the outbox drained after each run.
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

from .topology import CpuSampler, Options, Topology

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
SCHEDULES = 3
CLINIC, SERVICE = "bench-clinic", "bench-checkup"
SCHEDULE_DAYS = 30
WEEKLY = [{"weekday": day, "start": "08:00", "end": "20:00"} for day in range(1, 8)]


@dataclass
class Run:
    label: str
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    created: int = 0  # slots created by the run's 201 answers
    drained: float | None = None
    worker: bool = True

    def percentile(self, share: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100)[int(share * 100) - 1]


def staff_token(stack: Topology) -> str:
    script = (
        "from petpro_booking.core.auth import issue_token; "
        f"print(issue_token(sub='bench-staff', roles=['clinic_staff'], clinic_ids=['{CLINIC}']))"
    )
    return stack.manage("shell", "-c", script).strip().splitlines()[-1]


def _post(conn: http.client.HTTPConnection, path: str, body: dict, token: str) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    return response.status, response.read()


class Starts:
    """Slot starts nobody has used: 15 minutes apart from a day far past the seed's slots."""

    def __init__(self, first: dt.datetime) -> None:
        self._counter = itertools.count()
        self._first = first
        self._lock = threading.Lock()

    def next(self) -> dt.datetime:
        with self._lock:
            return self._first + dt.timedelta(minutes=15 * next(self._counter))


def _sampler(stack: Topology) -> CpuSampler:
    return CpuSampler({"web": lambda: stack.pids("web"), "worker": lambda: stack.pids("worker")})


def single_slots(
    stack: Topology, token: str, starts: Starts, *, connections: int, seconds: float, label: str
) -> Run:
    run, lock = Run(label), threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.ports.web, timeout=30)
        while time.monotonic() < deadline:
            start = starts.next()
            body = {
                "clinic_id": CLINIC,
                "service_id": SERVICE,
                "start_at": start.isoformat(),
                "end_at": (start + dt.timedelta(minutes=15)).isoformat(),
                "capacity": 1,
            }
            began = time.monotonic()
            status, _ = _post(conn, "/api/v1/slots", body, token)
            elapsed = (time.monotonic() - began) * 1000
            with lock:
                run.statuses[status] = run.statuses.get(status, 0) + 1
                run.latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    with _sampler(stack) as sampler:
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run.seconds = time.monotonic() - began
    run.cpu = sampler.result()
    run.created = run.statuses.get(201, 0)
    return _after(stack, run)


def _after(stack: Topology, run: Run) -> Run:
    """The outbox drained after the run, when the worker (which runs the relay) is up."""
    run.worker = bool(stack.pids("worker"))
    if run.worker:
        run.drained = stack.drain_seconds(time.monotonic())
    return run


def schedules(stack: Topology, token: str, first_day: dt.date, *, count: int, label: str) -> Run:
    run = Run(label)
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports.web, timeout=120)
    with _sampler(stack) as sampler:
        for index in range(count):
            date_from = first_day + dt.timedelta(days=(SCHEDULE_DAYS + 5) * index)
            body = {
                "clinic_id": CLINIC,
                "service_id": SERVICE,
                "date_from": date_from.isoformat(),
                "date_to": (date_from + dt.timedelta(days=SCHEDULE_DAYS - 1)).isoformat(),
                "weekly": WEEKLY,
            }
            began = time.monotonic()
            status, answer = _post(conn, "/api/v1/slots/generate", body, token)
            run.latencies.append(time.monotonic() - began)
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status == 201:
                run.created += json.loads(answer)["created"]
    conn.close()
    run.cpu = sampler.result()
    run.seconds = sum(run.latencies)
    return _after(stack, run)


def measure(stack: Topology) -> list[Run]:
    token = staff_token(stack)
    far = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(days=400)
    starts = Starts(far)
    single_slots(stack, token, starts, connections=2, seconds=3, label="warm-up")
    runs: list[Run] = []
    first_day = (far + dt.timedelta(days=200)).date()
    for worker in ("running", "stopped"):
        if worker == "stopped":
            stack.kill_celery_worker()
        for connections in (1, 8):
            plural = "s" if connections > 1 else ""
            runs.append(
                single_slots(
                    stack,
                    token,
                    starts,
                    connections=connections,
                    seconds=SECONDS,
                    label=f"worker {worker}: POST /slots, {connections} connection{plural}",
                )
            )
        runs.append(
            schedules(
                stack,
                token,
                first_day,
                count=SCHEDULES,
                label=f"worker {worker}: POST /slots/generate, 1,440 slots each",
            )
        )
        first_day += dt.timedelta(days=(SCHEDULE_DAYS + 5) * SCHEDULES)
    return runs


def _drained(run: Run) -> str:
    if not run.worker:
        return "- (no relay without the worker)"
    return "not within 60 s" if run.drained is None else f"{run.drained:.2f} s"


def report(runs: list[Run]) -> str:
    lines = [
        "## Slot creation with the whole stack running (issue 11)",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        "Command: `python -m benchmarks.run slot_creation` (`BENCH_SECONDS` per single-slot run).",
        "",
        "| run | answers | slots/s | p50 / p95 ms | web CPU ms per slot | worker CPU ms per slot "
        "| outbox drained after |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        answers = ", ".join(f"{code}: {count:,}" for code, count in sorted(run.statuses.items()))
        rate = run.created / run.seconds if run.seconds else 0.0
        if "generate" in run.label:
            latency = "each: " + " / ".join(f"{seconds:.2f} s" for seconds in run.latencies)
        else:
            latency = f"{run.percentile(0.5):.1f} / {run.percentile(0.95):.1f}"
        per_slot = {
            name: seconds * 1000 / run.created if run.created else 0.0
            for name, seconds in run.cpu.items()
        }
        lines.append(
            f"| {run.label} | {answers} | {rate:,.0f} | {latency} | {per_slot.get('web', 0):.2f} "
            f"| {per_slot.get('worker', 0):.2f} | {_drained(run)} |"
        )
    return "\n".join(lines)


def run() -> tuple[str, list[str]]:
    with Topology(Options(baseline=False, slots=2_000, searched=1_000)) as stack:
        runs = measure(stack)
        stack.worker_start()  # the relay again: what the worker-less runs wrote is published
        drained = stack.drain_seconds(time.monotonic(), limit=120)
    problems = [f"{run.label}: answers {run.statuses}" for run in runs if set(run.statuses) - {201}]
    problems += [
        f"{run.label}: outbox not drained" for run in runs if run.worker and run.drained is None
    ]
    if drained is None:
        problems.append("outbox not drained within 120 s of the worker's restart")
    section = report(runs) + (
        f"\n\nThe worker started again after the last run: the outbox drained "
        f"{'not within 120 s' if drained is None else f'in {drained:.1f} s'}."
    )
    return section, problems
