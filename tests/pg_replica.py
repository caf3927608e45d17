"""A real streaming replica of the suite's PostgreSQL (127.0.0.1:5432), on 127.0.0.1:5433,
made once per session with `pg_basebackup` and stopped afterwards.

The primary must accept replication connections from 127.0.0.1 (wal_level replica and
max_wal_senders > 0 are PostgreSQL's defaults). When its pg_hba.conf has no replication rule
the fixture appends `host replication all 127.0.0.1/32 trust` and reloads the configuration
(`pg_reload_conf()`: no restart, no connection dropped), once: it is idempotent, and needs
write access to pg_hba.conf (root on CI and build machines). The replica runs as the
`postgres` user when the suite runs as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PRIMARY = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REPLICA_PORT = 5433
REPLICATION_RULE = "host replication all 127.0.0.1/32 trust"


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _allow_replication() -> None:
    with psycopg.connect(PRIMARY, autocommit=True) as conn:
        rules = conn.execute(
            "SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) "
            "AND type IN ('host', 'hostnossl') AND error IS NULL "
            "AND CASE WHEN address IN ('all', 'samehost') THEN true "
            "WHEN netmask IS NULL THEN false "
            "ELSE ('127.0.0.1'::inet & netmask::inet) = (address::inet & netmask::inet) END"
        ).fetchone()
        if rules and rules[0]:
            return
        hba_file = conn.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
        try:
            with open(hba_file, "a") as hba:
                hba.write(f"\n# petpro test suite: streaming replica on {REPLICA_PORT}\n")
                hba.write(REPLICATION_RULE + "\n")
        except OSError as exc:
            pytest.fail(
                f"PostgreSQL refuses replication connections and {hba_file} is not writable "
                f"({exc}); add `{REPLICATION_RULE}` to it and reload PostgreSQL"
            )
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)


def _bindir() -> Path:
    with psycopg.connect(PRIMARY) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
    candidate = Path(f"/usr/lib/postgresql/{major}/bin")
    if (candidate / "pg_ctl").exists():
        return candidate
    found = shutil.which("pg_ctl")
    if found is None:
        pytest.fail("pg_ctl not found: the replica tests need the PostgreSQL server binaries")
    return Path(found).parent


class Replica:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.workdir = Path(tempfile.mkdtemp(prefix="petpro-replica-"))
        self.datadir = self.workdir / "data"
        self.running = False

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([*_as_postgres(), *args], check=True, capture_output=True, timeout=timeout)

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-h", "127.0.0.1", "-p", "5432", "-U", "postgres",
            "-D", str(self.datadir),
            "-X", "stream", "-R", "--checkpoint=fast",
        )  # fmt: skip
        # Debian keeps the configuration outside the data directory: give the replica its own.
        settings = {
            "postgresql.conf": (
                f"port = {REPLICA_PORT}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.workdir}'\n"
                "hot_standby = on\n"
                # max_connections, max_wal_senders ... keep their defaults: a hot standby
                # refuses to run with less than its primary has.
                "shared_buffers = 32MB\n"
                "fsync = off\n"
            ),
            "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            "pg_ident.conf": "",
        }
        for name, text in settings.items():
            (self.datadir / name).write_text(text)
            if os.geteuid() == 0:
                shutil.chown(self.datadir / name, "postgres", "postgres")

    def start(self) -> None:
        log = self.workdir / "replica.log"
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                "-l", str(log), "-w", "-t", "60", "start",
            )  # fmt: skip
        except subprocess.CalledProcessError:
            pytest.fail("the replica did not start:\n" + log.read_text()[-3000:])
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "stop")
            self.running = False

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=REPLICA_PORT, user="postgres", dbname=dbname, autocommit=True
        )

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{REPLICA_PORT}/{dbname}"

    def catch_up(self, dbname: str, timeout: float = 10.0) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        with psycopg.connect(PRIMARY, autocommit=True) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + timeout
        with self.connect(dbname) as replica:
            while time.monotonic() < deadline:
                caught_up = replica.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()[0]  # type: ignore[index]
                if caught_up:
                    return
                time.sleep(0.02)
        raise RuntimeError("the replica did not catch up")

    def pause_replay(self, dbname: str) -> None:
        with self.connect(dbname) as replica:
            replica.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self, dbname: str) -> None:
        with self.connect(dbname) as replica:
            replica.execute("SELECT pg_wal_replay_resume()")

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_replica() -> Iterator[Replica]:
    if shutil.which("pg_basebackup") is None:
        pytest.fail("pg_basebackup not found: the replica tests need postgresql-client")
    _allow_replication()
    replica = Replica()
    try:
        replica.create()
        replica.start()
        yield replica
    finally:
        try:
            replica.stop()
        finally:
            replica.remove()
