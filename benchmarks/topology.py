"""The production topology on one machine, for `make bench`, `make soak` and the history
checker: production settings; gunicorn (2 workers x 4 threads) on 127.0.0.1:8801; a Celery
worker and Celery beat; the relay as the chart runs it (`manage.py outbox listen`, woken
by NOTIFY; `BENCH_RELAY_COMMAND=none` leaves it to the Celery worker); RabbitMQ (a vhost of
our own) as the event broker and the Celery broker, as docker-compose and the chart configure
it; a PRIVATE
redis-server on 127.0.0.1:8820 as cache, lock and throttle store; the User, Clinic and Payment
Service stubs (`benchmarks/stubs.py`) on 8811-8813; and next to it the bare Django/DRF baseline
(`benchmarks/baseline/`) under gunicorn with the same worker and thread counts on 8802.

Everything binds to loopback; every process is started in a session of its own, so stopping
one stops its children too and nothing else. Faults (`redis_stop`, `kill_web_worker`,
`kill_celery_worker`, `broker_outage`) act only on processes and the vhost started here, never
on the shared servers -- except `broker_outage(real=True)`, which stops the whole RabbitMQ
node and must only be used on a machine nobody else uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_BASE = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
# RabbitMQ: a vhost of our own (the developer's EVENT_BROKER_URL unless BENCH_AMQP_URL is set).
AMQP_URL = os.environ.get("BENCH_AMQP_URL") or os.environ.get(
    "EVENT_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/wt-bench"
)


# The service's tokens (the guarded baseline checks them too).
JWT_SIGNING_KEY = "bench-jwt-signing-key-0123456789abcdef"
JWT_ISSUER = "petpro-bench"
JWT_AUDIENCE = "booking-service"


def vhost_of(amqp_url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(amqp_url).path.lstrip("/")) or "/"


@dataclass(frozen=True)
class Ports:
    web: int = int(os.environ.get("BENCH_WEB_PORT", "8801"))
    baseline: int = int(os.environ.get("BENCH_BASELINE_PORT", "8802"))
    user: int = int(os.environ.get("BENCH_STUB_USER_PORT", "8811"))
    clinic: int = int(os.environ.get("BENCH_STUB_CLINIC_PORT", "8812"))
    payment: int = int(os.environ.get("BENCH_STUB_PAYMENT_PORT", "8813"))
    redis: int = int(os.environ.get("BENCH_REDIS_PORT", "8820"))


@dataclass
class Options:
    database: str = "pp_bench"
    baseline_database: str = "pp_bench_baseline"
    owners: int = 400
    slots: int = 20_000
    capacity: int = 1
    searched: int = 4_000  # slots of the searched service (the rest: a second service)
    stub_latency_ms: float = 3.0
    gunicorn_workers: int = 2
    gunicorn_threads: int = 4
    celery_concurrency: int = 2
    baseline: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: Ports = field(default_factory=Ports)
    # Event and Celery broker; the vhost is purged and blocked by the faults: a stack that
    # may run next to another (a test while a developer's bench stack is up) takes its own.
    amqp_url: str = AMQP_URL
    # The server's autovacuum switched on for the run when it is off, and back afterwards
    # (`Autovacuum`): production runs it; `make bench` and `make soak` ask for it.
    autovacuum: bool = False


# This machine's PostgreSQL runs with autovacuum off (its CI configuration): an hour of the mix
# then leaves every published event's and every hold's dead row in the scans (measured: the
# search p95 went from 16 ms to 600 ms and PostgreSQL from 0.14 to 0.42 of a core).
# BENCH_AUTOVACUUM=0 measures the server as it is configured.
BENCH_AUTOVACUUM = os.environ.get("BENCH_AUTOVACUUM", "1") != "0"


SEED = """
import datetime as dt, json, uuid, sys
from decimal import Decimal
from django.utils import timezone
from integrations.models import LocalPet, LocalUser
from petpro_booking.core.auth import issue_token
from slots.models import Clinic, ClinicService, Slot

