"""Rate limits (docs/security.md): per user and per client IP, counted in the shared cache (Redis);
service tokens and an IP allowlist are exempt.

Counting is a sliding-window counter: the current fixed window's count plus the previous
window's count weighted by how much of it still overlaps the last `period` seconds. Unlike a
plain fixed window it does not let a client send 2x the limit across a window boundary, and
unlike DRF's SimpleRateThrottle (a read-modify-write of a timestamp list) it counts with an
atomic INCR, so concurrent workers never lose a request. A refused request is not counted.
Retry-After says when the counter will admit the next request: once the current window is
full that is the rest of it plus the time the previous window's weight needs to fade (so it
can exceed the period, never two periods).
If the cache is unreachable, requests are let through (rate limiting must not take the API
down with Redis).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from redis.cluster import RedisCluster
from redis.commands.core import Script
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from . import metrics

logger = logging.getLogger(__name__)

PERIOD_SECONDS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds


@lru_cache(maxsize=32)
def parse_rate(rate: str) -> Rate:
    """'60/min' -> Rate(60, 60)."""
    count, _, period = rate.partition("/")
    try:
        limit = int(count)
        seconds = PERIOD_SECONDS[period.strip().lower()]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(f"Rate {rate!r} is not '<n>/<s|min|hour|day>'.") from None
    if limit < 1:
        raise ImproperlyConfigured(f"Rate {rate!r} must allow at least one request.")
    return Rate(limit=limit, period=seconds)


@lru_cache(maxsize=32)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise ImproperlyConfigured(f"Not a CIDR in {cidrs!r}: {exc}") from None


def _parse_ip(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header hop, accepting `1.2.3.4:port` and `[v6]:port`."""
    value = raw.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _in_networks(address: str, cidrs: list[str]) -> bool:
    if not cidrs:
        return False
    parsed = _parse_ip(address)
    return parsed is not None and any(parsed in net for net in _networks(tuple(cidrs)))


def client_ip(request: Request) -> str:
    """The caller's address: REMOTE_ADDR, or with THROTTLE_TRUSTED_PROXY_HEADER set, the
    right-most hop of that header that is not a trusted proxy.

    Walking from the right means only addresses our own proxies wrote are believed; whatever
    a client puts at the left of X-Forwarded-For is ignored. With THROTTLE_TRUSTED_PROXIES
    empty the direct peer (REMOTE_ADDR) is taken to be the one proxy. If the chosen hop is not
    an IP address (a misconfigured chain), REMOTE_ADDR is used.
    """
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    header = settings.THROTTLE_TRUSTED_PROXY_HEADER
    if not header:
        return remote
    raw = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
    hops = [hop.strip() for hop in raw.split(",") if hop.strip()]
    hops.append(remote)
    trusted = list(settings.THROTTLE_TRUSTED_PROXIES)
    chosen = hops[0]
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        is_direct_peer = index == len(hops) - 1
        if (is_direct_peer and not trusted) or _in_networks(hop, trusted):
            continue
        chosen = hop
        break
    parsed = _parse_ip(chosen)
    return str(parsed) if parsed is not None else remote


def is_exempt(request: Request) -> bool:
    """Service-role tokens and allowlisted networks are never throttled."""
    if getattr(request.user, "is_service", False):
        return True
    return _in_networks(client_ip(request), list(settings.THROTTLE_IP_ALLOWLIST))


def _seconds_until_allowed(*, rate: Rate, previous: int, current: int, elapsed: float) -> float:
    """How long until one more request fits, given the counts without it."""
    period = rate.period
    if current + 1 > rate.limit:
        # The current window alone is full: wait for the next one, where it becomes `previous`.
        rest_of_window = period - elapsed
        return rest_of_window + _seconds_until_allowed(
            rate=rate, previous=current, current=0, elapsed=0.0
        )
    if previous == 0:
        return 0.0
    # previous * (1 - (elapsed + t) / period) + current + 1 <= limit
    overlap_needed = (rate.limit - current - 1) / previous
    return max(0.0, period * (1 - overlap_needed) - elapsed)


@dataclass(frozen=True)
class Window:
    """One limit applied to one request: its counter keys and where `now` falls."""

    rate: Rate
    current_key: str
    previous_key: str
    elapsed: float  # seconds into the current fixed window

    @property
    def ttl(self) -> int:
        return self.rate.period * 2 + 1


def throttle_key_prefix(scope: str, ident: str) -> str:
    """The cache-key prefix of one caller's windows in one scope (`user`, `ip`). One hash tag
    per caller and scope: both windows on one cluster node."""
    return f"throttle:{{{scope}:{ident}}}:"


