"""Shared fixtures: the real PostgreSQL, Redis and RabbitMQ on localhost, API clients per role."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from petpro_booking.core.auth import issue_token
from petpro_booking.core.local_cache import clear_local_cache

from .factories import ClinicFactory, ClinicServiceFactory, LocalPetFactory, SlotFactory
from .integrations.payments.stub import payment_stub  # noqa: F401  (fixture, shared)

# Private servers for tests that need their own: a redis-server (`private_redis`) for tests
# that stop Redis, a Redis Cluster, a streaming replica, a PostgreSQL with TLS (`tls_postgres`,
# port 5434).
pytest_plugins = [
    "tests.fast_flush",
    "tests.redis_server",
    "tests.redis_cluster",
    "tests.pg_replica",
    "tests.tls_postgres",
]

REQUIRED_SERVICES = {
    "PostgreSQL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x"),
    "Redis": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
    "RabbitMQ": os.environ.get("EVENT_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail at once, with the reason, when a service the suite needs is not reachable."""
    down = []
    for name, url in REQUIRED_SERVICES.items():
        parsed = urlparse(url)
        try:
            socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
        except OSError as exc:
            down.append(f"{name} at {parsed.hostname}:{parsed.port} ({exc})")
    if down:
        pytest.exit(
            "The test suite runs against the real stack; not reachable: "
            + "; ".join(down)
            + ". Start them (see README, 'Running the tests') or run `.ci/run`.",
            returncode=3,
        )


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    clear_local_cache()


def api_client_for(*, sub: str, roles: list[str], clinic_ids: list[str] | None = None) -> APIClient:
    client = APIClient()
    token = issue_token(sub=sub, roles=roles, clinic_ids=clinic_ids)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def clinic(db):
    return ClinicFactory(id="clinic-berlin", name="Berlin Vet", timezone="Europe/Berlin")


@pytest.fixture
def clinic_service(clinic):
    return ClinicServiceFactory(
        id="svc-checkup", clinic=clinic, duration_minutes=30, species=["dog", "cat"]
    )


@pytest.fixture
def slot(clinic_service):
    return SlotFactory(clinic=clinic_service.clinic, service=clinic_service, capacity=1)


@pytest.fixture
def owner_pet(db):
    return LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")


@pytest.fixture
def owner_client():
    return api_client_for(sub="owner-1", roles=["pet_owner"])


@pytest.fixture
def other_owner_client():
    return api_client_for(sub="owner-2", roles=["pet_owner"])


@pytest.fixture
def staff_client(clinic):
    return api_client_for(sub="staff-1", roles=["clinic_staff"], clinic_ids=[clinic.id])


@pytest.fixture
def other_staff_client():
    return api_client_for(sub="staff-9", roles=["clinic_staff"], clinic_ids=["clinic-elsewhere"])


@pytest.fixture
def support_client():
    return api_client_for(sub="support-1", roles=["support"])


@pytest.fixture
def anon_client():
    return APIClient()


class SlotLockHolder:
    """Another writer holding a slot's Redis lock (a hold, a confirm, on another thread) until
    `release()`; the caller shortens the lock wait so its own write answers slot_busy soon."""

    def __init__(self, slot) -> None:
        import threading

        from petpro_booking.core.locking import lock_manager
        from slots.locking import slot_lock_keys

        taken, self._done = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with lock_manager().acquire(*slot_lock_keys(slot)):
                taken.set()
                self._done.wait(10)

        self._holder = threading.Thread(target=hold_the_lock)
        self._holder.start()
        assert taken.wait(5)

    def release(self) -> None:
        self._done.set()
        self._holder.join(10)


@pytest.fixture
def slot_lock_taken(slot, monkeypatch):
    """The slot's lock held by another writer (`SlotLockHolder`), lock wait 0.2 s, until the
    test calls the returned `release()` or ends."""
    from petpro_booking.core.locking import lock_manager

    monkeypatch.setattr(lock_manager(), "wait_seconds", 0.2)
    holder = SlotLockHolder(slot)
    yield holder.release
    holder.release()
