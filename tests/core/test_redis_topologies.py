"""Locks, rate limits, cache generations, search caching and breaker state on one Redis node
and on a real Redis Cluster of three masters (REDIS_URL=redis+cluster://...), and every key
the service writes has a TTL (so `maxmemory-policy volatile-lru` may evict any of them).

Every assertion is an outcome that needs Redis to work (a 429, a cache hit, a SlotBusy, an
open breaker shared through Redis): on a cluster a key pair that crossed hash slots would fail
with CROSSSLOT and the code would fall back to "no Redis", which these tests would notice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml
from django.core.cache import cache
from django_redis import get_redis_connection
from prometheus_client import REGISTRY
from redis.cluster import RedisCluster

from petpro_booking.core import cache as cache_keys
from petpro_booking.core.breaker import BreakerOpen, WindowedCircuitBreaker
from petpro_booking.core.local_cache import clear_local_cache
from petpro_booking.core.locking import DistributedLockManager, LockBusy
from petpro_booking.core.redis_client import is_cluster_url, redis_from_url
from petpro_booking.settings.base import redis_cache
from slots.locking import slot_lock_key

from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory


@dataclass
class Topology:
    name: str
    url: str

    def client(self) -> redis.Redis | RedisCluster:
        return redis_from_url(self.url)


@pytest.fixture(params=["single", "cluster"])
def topology(request, settings) -> Topology:
    """The service pointed at one Redis node (the suite's) or at the private cluster."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        settings.REDIS_URL = cluster.url
        settings.CACHES = {"default": redis_cache(cluster.url, key_prefix="petpro-test")}
    clear_local_cache()
    cache.clear()
    return Topology(request.param, settings.REDIS_URL)


def test_the_client_follows_the_url(topology):
    client = get_redis_connection("default")
    assert isinstance(client, RedisCluster) is (topology.name == "cluster")
    assert is_cluster_url(topology.url) is (topology.name == "cluster")
    if topology.name == "cluster":
        assert len(client.get_primaries()) == 3


def test_slot_locks_line_holders_up_and_renew_and_release(topology):
    manager = DistributedLockManager(redis_url=topology.url, ttl_seconds=5, wait_seconds=0.2)
    key = slot_lock_key(clinic_id="c1", service_id="s1", slot_id="a1b2")
    client = topology.client()
    outcome: list[str] = []

    def contender() -> None:
        try:
            with manager.acquire(key):
                outcome.append("acquired")
        except LockBusy:
            outcome.append("busy")

    with manager.acquire(key, slot_lock_key(clinic_id="c1", service_id="s1", slot_id="z9")):
        thread = threading.Thread(target=contender)
        thread.start()
        thread.join()
        client.expire(f"lock:petpro:{key}", 2)
        manager._renewer.renew_all()  # python-redis-lock's EXTEND script (two keys, one slot)
        assert client.ttl(f"lock:petpro:{key}") > 2
    assert outcome == ["busy"]
    assert client.exists(f"lock:petpro:{key}") == 0  # released by the UNLOCK script
    with manager.acquire(key):  # free again
        pass


def test_rate_limits_count_and_refuse(topology, settings, db):
    settings.THROTTLE_USER_RATE = "3/min"
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])

    statuses = [owner.get("/api/v1/clinics").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]


def test_generations_invalidate_cached_searches(topology, transactional_db):
    from slots.invalidation import slot_search_family
    from slots.selectors import slot_search_page

    slot = SlotFactory(capacity=2)
    hits = REGISTRY.get_sample_value("petpro_slot_search_cache_total", {"result": "hit"}) or 0

    def search() -> dict:
        return slot_search_page(filters={"clinic_id": slot.clinic_id}, page=1, page_size=20)

    assert search()["results"][0]["available_capacity"] == 2
    assert search()["results"][0]["available_capacity"] == 2
    assert REGISTRY.get_sample_value("petpro_slot_search_cache_total", {"result": "hit"}) == (
        hits + 1
    )
    before = cache_keys.generation(slot_search_family(slot.clinic_id))
    slot.__class__.objects.filter(id=slot.id).update(held_count=1)
    cache_keys.bump_generation(slot_search_family(slot.clinic_id), slot_search_family("*"))

    assert cache_keys.generation(slot_search_family(slot.clinic_id)) == before + 1
    assert search()["results"][0]["available_capacity"] == 1


def test_breaker_state_is_shared_through_redis(topology):
    now = [1_900_000_000.0]
    breaker = WindowedCircuitBreaker(
        f"topology-{topology.name}",
        fail_max=2,
        window_seconds=10,
        reset_seconds=30,
        redis_url=topology.url,
        clock=lambda: now[0],
    )
    breaker.reset()

    def fail() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    # Another worker (another instance, same Redis) sees it open.
    other = WindowedCircuitBreaker(
        f"topology-{topology.name}", redis_url=topology.url, clock=lambda: now[0]
    )
    assert other.snapshot() | {"retry_in_seconds": 0} == {
        "state": "open",
        "failures_in_window": 2,
        "shared": True,
        "retry_in_seconds": 0,
    }
    with pytest.raises(BreakerOpen):
        other.call(lambda: "never called")
    now[0] += 31  # cool-down over: one probe (the admission script, two keys) closes it
    assert other.call(lambda: "probe") == "probe"
    assert breaker.snapshot()["state"] == "closed"


def _all_keys(client: redis.Redis | RedisCluster) -> list[bytes]:
    if isinstance(client, RedisCluster):
        return list(client.scan_iter(count=1000, target_nodes=RedisCluster.PRIMARIES))
    return list(client.scan_iter(count=1000))


def test_every_key_written_by_a_workload_has_a_ttl(topology, settings, transactional_db):
    """Search, holds, confirm, cancel, the read-model, rate limits, idempotency, a breaker,
    slot locks: then every key in Redis must expire on its own."""
    settings.THROTTLE_USER_RATE = "1000/min"
    LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")
    slot = SlotFactory(capacity=3)
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])
    clinic_id = slot.clinic_id
    assert owner.get(f"/api/v1/clinics/{clinic_id}").status_code == 200
    assert owner.get(f"/api/v1/clinics/{clinic_id}/services").status_code == 200
    assert owner.get("/api/v1/slots", {"clinic_id": clinic_id}).status_code == 200
    held = owner.post(
        "/api/v1/reservations",
        {"slot_id": str(slot.id), "pet_id": "pet-1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="ttl-check-1",
    )
    assert held.status_code == 201, held.content
    confirmed = owner.post(f"/api/v1/reservations/{held.json()['id']}/confirm")
    assert confirmed.status_code == 201, confirmed.content
    cancelled = owner.post(
        f"/api/v1/bookings/{confirmed.json()['id']}/cancel", {"reason": ""}, format="json"
    )
    assert cancelled.status_code == 200, cancelled.content
    assert owner.get("/api/v1/slots", {"clinic_id": clinic_id}).status_code == 200
    breaker = WindowedCircuitBreaker("ttl-check", fail_max=1, redis_url=topology.url)
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)

    client = topology.client()
    keys = _all_keys(client)
    assert len(keys) >= 6, keys  # search pages, generations, throttles, read-model, breaker
    without_ttl = [key for key in keys if client.ttl(key) == -1]
    assert without_ttl == []


def test_redis_is_configured_to_evict_only_keys_with_a_ttl():
    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "volatile-lru"
    assert "maxmemory-policy volatile-lru" in (root / "helm/petpro-booking/values.yaml").read_text()