def windows_for(request: Request, *, now: float) -> list[Window]:
    """The limits this request counts against: its user's (if authenticated) and its IP's."""
    limits: list[tuple[str, str, Rate]] = []
    sub = getattr(request.user, "sub", None)
    if sub:
        limits.append(("user", str(sub), parse_rate(settings.THROTTLE_USER_RATE)))
    limits.append(("ip", client_ip(request), parse_rate(settings.THROTTLE_IP_RATE)))
    windows = []
    for scope, ident, rate in limits:
        index = int(now // rate.period)
        windows.append(
            Window(
                rate=rate,
                current_key=f"{throttle_key_prefix(scope, ident)}{index}",
                previous_key=f"{throttle_key_prefix(scope, ident)}{index - 1}",
                elapsed=now - index * rate.period,
            )
        )
    return windows


class CacheCounter:
    """Counts through Django's cache API (the local-memory cache of embedded mode)."""

    def count(self, windows: list[Window]) -> list[tuple[int, int]] | None:
        counts = []
        for window in windows:
            cache.add(window.current_key, 0, timeout=window.ttl)
            try:
                current = cache.incr(window.current_key)
            except ValueError:  # expired between add and incr: count this one only
                cache.add(window.current_key, 1, timeout=window.ttl)
                current = 1
            if current is None:  # a cache that swallows its errors is down
                return None
            counts.append((int(current), int(cache.get(window.previous_key) or 0)))
        return counts

    def uncount(self, windows: list[Window]) -> None:
        for window in windows:
            with contextlib.suppress(ValueError):  # expired meanwhile: nothing to take back
                cache.decr(window.current_key)


# Every limit of a request in one command (KEYS: current and previous window of each limit,
# ARGV: the current window's TTL of each): INCR, EXPIRE, GET previous, per limit. The limits'
# keys lie in different hash slots (one tag per caller and scope), so a cluster cannot run it.
_COUNT_LUA = """
local counts = {}
for i = 1, #ARGV do
  counts[2 * i - 1] = redis.call('INCR', KEYS[2 * i - 1])
  redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[i])
  counts[2 * i] = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
end
return counts
"""
_count_script: Script | None = None


class RedisCounter:
    """Counts every limit of a request on the cache's Redis in one round trip: on one node a
    Lua script, one command (six pipelined commands cost ~1-2 % of a hold's instructions more:
    docs/benchmarks.md); on a cluster, whose keys of two limits lie on two nodes, INCR, EXPIRE
    and GET previous per limit, pipelined. Through the cache API the two limits took six round
    trips, ~0.7 ms a request. An unreachable Redis lets requests through and is not asked
    again for REDIS_RETRY_SECONDS."""

    REDIS_RETRY_SECONDS = 5.0
    _down_until: dict[str, float] = {}

    def __init__(self) -> None:
        from django_redis import get_redis_connection

        self._client = get_redis_connection("default")
        self._location = str(settings.CACHES["default"].get("LOCATION"))

    def _counts(self, windows: list[Window]) -> list[tuple[int, int]]:
        """(current count, previous window's count) per window, this request counted."""
        if isinstance(self._client, RedisCluster):
            pipe = self._client.pipeline(transaction=False)
            for window in windows:
                current_key = cache.make_key(window.current_key)
                pipe.incr(current_key)
                pipe.expire(current_key, window.ttl)
                pipe.get(cache.make_key(window.previous_key))
            answers = pipe.execute()
            return [(int(answers[i]), int(answers[i + 2] or 0)) for i in range(0, len(answers), 3)]
        global _count_script
        if _count_script is None:
            _count_script = self._client.register_script(_COUNT_LUA)
        keys = []
        for window in windows:
            keys += [cache.make_key(window.current_key), cache.make_key(window.previous_key)]
        counts = _count_script(keys=keys, args=[w.ttl for w in windows], client=self._client)
        return [(int(counts[i]), int(counts[i + 1])) for i in range(0, len(counts), 2)]

    def count(self, windows: list[Window]) -> list[tuple[int, int]] | None:
        if time.monotonic() < self._down_until.get(self._location, 0.0):
            return None
        try:
            return self._counts(windows)
        except redis.RedisError as exc:
            self._down_until[self._location] = time.monotonic() + self.REDIS_RETRY_SECONDS
            metrics.REDIS_UNAVAILABLE_FALLBACKS.labels(operation="throttle").inc()
            logger.warning(
                "rate limits off for %.0f s: Redis unreachable (%s)",
                self.REDIS_RETRY_SECONDS,
                type(exc).__name__,
            )
            return None

    def uncount(self, windows: list[Window]) -> None:
        with contextlib.suppress(redis.RedisError):
            pipe = self._client.pipeline(transaction=False)
            for window in windows:
                pipe.decr(cache.make_key(window.current_key))
            pipe.execute()


def _counter() -> CacheCounter | RedisCounter:
    if settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache":
        return RedisCounter()
    return CacheCounter()


_COUNTED = "_petpro_rate_limit_counted"


def rate_limit_counted(request: Request) -> bool:
    """Whether `RateLimitThrottle` already counted this request (the exception handler counts
    the ones DRF refused before its throttles ran)."""
    return getattr(request, _COUNTED, False)


class RateLimitThrottle(BaseThrottle):
    """THROTTLE_USER_RATE per authenticated caller (`sub`) and THROTTLE_IP_RATE per client
    address for every caller, authenticated or not; both counted in one round trip. A request
    refused by either limit is counted by neither."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view) -> bool:
        self._wait = None
        setattr(request, _COUNTED, True)
        if is_exempt(request):
            return True
        windows = windows_for(request, now=time.time())
        counter = _counter()
        counts = counter.count(windows)
        if counts is None:  # the counter store is unreachable: let the request through
            return True
        waits = []
        for window, (current, previous) in zip(windows, counts, strict=True):
            estimate = previous * (1 - window.elapsed / window.rate.period) + current
            if estimate > window.rate.limit:
                waits.append(
                    _seconds_until_allowed(
                        rate=window.rate,
                        previous=previous,
                        current=current - 1,
                        elapsed=window.elapsed,
                    )
                )
        if not waits:
            return True
        counter.uncount(windows)
        self._wait = max(waits)
        return False

    def wait(self) -> float | None:
        if self._wait is None:
            return None
        return float(max(1, math.ceil(self._wait)))


def login_client_ip(request: Request) -> str | None:
    """The caller's address for django-axes (admin login lockout): the address the throttles
    use, or None when there is none (a test client without REMOTE_ADDR)."""
    address = client_ip(request)
    return address if _parse_ip(address) is not None else None
