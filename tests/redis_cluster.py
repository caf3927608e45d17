"""A private Redis Cluster of three masters (ports 7101-7103), started once per test session
for the tests that run on a cluster, and torn down afterwards.

`redis-server --cluster-enabled yes` on each port, then `redis-cli --cluster create` assigns
the 16384 hash slots; the fixture waits until every node reports `cluster_state:ok`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CLUSTER_PORTS = (7101, 7102, 7103)


class RedisCluster:
    def __init__(self, workdir: Path, ports: tuple[int, ...] = CLUSTER_PORTS) -> None:
        self.workdir = workdir
        self.ports = ports
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def _cli(self, port: int, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=check,
        )
        return done.stdout

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            pytest.fail("redis-server/redis-cli are not installed; the cluster tests need them")
        for port in self.ports:
            if _listening(port):  # a cluster left behind by a killed session: ours to stop
                self._cli(port, "shutdown", "nosave", check=False)
                _wait_for(port, up=False)
            node_dir = self.workdir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--maxmemory",
                        "64mb",
                        "--maxmemory-policy",
                        "volatile-lru",
                        "--dir",
                        str(node_dir),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            _wait_for(port, up=True)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in self._cli(port, "cluster", "info") for port in self.ports):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def flush(self) -> None:
        for port in self.ports:
            self._cli(port, "flushall")

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait(timeout=5)
        self.processes.clear()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait_for(port: int, *, up: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(port) == up:
            return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on {port} did not go {'up' if up else 'down'}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
