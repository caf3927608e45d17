"""CPU per relayed event, in one relay process: `python -m benchmarks.relay_cpu`.

Seeds the relay benchmark's outbox (`benchmarks/bench_relay.py`: per booking a
ReservationCreated, ReservationConfirmed, BookingCreated and BookingConfirmed, the last with
its email/push/sms notifications; `BOOKINGS=2000` bookings, each of another owner) in a
database and a RabbitMQ vhost of its own, relays it with one process (`outbox_relay` in a
`manage.py shell`, connected and declared before the count starts) and prints CPU per event:
the relay process's (`time.process_time()`, its preference-lookup threads included) and
PostgreSQL's (every `postgres` process of the server, the backends that ended meanwhile
counted through the postmaster: run it on an otherwise idle server). `ROUNDS=1` rounds, each on
a fresh outbox. `RELAY_BATCH=4` relays in batches of that many events instead of
`EVENT_RELAY_BATCH_SIZE` (500): one booking's events a batch, as a relay woken after every
commit sees them, so a batch's fixed cost shows.

On a VM whose speed drifts (docs/benchmarks.md), relay throughput compares badly from run to
run; CPU per event compares better, and only between builds run in alternation: the other
build in a `git worktree`, `python -m benchmarks.relay_cpu` in each checkout in turn. Not part
of `make bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from . import bench_relay
from .stack import ROOT, bench_env, fresh_database, manage
from .topology import pids_by_comm

RELAY = """
import json, os, time
from petpro_booking.events.relay import outbox_relay
from integrations.messaging.client import publisher_get
publisher_get().declare()
started = time.process_time()
report = outbox_relay(max_seconds=600, batch_size=int(os.environ.get("RELAY_BATCH") or 0) or None)
print(json.dumps({"cpu": time.process_time() - started, **report.as_dict()}))
"""


def postgres_cpu_seconds() -> float:
    """User + system CPU of every postgres process, and of the children they reaped."""
    total = 0
    for pid in pids_by_comm("postgres"):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def one_round(env: dict[str, str], bookings: int) -> str:
    fresh_database(bench_relay.DATABASE)
    manage(env, "migrate", "--noinput", "-v", "0")
    seeded = bench_relay.shell(env, bench_relay.SEED.replace("BOOKINGS", str(bookings)))
    events = int(seeded.strip().splitlines()[-1])
    before = postgres_cpu_seconds()
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", RELAY],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    postgres = postgres_cpu_seconds() - before
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["published"] != events or report["failed"] or report["broker_error"]:
        raise RuntimeError(f"relay did not publish everything: {report}")
    return (
        f"{events:,} events, {report['messages']:,} messages: relay "
        f"{report['cpu'] / events * 1000:.3f} ms CPU per event, PostgreSQL "
        f"{postgres / events * 1000:.3f} ms per event"
    )


def main() -> None:
    bookings = int(os.environ.get("BOOKINGS", "2000"))
    rounds = int(os.environ.get("ROUNDS", "1"))
    bench_relay.rabbitmqctl("add_vhost", bench_relay.VHOST)
    try:
        bench_relay.rabbitmqctl(
            "set_permissions", "-p", bench_relay.VHOST, "guest", ".*", ".*", ".*", attempts=10
        )
        env = bench_env(
            bench_relay.DATABASE,
            EVENT_BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{bench_relay.VHOST}",
        )
        for _ in range(rounds):
            print(one_round(env, bookings), flush=True)
    finally:
        bench_relay.rabbitmqctl("delete_vhost", bench_relay.VHOST)
        subprocess.run(
            ["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", bench_relay.DATABASE],
            check=True,
        )


if __name__ == "__main__":
    main()
