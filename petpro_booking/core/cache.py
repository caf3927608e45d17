"""Cache helpers: generation-keyed entries so one bump invalidates a whole family, and the two
cache levels (this process's LRU, then Redis) for values read on every request.

A family's generation is a counter in Redis (`gen:<family>`). Every key written has a TTL
(so Redis may run `volatile-lru`): a generation lives GENERATION_TTL_SECONDS, far longer than
anything keyed under it, and when its key is missing (first use, evicted, expired) it starts
again from the clock in microseconds, never from 0, so it cannot come back to a number that
entries still in the cache were keyed under.

With LOCAL_CACHE_ENABLED the generations are also held in the process for
LOCAL_CACHE_GENERATION_SECONDS (0.5 s): a bump in another process is seen within a second (the
"generation check"; no pub/sub listener thread per process), a bump in this process at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from . import metrics
from .local_cache import MISSING, local_cache
from .locking import send_with_release

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Far longer than any entry keyed by a generation (search pages live 5 minutes).
GENERATION_TTL_SECONDS = 7 * 86400


def _generation_key(family: str) -> str:
    return f"gen:{family}"


def _fresh_generation() -> int:
    """Where a generation starts when its key is missing: the clock in microseconds, above
    every number it can have reached before (a bump is one INCR)."""
    return time.time_ns() // 1000


def _read_generation(family: str) -> int:
    key = _generation_key(family)
    value = cache.get(key)
    if value is None:
        cache.add(key, _fresh_generation(), timeout=GENERATION_TTL_SECONDS)
        value = cache.get(key)
    return int(value or 0)  # 0: Redis unreachable (nothing is cached then either)


def generation(family: str, *, max_lag: float = 0.0) -> int:
    """The family's generation: from this process's LRU (at most
    LOCAL_CACHE_GENERATION_SECONDS old, this process's own bumps seen at once) or from Redis.

    `max_lag` > 0 reads it at most that often, this process's own bumps included: for entries
    that may lag a change by that long (search pages), so a burst of changes costs each
    process one recomputation per entry and per `max_lag` rather than one per change."""
    local = local_cache()
    if local is None:
        return _read_generation(family)
    if max_lag > 0:
        key, ttl = ("gen-lagging", family), max_lag  # bump_generation leaves it alone
    else:
        key, ttl = ("gen", family), settings.LOCAL_CACHE_GENERATION_SECONDS
    value = local.get(key)
    if value is MISSING:
        value = _read_generation(family)
        local.set(key, value, ttl=ttl)
    return value


def bump_generation(*families: str) -> None:
    """Invalidate every entry keyed under each of `families` (entries age out on their own
    TTL). On Redis all bumps go in one pipelined round trip (each family's two commands
    touch one key: one node of a cluster); a Redis outage is counted and skipped (the cached
    entries then live out their TTL).

    Outside a transaction (an after-commit hook) and inside a lock block on the cache's own
    Redis (a slot write's), the bumps go with the block's lock releases, in its one round trip
    when the block ends (`core.locking.send_with_release`): still after the commit and before
    the response, one round trip less."""
    local = local_cache()
    if local is not None:
        for family in families:
            local.discard(("gen", family))
    if settings.CACHES["default"]["BACKEND"] != "django_redis.cache.RedisCache":
        for family in families:
            key = _generation_key(family)
            if not cache.add(key, _fresh_generation(), timeout=GENERATION_TTL_SECONDS):
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.add(key, _fresh_generation(), timeout=GENERATION_TTL_SECONDS)
        return
    from django_redis import get_redis_connection

    commands: list[tuple] = []
    for family in families:
        key = cache.make_key(_generation_key(family))
        # A missing key starts from the clock, with its TTL (INCR keeps it): a busy family's
        # key expires a week after it was made and simply starts again.
        commands.append(("SET", key, _fresh_generation(), "NX", "EX", GENERATION_TTL_SECONDS))
        commands.append(("INCR", key))

    def sent(error: BaseException | None) -> None:
        if local is not None:  # read again meanwhile (before the bump went): forget it again
            for family in families:
                local.discard(("gen", family))
        if error is not None:
            metrics.REDIS_UNAVAILABLE_FALLBACKS.labels(operation="cache_invalidation").inc()
            logger.warning("cache generations not bumped: %s", type(error).__name__)

    if not connection.in_atomic_block and send_with_release(_cache_redis_url(), commands, sent):
        return
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()
    except redis.RedisError as exc:
        sent(exc)


def _cache_redis_url() -> str:
    location = settings.CACHES["default"]["LOCATION"]
    if isinstance(location, list | tuple):
        return location[0] if len(location) == 1 else ""
    return str(location)


def keyed(prefix: str, families: list[str], params: dict[str, Any], *, max_lag: float = 0.0) -> str:
    """A cache key that changes when any of `families` is bumped (within `max_lag`, see
    `generation`) or `params` differ."""
    gens = ",".join(f"{family}={generation(family, max_lag=max_lag)}" for family in families)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]
    return f"{prefix}:{gens}:{digest}"


def two_level_get(*, family: str, name: str, load: Callable[[], T | None], ttl: int) -> T | None:
    """`load()`'s value through both levels: this process's LRU (LOCAL_CACHE_SECONDS), then
    Redis (`ttl`), keyed under `family`'s generation, so `bump_generation(family)` makes every
    level miss (other processes within LOCAL_CACHE_GENERATION_SECONDS). None is not cached:
    what does not exist yet may be created without a bump."""
    key = f"twolevel:{name}:g{generation(family)}"
    local = local_cache()
    if local is not None:
        value = local.get(key)
        if value is not MISSING:
            metrics.LOCAL_CACHE.labels(result="hit").inc()
            return value
        metrics.LOCAL_CACHE.labels(result="miss").inc()
    value = cache.get(key)
    if value is None:
        value = load()
        if value is None:
            return None
        cache.set(key, value, timeout=ttl)
    if local is not None:
        local.set(key, value, ttl=settings.LOCAL_CACHE_SECONDS)
    return value
