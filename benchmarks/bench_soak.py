"""A peak-hour soak (issue 11 point 6): the 80/15/5 mix, open loop at 80 % of the maximum
measured on the same stack just before, for 10 minutes with the whole production topology;
p95 and p99 per 30 s, 5xx, outbox lag, database pool use (/metrics) and memory (RSS) per
process group over time.

`make soak` (`python -m benchmarks.run soak`). Env: SOAK_SECONDS (default 600), SOAK_RATE
(requests/s; default 80 % of a 15 s closed-loop maximum measured first),
SOAK_SLOTS (slots for the holds, default 64,000).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from . import scenarios
from .load import Load, Record, percentile, summarize
from .topology import (
    BENCH_AUTOVACUUM,
    CLK,
    Options,
    Topology,
    cpu_ticks,
    machine_load_line,
    machine_ticks,
    process_groups,
    rss_bytes,
    steal_share,
)

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
RATE = float(os.environ.get("SOAK_RATE", "0") or 0)
SLOTS = int(os.environ.get("SOAK_SLOTS", "64000"))
SEARCHED = 4_000
MAX_SECONDS = 15.0
WARM_UP_SECONDS = 5.0  # with SOAK_RATE given: the mix, unmeasured, before the soak
WINDOW = 30.0
SAMPLE_EVERY = 5.0
# The groups whose cores each window reports (the load generator runs in this process's
# children and is left out: it is not the service).
CPU_GROUPS = ("web", "worker", "beat", "relay", "PostgreSQL", "Redis", "RabbitMQ (shared node)")
WINDOW_HEADER = (
    "| window | rps | search p95 / p99 ms | writes p95 / p99 ms | 5xx or no answer "
    "| outbox backlog max | oldest unpublished s | pool in use max | pool waiting max "
    "| stolen by the hypervisor | busiest process groups, cores |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)
MEMORY_GROUPS = ("web", "worker", "beat", "relay", "Redis", "stubs")


@dataclass
class Sample:
    at: float
    backlog: int
    oldest_age: float
    pool_in_use: float
    pool_waiting: float
    rss: dict[str, int] = field(default_factory=dict)
    machine: tuple[int, int] | None = None  # (steal, total) ticks of the whole machine
    cpu: dict[str, int] = field(default_factory=dict)  # CPU ticks used so far, per group


def sampler(stack: Topology, samples: list[Sample], stop: threading.Event) -> None:
    groups = process_groups(stack, list)
    while not stop.wait(SAMPLE_EVERY):
        backlog, age = stack.unpublished()
        metrics = stack.scrape_metrics()
        in_use = sum(v for k, v in metrics.items() if "pool_connections" in k and "in_use" in k)
        waiting = sum(v for k, v in metrics.items() if "pool_requests_waiting" in k)
        rss = {g: sum(rss_bytes(p) for p in groups[g]()) for g in MEMORY_GROUPS}
        cpu = {g: cpu_ticks(lister()) for g, lister in groups.items() if g in CPU_GROUPS}
        samples.append(
            Sample(time.time(), backlog, age, in_use, waiting, rss, machine_ticks(), cpu)
        )


def _busiest(inside: list[Sample], top: int = 3) -> str:
    """The groups that used the most cores between a window's first and last sample. A group
    whose processes changed meanwhile (a backend closed) can lose ticks: never below 0."""
    first, last = inside[0], inside[-1]
    seconds = last.at - first.at
    if seconds <= 0 or not first.cpu:
        return "-"
    cores = {
        group: max(0, last.cpu.get(group, 0) - ticks) / CLK / seconds
        for group, ticks in first.cpu.items()
    }
    busiest = sorted(cores.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{group} {value:.2f}" for group, value in busiest)


def _stolen(inside: list[Sample]) -> str:
    """The share of the machine the hypervisor took between a window's first and last sample."""
    share = steal_share(inside[0].machine, inside[-1].machine)
    return "-" if share is None else f"{100 * share:.0f} %"


def window_rows(records: list[Record], samples: list[Sample]) -> list[str]:
    if not records:
        return []
    t0 = min(r.start for r in records)
    rows = []
    window = 0
    while True:
        lo, hi = t0 + window * WINDOW, t0 + (window + 1) * WINDOW
        chosen = [r for r in records if lo <= r.start < hi]
        if not chosen:
            break
        search = [r.latency_ms for r in chosen if r.kind == "search"]
        writes = [r.latency_ms for r in chosen if r.kind != "search"]
        errors = sum(1 for r in chosen if r.status >= 500 or r.status == 0)
        inside = [s for s in samples if lo <= s.at < hi] or [Sample(hi, 0, 0, 0, 0)]
        rows.append(
            f"| {window * WINDOW:.0f}-{(window + 1) * WINDOW:.0f} s | {len(chosen) / WINDOW:,.0f} "
            f"| {percentile(search, 0.95):.1f} / {percentile(search, 0.99):.1f} "
            f"| {percentile(writes, 0.95):.1f} / {percentile(writes, 0.99):.1f} | {errors} "
            f"| {max(s.backlog for s in inside)} | {max(s.oldest_age for s in inside):.1f} "
            f"| {max(s.pool_in_use for s in inside):.0f} "
            f"| {max(s.pool_waiting for s in inside):.0f} "
            f"| {_stolen(inside)} | {_busiest(inside)} |"
        )
        window += 1
    return rows


