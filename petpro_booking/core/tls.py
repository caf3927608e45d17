"""TLS to RabbitMQ: the `ssl` options kombu/py-amqp need for an `amqps://` URL (PostgreSQL takes
`sslmode`/`sslrootcert` from DATABASE_URL, Redis `ssl_ca_certs` from a `rediss://` URL; see
docs/security.md, "Transport")."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlparse


def amqp_ssl_options(url: str, *, ca_file: str = "") -> dict[str, Any] | bool:
    """False for `amqp://`; for `amqps://`, verify the broker's certificate and host name
    against `ca_file` (a mounted CA bundle) or, without it, the system's CAs."""
    if not url.startswith("amqps://"):
        return False
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
    host = urlparse(url).hostname
    if host:
        options["server_hostname"] = host
    if ca_file:
        options["ca_certs"] = ca_file
    return options