owners, slot_count, capacity = {owners}, {slots}, {capacity}
clinic = Clinic.objects.create(id="bench-clinic", name="Bench Vet", timezone="Europe/Berlin")
service = ClinicService.objects.create(
    id="bench-checkup", clinic=clinic, name="Checkup", duration_minutes=15,
    price=Decimal("40.00"), currency="EUR", species=["dog", "cat"], requires_payment=False,
    cancellation_window_hours=0,
)
other = ClinicService.objects.create(
    id="bench-dental", clinic=clinic, name="Dental", duration_minutes=15,
    price=Decimal("60.00"), currency="EUR", species=["dog", "cat"], requires_payment=False,
    cancellation_window_hours=0,
)
start = (timezone.now() + dt.timedelta(days=2)).replace(second=0, microsecond=0)
# The first {searched} slots belong to the searched service (a clinic's calendar of a few weeks),
# the rest to a second service (room for the hold-only runs, outside the searched pages), one
# starting every 3 minutes after the searched calendar (overlapping: only the start is unique),
# so that 100,000 of them start within 9 months, inside the booking horizon (a year).
def starts(i):
    return 15 * (i % {searched}) if i < {searched} else 15 * {searched} + 3 * (i - {searched})
slots = [
    Slot(id=uuid.uuid4(), clinic=clinic, service=service if i < {searched} else other,
         start_at=start + dt.timedelta(minutes=starts(i)),
         end_at=start + dt.timedelta(minutes=starts(i) + 15),
         capacity=capacity)
    for i in range(slot_count)
]
Slot.objects.bulk_create(slots, batch_size=5000)
LocalUser.objects.bulk_create(
    [LocalUser(id=f"bench-owner-{{i}}", name=f"Owner {{i}}") for i in range(owners)])
LocalPet.objects.bulk_create(
    [LocalPet(id=f"bench-pet-{{i}}", owner_id=f"bench-owner-{{i}}", name=f"Rex {{i}}",
              species="dog") for i in range(owners)])
print(json.dumps({{
    "slots": [str(s.id) for s in slots],
    "start": start.isoformat(),
    "owners": [[f"bench-pet-{{i}}", issue_token(sub=f"bench-owner-{{i}}", roles=["pet_owner"])]
               for i in range(owners)],
}}))
"""


# Counters against the rows they count and against capacity (service schema).
OVERBOOKING_SQL = """
SELECT
  count(*) FILTER (WHERE s.booked_count + s.held_count > s.capacity),
  count(*) FILTER (WHERE s.held_count <> coalesce(r.n, 0)),
  count(*) FILTER (WHERE s.booked_count <> coalesce(b.n, 0)),
  coalesce(sum(s.held_count), 0), coalesce(sum(s.booked_count), 0)
FROM slots s
LEFT JOIN (SELECT slot_id, count(*) n FROM reservations WHERE status = 'held' GROUP BY slot_id) r
  ON r.slot_id = s.id
LEFT JOIN (SELECT slot_id, count(*) n FROM bookings WHERE status <> 'cancelled' GROUP BY slot_id) b
  ON b.slot_id = s.id
"""
BASELINE_OVERBOOKING_SQL = """
SELECT
  count(*) FILTER (WHERE s.booked_count + s.held_count > s.capacity),
  count(*) FILTER (WHERE s.held_count <> coalesce(h.held, 0)),
  count(*) FILTER (WHERE s.booked_count <> coalesce(h.booked, 0)),
  coalesce(sum(s.held_count), 0), coalesce(sum(s.booked_count), 0)
FROM baseline_slots s
LEFT JOIN (SELECT slot_id, count(*) FILTER (WHERE status = 'held') held,
                  count(*) FILTER (WHERE status = 'confirmed') booked
           FROM baseline_holds GROUP BY slot_id) h ON h.slot_id = s.id
"""

GUARDED_OVERBOOKING_SQL = BASELINE_OVERBOOKING_SQL.replace(
    "baseline_slots", "guarded_slots"
).replace("baseline_holds", "guarded_holds")


@dataclass
class Overbooking:
    over_capacity: int
    held_mismatch: int
    booked_mismatch: int
    held: int
    booked: int

    @property
    def ok(self) -> bool:
        return not (self.over_capacity or self.held_mismatch or self.booked_mismatch)

    def __str__(self) -> str:
        return (
            f"{self.over_capacity} over capacity, {self.held_mismatch} held_count and "
            f"{self.booked_mismatch} booked_count mismatches ({self.held:,} held, "
            f"{self.booked:,} booked)"
        )


def _pg(database: str) -> psycopg.Connection:
    return psycopg.connect(
        f"{PG_BASE}/{database}", options="-c search_path=booking_service,public", autocommit=True
    )


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def fresh_database(name: str) -> None:
    drop_database(name)
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def analyze(name: str) -> None:
    """Planner statistics for the freshly seeded tables, as autovacuum's analyze gives a
    production database (this machine runs PostgreSQL with autovacuum off): without them the
    planner guesses one row per table and both sides' searches take twice as long."""
    with _pg(name) as conn:
        conn.execute("ANALYZE")


