"""The load generator of the production benchmarks: `processes` x `threads` clients, each on its
own keep-alive HTTP/1.1 connection to 127.0.0.1, every request recorded (kind, start, end,
status, what the scenario noted). Closed loop (each client sends as soon as it has its answer)
or open loop (`rate` requests/s over all clients, on a fixed schedule; a late request's latency
counts from when it was due, so a slow server cannot hide its queue).

Bounded: every client stops at `seconds` or after `max_requests` in all, whichever is first,
and every request has a socket timeout. Several processes so the load generator is not bound
by one GIL; their records come back through files.

A scenario is a factory `scenario(client_index) -> Client`; `Client.next()` returns the next
`Request` (or None to stop), and `Client.done(request, status, body)` sees its answer and
returns what to record with it (a dict, may be empty).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TIMEOUT_SECONDS = 15.0


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    note: dict[str, Any] = field(default_factory=dict)


class Client(Protocol):
    def next(self) -> Request | None: ...

    def done(self, request: Request, status: int, body: Any) -> dict[str, Any]: ...


Scenario = Callable[[int], Client]


@dataclass
class Record:
    kind: str
    start: float  # time.time() when sent (or due, open loop)
    end: float
    status: int  # 0: no answer (connection error, timeout)
    note: dict[str, Any]

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000


def _client_loop(
    port: int,
    scenario: Scenario,
    index: int,
    stop_at: float,
    budget: Any,
    interval: float | None,
    first_due: float,
    out: list,
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    client = scenario(index)
    due = first_due
    while time.time() < stop_at:
        with budget.get_lock():
            if budget.value <= 0:
                break
            budget.value -= 1
        if interval is not None:
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            if time.time() >= stop_at:
                break
        request = client.next()
        if request is None:
            break
        headers = dict(request.headers)
        payload = None
        if request.body is not None:
            payload = json.dumps(request.body)
            headers["Content-Type"] = "application/json"
        started = time.time()
        status, body = 0, None
        try:
            connection.request(request.method, request.path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            status = response.status
            if raw and response.getheader("Content-Type", "").startswith("application/json"):
                body = json.loads(raw)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            body = {"exception": type(exc).__name__}
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
        ended = time.time()
        note = {**request.note, **(client.done(request, status, body) or {})}
        # Open loop: latency counts from when the request was due, not when it got sent.
        begin = min(started, due) if interval is not None else started
        out.append((request.kind, begin, ended, status, note, started))
        if interval is not None:
            due += interval
    connection.close()


def _process_main(
    port, scenario, first_index, threads, stop_at, budget, interval, t0, path, connections
) -> None:
    records: list = []
    workers = []
    for offset in range(threads):
        index = first_index + offset
        # Open loop: the clients' schedules interleave evenly.
        first_due = t0 + (interval * index / connections if interval else 0)
        workers.append(
            threading.Thread(
                target=_client_loop,
                args=(port, scenario, index, stop_at, budget, interval, first_due, records),
                daemon=True,
            )
        )
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=max(1.0, stop_at - time.time() + TIMEOUT_SECONDS + 5))
    Path(path).write_text(json.dumps(records))


class Load:
    """Run a scenario; `pids()` (for the CPU split) while it runs; `run()` returns records."""

    def __init__(
        self,
        port: int,
        scenario: Scenario,
        *,
        seconds: float,
        connections: int = 16,
        processes: int = 2,
        rate: float | None = None,
        max_requests: int = 1_000_000,
    ) -> None:
        self.port = port
        self.scenario = scenario
        self.seconds = seconds
        self.connections = connections
        self.processes = max(1, min(processes, connections))
        self.rate = rate
        self.max_requests = max_requests
        self._procs: list[multiprocessing.Process] = []
        self.started = 0.0
        self.ended = 0.0  # time.monotonic() when the last client finished

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid and p.is_alive()]

    def run(self) -> list[Record]:
        context = multiprocessing.get_context("fork")
        budget = context.Value("l", self.max_requests)
        t0 = time.time() + 0.2
        stop_at = t0 + self.seconds
        # Per client: one request every `interval` seconds (open loop).
        interval = self.connections / self.rate if self.rate else None
        per_process = [
            self.connections // self.processes + (1 if i < self.connections % self.processes else 0)
            for i in range(self.processes)
        ]
        scratch = Path(tempfile.mkdtemp(prefix="petpro-load-"))
        first = 0
        for i, threads in enumerate(per_process):
            process = context.Process(
                target=_process_main,
                args=(
                    self.port,
                    self.scenario,
                    first,
                    threads,
                    stop_at,
                    budget,
                    interval,
                    t0,
                    str(scratch / f"{i}.json"),
                    self.connections,
                ),
                daemon=True,
            )
            first += threads
            process.start()
            self._procs.append(process)
        self.started = time.monotonic()
        for process in self._procs:
            process.join(timeout=self.seconds + TIMEOUT_SECONDS + 30)
            if process.is_alive():
                process.kill()
        self.ended = time.monotonic()
        records = []
        for i in range(self.processes):
            path = scratch / f"{i}.json"
            if path.exists():
                records += [
                    Record(k, s, e, st, n) for k, s, e, st, n, _ in json.loads(path.read_text())
                ]
                path.unlink()
        os.rmdir(scratch)
        return records


# --- statistics --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Summary:
    kind: str
    count: int
    seconds: float
    p50: float
    p95: float
    p99: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    @property
    def no_answer(self) -> int:
        return self.statuses.get(0, 0)


def summarize(records: list[Record], kind: str | None = None) -> Summary:
    chosen = [r for r in records if kind is None or r.kind == kind]
    seconds = max(r.end for r in records) - min(r.start for r in records) if records else 0.0
    latencies = [r.latency_ms for r in chosen]
    statuses: dict[int, int] = {}
    for record in chosen:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    return Summary(
        kind or "all",
        len(chosen),
        seconds,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
        statuses,
    )
