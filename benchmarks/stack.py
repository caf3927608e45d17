"""Start the service under gunicorn on the real stack (PostgreSQL, Redis) for a benchmark,
and drive it with wrk. Shared by the HTTP benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")

WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, '
    .. '"p50": %f, "p95": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(database: str, **extra: str) -> dict[str, str]:
    """The production stack by env vars, quiet logs, debug off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    env.update(
        DJANGO_SETTINGS_MODULE="petpro_booking.settings.local",
        DJANGO_DEBUG="false",
        LOG_LEVEL="WARNING",
        DATABASE_URL=f"{base}/{database}",
        REDIS_URL=REDIS_URL,
        # Throttles and fair-use limits still run (their round trips are part of the cost)
        # but never reject: 200 owners with 5 live holds each would stop a run at 1,000 holds.
        THROTTLE_USER_RATE="100000000/min",
        THROTTLE_IP_RATE="100000000/min",
        FAIR_USE_MAX_LIVE_HOLDS="100000000",
        FAIR_USE_MAX_UNPAID_BOOKINGS="100000000",
        FAIR_USE_MAX_BOOKINGS_PER_PET_PER_DAY="100000000",
        **extra,
    )
    for unset in (
        "EVENT_BROKER_URL",
        "CELERY_BROKER_URL",
        "USER_SERVICE_URL",
        "CLINIC_SERVICE_URL",
    ):
        if unset not in extra:
            env.pop(unset, None)
    return env


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=capture,
        text=True,
    )
    return result.stdout if capture else ""


def fresh_database(name: str) -> None:
    """Drop and create `name`, then migrate it."""
    subprocess.run(["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    pid: int  # the gunicorn master; its children are the workers


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 2, threads: int = 1) -> Iterator[Server]:
    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="petpro-bench-metrics-")
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "petpro_booking.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gunicorn did not start")
        yield Server(base_url=base, env=env, pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def server_processes(server: Server, *, database: str) -> dict[str, list[int]]:
    """The processes a request costs CPU in: the gunicorn workers; PostgreSQL's background
    processes and the backends of `database` (not those of other databases on the server);
    Redis."""
    workers = [
        int(child)
        for child in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    ]
    groups: dict[str, list[int]] = {"workers": workers, "PostgreSQL": [], "Redis": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if name == "redis-server":
            groups["Redis"].append(int(entry.name))
        elif name == "postgres":
            # A backend's title: "postgres: [cluster: ]<user> <database> <client> <state>",
            # the client being "host(port)" or "[local]"; background processes have none.
            parts = title.split()
            client = next(
                (i for i, part in enumerate(parts) if part.endswith(")") or part == "[local]"),
                None,
            )
            if client is None or parts[client - 1] == database:
                groups["PostgreSQL"].append(int(entry.name))
    return groups


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    non2xx: int
    p50: float
    p95: float
    p99: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def row(self, label: str) -> str:
        return (
            f"| {label} | {self.rate:,.0f} | {self.p50:.1f} | {self.p95:.1f} | {self.p99:.1f} "
            f"| {self.errors + self.non2xx} |"
        )


def wrk(
    url: str,
    *,
    token: str | None = None,
    connections: int = 16,
    seconds: int = 10,
    threads: int = 2,
) -> tuple[LoadResult, str]:
    """Run wrk against `url`; returns the numbers and the command line used."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk` (Debian) or see README")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_REPORT)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", script.name]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    command.append(url)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    os.unlink(script.name)
    numbers = json.loads(output.strip().splitlines()[-1])
    shown = " ".join(c if "Bearer" not in c else "'Authorization: Bearer $TOKEN'" for c in command)
    return LoadResult(**numbers), shown.replace(script.name, "report.lua")