class Autovacuum:
    """`on()` switches the server's autovacuum on (ALTER SYSTEM, reloaded) when it is off;
    `restore()` gives the server its own setting back: the value `postgresql.auto.conf` had,
    or none."""

    def __init__(self) -> None:
        self.switched = False
        self.previous: str | None = None
        self.switched_for_run = False  # stays after restore(), for the report

    def on(self) -> None:
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            if _one(conn, "SHOW autovacuum") == "on":
                return
            self.previous = _one(
                conn,
                "SELECT setting FROM pg_file_settings WHERE name = 'autovacuum'"
                " AND sourcefile LIKE '%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
            )
            conn.execute("ALTER SYSTEM SET autovacuum = on")
            conn.execute("SELECT pg_reload_conf()")
            self.switched = self.switched_for_run = True

    def restore(self) -> None:
        if not self.switched:
            return
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            if self.previous is None:
                conn.execute("ALTER SYSTEM RESET autovacuum")
            else:
                conn.execute(f"ALTER SYSTEM SET autovacuum = '{self.previous}'")
            conn.execute("SELECT pg_reload_conf()")
        self.switched = False


def _one(conn: psycopg.Connection, sql: str) -> str | None:
    row = conn.execute(sql).fetchone()
    return None if row is None else str(row[0])


def wait_http(url: str, *, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.1)


