"""A private PostgreSQL with TLS on (port 5434, a temporary cluster): a self-signed CA and a
server certificate for 127.0.0.1 made here, `initdb` run as the `postgres` user when we are
root (initdb refuses root), stopped and deleted afterwards. Only TLS connections are let in."""

from __future__ import annotations

import datetime as dt
import glob
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PORT = 5434


@dataclass
class TlsPostgres:
    port: int
    ca_file: Path
    other_ca_file: Path  # a CA that did not sign the server's certificate

    def url(self, query: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres?{query}"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.skip(f"{name} is not installed (postgresql server binaries)")
    return found[-1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"TLS PostgreSQL did not listen on {port}")


def _start(root: Path, data: Path, as_postgres: list[str]) -> None:
    ca_key, ca_cert = _ca("petpro test CA")
    _, other_ca = _ca("someone else's CA")
    server_key, server_cert = _server_cert(ca_key, ca_cert)
    (root / "ca.crt").write_bytes(_pem(ca_cert))
    (root / "other-ca.crt").write_bytes(_pem(other_ca))
    (root / "server.crt").write_bytes(_pem(server_cert))
    (root / "server.key").write_bytes(_key_pem(server_key))
    os.chmod(root / "server.key", 0o600)
    if as_postgres:
        shutil.chown(root / "server.key", "postgres")
        shutil.chown(root / "server.crt", "postgres")
        data.mkdir()
        shutil.chown(data, "postgres")
    subprocess.run(
        [*as_postgres, _bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {PORT}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{data}'\nssl = on\n"
            f"ssl_cert_file = '{root / 'server.crt'}'\nssl_key_file = '{root / 'server.key'}'\n"
            "fsync = off\nshared_buffers = 16MB\nmax_connections = 20\n"
        )
    # TLS or nothing: a plaintext connection is refused by the server itself.
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    log = root / "server.log"
    if as_postgres:
        log.touch()
        shutil.chown(log, "postgres")
    subprocess.run(
        [*as_postgres, _bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start"],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def tls_postgres() -> Iterator[TlsPostgres]:
    # Not under pytest's tmp dir: that one is private to root, the postgres user must enter.
    root = Path(tempfile.mkdtemp(prefix="petpro-tls-pg-"))
    data = root / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)  # noqa: S103  (certificates only; the key is 0600)
    try:
        _start(root, data, as_postgres)
        _wait_port(PORT)
        yield TlsPostgres(port=PORT, ca_file=root / "ca.crt", other_ca_file=root / "other-ca.crt")
    finally:
        subprocess.run(
            [*as_postgres, _bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
