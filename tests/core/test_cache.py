"""Generation-keyed cache entries on the real Redis: one bump invalidates a whole family."""

from __future__ import annotations

from petpro_booking.core import cache as cache_keys


def test_a_bump_moves_every_family_named_read_first_or_not():
    assert cache_keys.generation("slots:read-first") == 0
    cache_keys.bump_generation("slots:read-first", "slots:never-read")
    assert cache_keys.generation("slots:read-first") == 1
    assert cache_keys.generation("slots:never-read") == 1  # a missing one counts from 0
    cache_keys.bump_generation("slots:never-read")
    assert cache_keys.generation("slots:never-read") == 2


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
    assert cache_keys.generation("slots:local") == 0
    cache_keys.bump_generation("slots:local", "slots:local-never-read")
    assert cache_keys.generation("slots:local") == 1
    assert cache_keys.generation("slots:local-never-read") == 1