def wait_port(port: int, *, seconds: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def _vhost_unlimited(vhost: str) -> None:
    """No connection limit on our vhost (clearing a limit that is not set is an error)."""
    rabbitmqctl("set_vhost_limits", "-p", vhost, '{"max-connections": -1}')
    rabbitmqctl("clear_vhost_limits", "-p", vhost)


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += _children(current)
    return out


class Topology:
    """Start with `with Topology(options) as stack:`; `stack.env` is the service's environment,
    `stack.seed` the slots and owners, `stack.web_url` and `stack.baseline_url` the servers."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.ports = self.options.ports
        self.vhost = vhost_of(self.options.amqp_url)
        self.run_dir = Path(tempfile.mkdtemp(prefix="petpro-bench-"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.seed: dict = {}
        # As the chart runs it (helm values `relay.enabled`): `manage.py outbox listen`, woken
        # by NOTIFY. BENCH_RELAY_COMMAND=none: no relay process, the Celery worker relays.
        command = os.environ.get("BENCH_RELAY_COMMAND", "outbox listen").split()
        self.relay_command: list[str] | None = None if command in ([], ["none"]) else command
        self.web_url = f"http://127.0.0.1:{self.ports.web}"
        self.baseline_url = f"http://127.0.0.1:{self.ports.baseline}"
        self.env = self._service_env()
        (self.run_dir / "metrics-tools").mkdir()
        self.broker_down: str | None = None  # "vhost" or "node" while an outage runs
        self.autovacuum = Autovacuum()

    # --- environment -------------------------------------------------------------------

    def _service_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST", "COV_", "DJANGO_", "CELERY_", "GUNICORN_"))
        }
        ports = self.ports
        env.update(
            DJANGO_SETTINGS_MODULE="petpro_booking.settings.production",
            DJANGO_SECRET_KEY="bench-secret-key-not-for-production",  # noqa: S106
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_DEBUG="false",
            # As the chart runs it (values.yaml): one JSON access line per request.
            LOG_LEVEL="INFO",
            DATABASE_URL=f"{PG_BASE}/{self.options.database}",
            REDIS_URL=f"redis://127.0.0.1:{ports.redis}/0",
            CELERY_BROKER_URL=self.options.amqp_url,
            EVENT_BROKER_URL=self.options.amqp_url,
            USER_SERVICE_URL=f"http://127.0.0.1:{ports.user}",
            CLINIC_SERVICE_URL=f"http://127.0.0.1:{ports.clinic}",
            PAYMENT_SERVICE_URL=f"http://127.0.0.1:{ports.payment}",
            PAYMENT_API_KEY="bench-payment-key",
            JWT_SIGNING_KEY=JWT_SIGNING_KEY,
            SERVICE_JWT_SIGNING_KEY="bench-service-signing-key-0123456789abcdef",
            PAYMENT_WEBHOOK_SECRET="bench-webhook-secret",  # noqa: S106
            # TLS ends at the ingress in production; here the load speaks plain HTTP.
            SECURE_SSL_REDIRECT="false",
            JWT_ISSUER=JWT_ISSUER,
            JWT_AUDIENCE=JWT_AUDIENCE,
            # Personal data (issue 17): a fixed bench key, never a production one.
            FIELD_ENCRYPTION_KEYS="YmVuY2gtZmllbGQta2V5LTAxMjM0NTY3ODlhYmNkZWY=",
            PERSONAL_DATA_LOOKUP_KEY="bench-lookup-key",
            ANALYTICS_PSEUDONYM_KEYS="bench-pseudonym-key",
            # Raised out of the way, still evaluated (a Redis round trip per request).
            THROTTLE_USER_RATE="100000000/min",
            THROTTLE_IP_RATE="100000000/min",
            # The fair-use limits too: 400 owners make thousands of holds in a run, which the
            # live-holds limit (5) would answer with fast 409s instead of holds.
            FAIR_USE_MAX_LIVE_HOLDS="100000000",
            FAIR_USE_MAX_UNPAID_BOOKINGS="100000000",
            FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY="100000000",
            GUNICORN_BIND=f"127.0.0.1:{ports.web}",
            GUNICORN_WORKERS=str(self.options.gunicorn_workers),
            GUNICORN_THREADS=str(self.options.gunicorn_threads),
            GUNICORN_MAX_REQUESTS="0",
            PROMETHEUS_MULTIPROC_DIR=str(self.run_dir / "metrics-tools"),
        )
        env.pop("EVENT_LOG_SINK_PATH", None)
        # Commits wake the relay process when there is one, else the Celery worker.
        env.setdefault("EVENT_RELAY_NUDGE", "notify" if self.relay_command else "celery")
        env.update(self.options.extra_env)
        return env

    def manage(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=env or self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    # --- processes ---------------------------------------------------------------------

    def _start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        env = {
            **(env or self.env),
            "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / f"metrics-{name}"),
        }
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(exist_ok=True)
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _stop(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # Leftover children of the group (a prefork pool whose parent died by SIGKILL).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def redis_start(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._start(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.ports.redis),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "volatile-lru",
                "--dir",
                str(self.run_dir),
            ],
        )
        wait_port(self.ports.redis)

    def redis_stop(self) -> None:
        self._stop("redis", sig=signal.SIGKILL)

    def web_start(self) -> None:
        self._start(
            "web",
            [
                str(BIN / "gunicorn"),
                "petpro_booking.wsgi",
                "-c",
                str(ROOT / "petpro_booking" / "gunicorn_conf.py"),
            ],
            env={**self.env, "SERVICE_COMPONENT": "web"},
        )
        wait_http(f"{self.web_url}/healthz")

    def web_restart(self, extra_env: dict[str, str]) -> None:
        """gunicorn again with more environment (e.g. a feature toggle)."""
        self._stop("web")
        self.env = {**self.env, **extra_env}
        self.web_start()

    def worker_start(self) -> None:
        self._start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "petpro_booking",
                "-q",
                "worker",
                "-l",
                "INFO",
                "--concurrency",
                str(self.options.celery_concurrency),
                "--without-gossip",
                "--without-mingle",
            ],
            env={**self.env, "SERVICE_COMPONENT": "worker"},
        )

    def beat_start(self) -> None:
        self._start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "petpro_booking",
                "-q",
                "beat",
                "-l",
                "INFO",
                "--schedule",
                str(self.run_dir / "celerybeat-schedule"),
            ],
            env={**self.env, "SERVICE_COMPONENT": "beat"},
        )

    def relay_start(self) -> None:
        """The long-running relay process (`relay_command`), as the chart runs it; with none,
        the relay runs in the Celery worker (beat's sweep plus the after-commit nudges)."""
        if self.relay_command:
            self._start(
                "relay",
                [sys.executable, str(ROOT / "manage.py"), *self.relay_command],
                env={**self.env, "SERVICE_COMPONENT": "relay"},
            )

    def stubs_start(self) -> None:
        ports = self.ports
        self._start(
            "stubs",
            [
                sys.executable,
                "-m",
                "benchmarks.stubs",
                "--user-port",
                str(ports.user),
                "--clinic-port",
                str(ports.clinic),
                "--payment-port",
                str(ports.payment),
                "--latency-ms",
                str(self.options.stub_latency_ms),
                "--owners",
                str(self.options.owners),
            ],
        )
        for port in (ports.user, ports.clinic, ports.payment):
            wait_port(port)

    def baseline_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_", "DJANGO_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="benchmarks.baseline.settings",
            BASELINE_DB_NAME=self.options.baseline_database,
            # The guarded hold: the service's Redis server (another database number) and
            # the key, issuer and audience of the service's tokens.
            GUARDED_REDIS_URL=f"redis://127.0.0.1:{self.ports.redis}/1",
            GUARDED_JWT_KEY=JWT_SIGNING_KEY,
            GUARDED_JWT_ISSUER=JWT_ISSUER,
            GUARDED_JWT_AUDIENCE=JWT_AUDIENCE,
        )
        return env

    def baseline_start(self) -> None:
        self._start(
            "baseline",
            [
                str(BIN / "gunicorn"),
                "benchmarks.baseline.wsgi",
                "--bind",
                f"127.0.0.1:{self.ports.baseline}",
                "--workers",
                str(self.options.gunicorn_workers),
                "--threads",
                str(self.options.gunicorn_threads),
                "--log-level",
                "warning",
            ],
            env=self.baseline_env(),
        )
        wait_http(f"{self.baseline_url}/healthz")

    # --- whole stack -------------------------------------------------------------------

    def __enter__(self) -> Topology:
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close()
        # The processes' logs stay for a look when the run failed or BENCH_KEEP_LOGS=1.
        if exc_type is None and os.environ.get("BENCH_KEEP_LOGS") != "1":
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            print(f"bench: logs of the stack's processes in {self.run_dir}", file=sys.stderr)

    def boot(self) -> None:
        opts = self.options
        if opts.autovacuum:
            self.autovacuum.on()
        self.redis_start()
        self.broker_reset()
        fresh_database(opts.database)
        self.manage("migrate", "--noinput", "-v0")
        seed = SEED.format(
            owners=opts.owners, slots=opts.slots, capacity=opts.capacity, searched=opts.searched
        )
        out = self.manage("shell", "-c", seed)
        self.seed = json.loads(out.strip().splitlines()[-1])
        analyze(opts.database)
        self.manage("setup_broker")
        self.stubs_start()
        self.web_start()
        self.worker_start()
        self.beat_start()
        self.relay_start()
        if opts.baseline:
            fresh_database(opts.baseline_database)
            benv = self.baseline_env()
            self.manage("migrate", "--run-syncdb", "--noinput", "-v0", env=benv)
            self._copy_slots_to_baseline()
            analyze(opts.baseline_database)
            self.baseline_start()

    def autovacuum_note(self) -> str:
        """How PostgreSQL's autovacuum ran, for the report."""
        if self.autovacuum.switched_for_run:
            return (
                "PostgreSQL with autovacuum on for the run, as production runs it (this "
                "server's own setting is off; `BENCH_AUTOVACUUM=0` keeps it off)"
            )
        return "PostgreSQL with autovacuum as the server is set"

    def _copy_slots_to_baseline(self) -> None:
        """The baseline gets the service's slots (same ids, times, capacity), once for the
        bare hold and once for the guarded hold."""
        with _pg(self.options.database) as source, _pg(self.options.baseline_database) as target:
            rows = source.execute(
                "SELECT id, clinic_id, service_id, start_at, end_at, capacity FROM slots"
            ).fetchall()
            for table in ("baseline_slots", "guarded_slots"):
                with target.cursor().copy(
                    f"COPY {table} (id, clinic_id, service_id, start_at, end_at, capacity, "
                    "booked_count, held_count) FROM STDIN"
                ) as copy:
                    for row in rows:
                        copy.write_row((*row, 0, 0))

    def close(self) -> None:
        if self.broker_down is not None:  # never leave the vhost blocked
            self.broker_restore()
        for name in ("web", "baseline", "beat", "relay", "worker", "stubs", "redis"):
            self._stop(name)
        for name in list(self.processes):
            self._stop(name)
        self.autovacuum.restore()

    # --- broker ------------------------------------------------------------------------

    def broker_reset(self) -> None:
        """An empty vhost: no connection limit, the Celery and event queues purged."""
        vhost = self.vhost
        if vhost == "/":
            raise RuntimeError(
                "the benchmark purges and blocks its RabbitMQ vhost: give it one of its own "
                "(BENCH_AMQP_URL or EVENT_BROKER_URL with a vhost other than /)"
            )
        if vhost not in rabbitmqctl("list_vhosts", "--no-table-headers").split():
            # A fresh machine (CI): the vhost and the URL's user's rights on it.
            user = urllib.parse.urlsplit(self.options.amqp_url).username or "guest"
            rabbitmqctl("add_vhost", vhost)
            rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        _vhost_unlimited(vhost)
        for line in rabbitmqctl("list_queues", "-p", vhost, "name", "--no-table-headers").split():
            with contextlib.suppress(subprocess.CalledProcessError):
                rabbitmqctl("purge_queue", "-p", vhost, line.strip())

    def broker_outage_start(self, *, real: bool = False) -> None:
        if real:
            rabbitmqctl("stop_app")
        else:
            rabbitmqctl("set_vhost_limits", "-p", self.vhost, '{"max-connections": 0}')
            rabbitmqctl("close_all_connections", "--vhost", self.vhost, "bench broker outage")
        self.broker_down = "node" if real else "vhost"

    def broker_restore(self) -> None:
        if self.broker_down == "node":
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        else:
            _vhost_unlimited(self.vhost)
        self.broker_down = None

    # --- faults ------------------------------------------------------------------------

    def kill_web_worker(self) -> int:
        master = self.processes["web"].pid
        workers = _children(master)
        if not workers:
            raise RuntimeError("gunicorn has no worker to kill")
        os.kill(workers[0], signal.SIGKILL)
        return workers[0]

    def kill_celery_worker(self) -> None:
        self._stop("worker", sig=signal.SIGKILL)

    # --- observation -------------------------------------------------------------------

    def pids(self, name: str) -> list[int]:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return []
        return descendants(process.pid)

    def overbooking(self) -> Overbooking:
        with _pg(self.options.database) as conn:
            return Overbooking(*conn.execute(OVERBOOKING_SQL).fetchone())

    def baseline_overbooking(self) -> Overbooking:
        with _pg(self.options.baseline_database) as conn:
            return Overbooking(*conn.execute(BASELINE_OVERBOOKING_SQL).fetchone())

    def guarded_overbooking(self) -> Overbooking:
        with _pg(self.options.baseline_database) as conn:
            return Overbooking(*conn.execute(GUARDED_OVERBOOKING_SQL).fetchone())

    def unpublished(self) -> tuple[int, float]:
        """Unpublished events (not set aside) and the oldest one's age in seconds."""
        with _pg(self.options.database) as conn:
            count, age = conn.execute(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                "FROM events WHERE published_at IS NULL AND failed_at IS NULL"
            ).fetchone()
        return int(count), float(age)

    def drain_seconds(self, load_end: float, *, limit: float = 60.0) -> float | None:
        """Seconds from `load_end` (time.monotonic()) until the outbox is empty; None if it
        is not empty within `limit` seconds."""
        while True:
            if self.unpublished()[0] == 0:
                return time.monotonic() - load_end
            if time.monotonic() - load_end > limit:
                return None
            time.sleep(0.05)

    def scrape_metrics(self) -> dict[str, float]:
        """/metrics of the web tier: petpro_* and *pool* samples (name with labels -> value)."""
        try:
            text = urllib.request.urlopen(f"{self.web_url}/metrics", timeout=5).read().decode()
        except OSError:
            return {}
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            if "pool" in name or name.startswith(("petpro_outbox", "petpro_serializable")):
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values


# --- CPU and memory from /proc ---------------------------------------------------------------

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime ticks, start time ticks) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12]), int(fields[19])