def memory_rows(samples: list[Sample]) -> list[str]:
    """Start, half time, end and peak per group; the growth over the run and its rate over the
    second half alone, so a warm-up that levels off (caches filling, allocator arenas) is told
    from a leak, which keeps its rate to the end."""
    if len(samples) < 2:
        return []
    first, last = samples[0], samples[-1]
    middle = min(samples, key=lambda s: abs(s.at - (first.at + last.at) / 2))
    half_minutes = max(1e-9, (last.at - middle.at) / 60)
    rows = []
    for group in MEMORY_GROUPS:
        start, half, end = (s.rss.get(group, 0) for s in (first, middle, last))
        peak = max(s.rss.get(group, 0) for s in samples)
        if not (start or end):
            continue
        rows.append(
            f"| {group} | {start / 2**20:.1f} | {half / 2**20:.1f} | {end / 2**20:.1f} "
            f"| {peak / 2**20:.1f} | {(end - start) / 2**20:+.1f} "
            f"| {(end - half) / 2**20 / half_minutes:+.2f} |"
        )
    return rows


def run() -> tuple[str, list[str]]:
    problems: list[str] = []
    options = Options(slots=SLOTS, searched=SEARCHED, baseline=False, autovacuum=BENCH_AUTOVACUUM)
    with Topology(options) as stack:
        measured = None
        rate = RATE
        # The maximum: the mix closed loop on the first slots of the region. With SOAK_RATE
        # given, a few seconds of it still run, unmeasured: a soak started on workers that have
        # not yet imported and connected what the mix needs queued for its first 30 s.
        probe_region = (SEARCHED, SEARCHED + 8_000)
        probe = Load(
            stack.ports.web,
            scenarios.factory(scenarios.Mix, stack.seed, probe_region),
            seconds=WARM_UP_SECONDS if rate else MAX_SECONDS,
        ).run()
        if not rate:
            measured = summarize(probe).rate
            rate = 0.8 * measured
        mix_region = (SEARCHED + 8_000, SLOTS)
        samples: list[Sample] = []
        stop = threading.Event()
        watcher = threading.Thread(target=sampler, args=(stack, samples, stop), daemon=True)
        watcher.start()
        load = Load(
            stack.ports.web,
            scenarios.factory(scenarios.Mix, stack.seed, mix_region),
            seconds=SECONDS,
            rate=rate,
        )
        records = load.run()
        drain = stack.drain_seconds(load.ended, limit=30)
        stop.set()
        watcher.join()
        check = stack.overbooking()
    postgres = stack.autovacuum_note()
    total = summarize(records)
    achieved = total.rate
    if not check.ok:
        problems.append(f"overbooking or counter mismatch: {check}")
    if total.server_errors:
        problems.append(f"{total.server_errors} 5xx")
    if total.no_answer:
        problems.append(f"{total.no_answer} requests without an answer")
    if drain is None or drain > 5:
        problems.append("outbox not drained within 5 s of the load's end")
    if achieved < 0.9 * rate:
        problems.append(f"the stack kept up with only {achieved:.0f} of {rate:.0f} requests/s")
    windows = "\n".join(window_rows(records, samples))
    memory = "\n".join(memory_rows(samples))
    kinds = "\n".join(
        f"| {kind} | {s.count:,} | {s.p50:.1f} | {s.p95:.1f} | {s.p99:.1f} | {s.server_errors} |"
        for kind in ("search", "hold", "confirm")
        if (s := summarize(records, kind)).count
    )
    origin = (
        f"80 % of {measured:,.0f} requests/s, the closed-loop maximum of the mix measured on the "
        f"same stack for {MAX_SECONDS:.0f} s just before"
        if measured
        else "given by SOAK_RATE"
    )
    drained = "not within 30 s" if drain is None else f"{drain:.2f} s"
    return (
        f"""## Peak-hour soak (issue 11)

{machine_load_line()}

The production topology of `benchmarks/topology.py` (no baseline; {postgres}).
The 80/15/5 mix, open loop
at **{rate:,.0f} requests/s** ({origin}) over 16 connections for {SECONDS:.0f} s: each request
has its due time and its latency counts from then, so a server that falls behind shows it.
Achieved {achieved:,.0f} requests/s, {total.count:,} requests, {total.server_errors} 5xx,
{total.no_answer} without an answer; outbox empty {drained} after the load; after the run:
{check}. Outbox backlog, pool use and memory sampled every {SAMPLE_EVERY:.0f} s (pool: the
web tier's `petpro_db_pool_*` gauges on /metrics, summed over workers).

| request | count | p50 ms | p95 ms | p99 ms | 5xx |
|---|---|---|---|---|---|
{kinds}

{WINDOW_HEADER}
{windows}

Memory (RSS of every process of the group, MiB):

| group | start | half time | end | peak | growth | second half, per minute |
|---|---|---|---|---|---|---|
{memory}

Command: `make soak` (`python -m benchmarks.run soak`; `SOAK_SECONDS=60` for a short check,
`SOAK_RATE=<requests/s>` to skip the measurement of the maximum; 5 s of the mix still
warm the workers first).""",
        problems,
    )
