"""TLS to PostgreSQL (sslmode and CA from DATABASE_URL, against a private server with a
self-signed CA), and the TLS options built for rediss:// and amqps:// URLs."""

from __future__ import annotations

import ssl

import pytest
import redis
from django.db import OperationalError
from django.db.utils import ConnectionHandler

from petpro_booking.core.tls import amqp_ssl_options
from petpro_booking.settings.base import database_config


@pytest.fixture(autouse=True)
def _own_connections(django_db_blocker):
    """These tests open their own connections to the private server, not the test database."""
    with django_db_blocker.unblock():
        yield


def connect(url: str):
    config = database_config(url)
    config["OPTIONS"].pop("pool")  # one plain connection is enough here
    config["OPTIONS"]["options"] = ""  # the private server has no booking_service schema
    return ConnectionHandler({"default": config})["default"]


def test_verified_tls_connection_from_database_url(tls_postgres):
    url = tls_postgres.url(f"sslmode=verify-full&sslrootcert={tls_postgres.ca_file}")
    assert database_config(url)["OPTIONS"]["sslmode"] == "verify-full"
    wrapper = connect(url)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            used_tls, version = cursor.fetchone()
    finally:
        wrapper.close()
    assert used_tls is True
    assert version.startswith("TLSv1.")


def test_a_server_signed_by_another_ca_is_refused(tls_postgres):
    wrapper = connect(
        tls_postgres.url(f"sslmode=verify-full&sslrootcert={tls_postgres.other_ca_file}")
    )
    with pytest.raises(OperationalError, match="certificate verify failed"):
        wrapper.ensure_connection()


def test_plaintext_is_refused(tls_postgres):
    wrapper = connect(tls_postgres.url("sslmode=disable"))
    with pytest.raises(OperationalError, match=r"no encryption|rejects connection"):
        wrapper.ensure_connection()


def test_rediss_url_makes_verified_tls_connections():
    client = redis.Redis.from_url(
        "rediss://cache.internal:6380/0?ssl_ca_certs=/etc/petpro/ca/ca.crt&ssl_cert_reqs=required"
    )
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/petpro/ca/ca.crt"
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"


def test_amqps_url_verifies_the_broker_with_the_mounted_ca():
    assert amqp_ssl_options("amqp://guest@rabbit//") is False
    options = amqp_ssl_options("amqps://u:p@rabbit.internal:5671/petpro", ca_file="/ca.crt")
    assert options == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "rabbit.internal",
        "ca_certs": "/ca.crt",
    }