def cpu_ticks(pids: list[int]) -> int:
    """The CPU ticks (user + system) the processes have used so far, summed."""
    return sum(stat[0] for stat in map(_stat, pids) if stat is not None)


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def _boot_ticks_now() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * CLK


def postgres_backends(databases: set[str]) -> tuple[list[int], list[int]]:
    """(backends of `databases`, background processes of the server)."""
    mine, background = [], []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().split()
        except OSError:
            continue
        client = next(
            (i for i, part in enumerate(title) if part.endswith(")") or part == "[local]"), None
        )
        if client is None:
            background.append(int(entry.name))
        elif title[client - 1] in databases:
            mine.append(int(entry.name))
    return mine, background


def pids_by_comm(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


class CpuSampler:
    """CPU seconds per process group over an interval, sampled every `period` seconds so that
    processes which start (or end) meanwhile are counted: a process started after the sampler
    counts from zero; one that exits keeps its last sample."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], period: float = 0.5) -> None:
        self.groups = groups
        self.period = period
        self._first: dict[tuple[str, int], int] = {}
        self._last: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.seconds = 0.0
        self.steal: float | None = None

    def _sample(self) -> None:
        for group, lister in self.groups.items():
            for pid in lister():
                stat = _stat(pid)
                if stat is None:
                    continue
                ticks, started = stat
                key = (group, pid)
                if key not in self._first:
                    self._first[key] = 0 if started > self._started_ticks else ticks
                self._last[key] = ticks

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._started_ticks = _boot_ticks_now()
        self._machine0 = machine_ticks()
        self._t0 = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.monotonic() - self._t0
        self.steal = steal_share(self._machine0, machine_ticks())

    def result(self) -> dict[str, float]:
        totals = dict.fromkeys(self.groups, 0.0)
        for (group, pid), last in self._last.items():
            totals[group] += (last - self._first[(group, pid)]) / CLK
        return totals


def process_groups(stack: Topology, load_pids: Callable[[], list[int]]) -> dict:
    """The process groups of the CPU split."""
    databases = {stack.options.database, stack.options.baseline_database}
    return {
        "web": lambda: stack.pids("web"),
        "worker": lambda: stack.pids("worker"),
        "beat": lambda: stack.pids("beat"),
        "relay": lambda: stack.pids("relay"),
        "baseline web": lambda: stack.pids("baseline"),
        "PostgreSQL": lambda: postgres_backends(databases)[0],
        "PostgreSQL background (shared)": lambda: postgres_backends(databases)[1],
        "Redis": lambda: stack.pids("redis"),
        "RabbitMQ (shared node)": lambda: pids_by_comm("beam.smp"),
        "load generator": load_pids,
        "stubs": lambda: stack.pids("stubs"),
    }


@contextlib.contextmanager
def topology(options: Options | None = None) -> Iterator[Topology]:
    with Topology(options) as stack:
        yield stack


def machine_ticks() -> tuple[int, int] | None:
    """(steal, total) ticks of the whole machine (/proc/stat's first line), or None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[7], sum(fields[:8])  # user .. steal (guest time is inside user)
    except (OSError, ValueError, IndexError):
        return None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to other guests between two
    readings: a run during which it took much measured a smaller machine."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _busy_cores(seconds: float = 5.0) -> float:
    """Cores busy (all processes, from /proc/stat) over `seconds`: what the machine does right
    now, unlike the load average, which still carries a run that has just ended."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


# Sampled when the benchmark process starts, before it loads the machine itself.
LOAD_AT_START = os.getloadavg()[0]
BUSY_AT_START = _busy_cores()


def machine_load_line() -> str:
    """What else ran on the machine when the run started: a figure taken next to other work
    is not valid, and the report says so itself."""
    cores, load, busy = os.cpu_count() or 1, LOAD_AT_START, BUSY_AT_START
    quiet = busy < cores / 4
    verdict = (
        "quiet enough to compare"
        if quiet
        else "**other work shared the machine: these figures are not valid**"
    )
    return (
        f"{busy:.2f} of {cores} cores busy in the 5 s before the run (load average {load:.1f},"
        f" which still counts work that has just ended): {verdict}."
    )
