"""Cache helpers: generation-keyed entries so one bump invalidates a whole family."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

from . import metrics

logger = logging.getLogger(__name__)


def _generation_key(family: str) -> str:
    return f"gen:{family}"


def generation(family: str) -> int:
    """The family's generation; a family never bumped is at 0 (so the first INCR moves it)."""
    value = cache.get(_generation_key(family))
    if value is None:
        cache.add(_generation_key(family), 0, timeout=None)
        value = cache.get(_generation_key(family)) or 0
    return int(value)


def bump_generation(*families: str) -> None:
    """Invalidate every entry keyed under each of `families` (entries age out on their own
    TTL). On Redis all bumps go in one pipelined round trip; a Redis outage is counted and
    skipped (the cached entries then live out their TTL)."""
    if settings.CACHES["default"]["BACKEND"] != "django_redis.cache.RedisCache":
        for family in families:
            try:
                cache.incr(_generation_key(family))
            except ValueError:
                cache.add(_generation_key(family), 1, timeout=None)
        return
    from django_redis import get_redis_connection

    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        for family in families:
            pipe.incr(cache.make_key(_generation_key(family)))  # a missing one reads as 0
        pipe.execute()
    except redis.RedisError as exc:
        metrics.REDIS_UNAVAILABLE_FALLBACKS.labels(operation="cache_invalidation").inc()
        logger.warning("cache generations not bumped: %s", type(exc).__name__)


def keyed(prefix: str, families: list[str], params: dict[str, Any]) -> str:
    """A cache key that changes when any of `families` is bumped or `params` differ."""
    gens = ",".join(f"{family}={generation(family)}" for family in families)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]
    return f"{prefix}:{gens}:{digest}"
