"""Generation-keyed cache entries on the real Redis: one bump invalidates a whole family."""

from __future__ import annotations

from django.core.cache import cache
from django_redis import get_redis_connection

from petpro_booking.core import cache as cache_keys


def test_a_bump_moves_every_family_named_read_first_or_not():
    first = cache_keys.generation("slots:read-first")
    cache_keys.bump_generation("slots:read-first", "slots:never-read")
    assert cache_keys.generation("slots:read-first") == first + 1
    never_read = cache_keys.generation("slots:never-read")
    cache_keys.bump_generation("slots:never-read")
    assert cache_keys.generation("slots:never-read") == never_read + 1


def test_generations_expire_and_never_restart_at_a_number_already_used():
    client = get_redis_connection("default")
    key = cache.make_key("gen:slots:evicted")
    before = cache_keys.generation("slots:evicted")
    cache_keys.bump_generation("slots:evicted")
    assert 0 < client.ttl(key) <= cache_keys.GENERATION_TTL_SECONDS
    client.delete(key)  # evicted (volatile-lru) or expired
    cache_keys.bump_generation("slots:evicted")
    assert cache_keys.generation("slots:evicted") > before + 1
    assert client.ttl(key) > 0


def test_keys_change_with_the_generation_and_the_parameters():
    first = cache_keys.keyed("search", ["slots:a"], {"page": 1})
    assert cache_keys.keyed("search", ["slots:a"], {"page": 1}) == first
    assert cache_keys.keyed("search", ["slots:a"], {"page": 2}) != first
    cache_keys.bump_generation("slots:a")
    assert cache_keys.keyed("search", ["slots:a"], {"page": 1}) != first


def test_the_embedded_local_memory_cache_counts_generations_the_same_way(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "gen"}
    }
    first = cache_keys.generation("slots:local")
    cache_keys.bump_generation("slots:local", "slots:local-never-read")
    assert cache_keys.generation("slots:local") == first + 1
    never_read = cache_keys.generation("slots:local-never-read")
    cache_keys.bump_generation("slots:local-never-read")
    assert cache_keys.generation("slots:local-never-read") == never_read + 1


def test_a_bump_after_commit_inside_a_lock_block_goes_with_its_releases():
    from petpro_booking.core.locking import lock_manager

    client = get_redis_connection("default")
    before = cache_keys.generation("slots:with-release")
    with lock_manager().acquire("slot:bump-with-release"):
        cache_keys.bump_generation("slots:with-release")  # outside a transaction: queued
        assert int(client.get(cache.make_key("gen:slots:with-release"))) == before
        # Read again meanwhile: the process's copy is forgotten again once the bump went.
        assert cache_keys.generation("slots:with-release") == before
    assert cache_keys.generation("slots:with-release") == before + 1
    assert client.exists("lock:petpro:{slot:bump-with-release}") == 0


def test_a_lagging_read_sees_even_this_process_s_bump_only_after_the_lag():
    import time

    lag = 1.0
    first = cache_keys.generation("slots:lagging", max_lag=lag)
    read_at = time.monotonic()
    cache_keys.bump_generation("slots:lagging")
    assert cache_keys.generation("slots:lagging") == first + 1  # the ordinary read: at once
    if time.monotonic() - read_at < lag * 0.8:  # a stalled machine may have passed the lag
        assert cache_keys.generation("slots:lagging", max_lag=lag) == first
    time.sleep(max(0.0, read_at + lag + 0.05 - time.monotonic()))
    assert cache_keys.generation("slots:lagging", max_lag=lag) == first + 1
    first_key = cache_keys.keyed("search", ["slots:lagging"], {"page": 1}, max_lag=lag)
    assert first_key == cache_keys.keyed("search", ["slots:lagging"], {"page": 1})
