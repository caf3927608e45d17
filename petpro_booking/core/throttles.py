"""Rate limits (DESIGN §8): per user and per client IP, counted in the shared cache (Redis);
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
import math
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

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


class SlidingWindowThrottle(BaseThrottle):
    """One limit for one kind of key (`scope`); subclasses say which rate and key."""

    scope = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def rate(self) -> Rate:
        raise ImproperlyConfigured(f"{type(self).__name__} must define rate()")

    def key_of(self, request: Request) -> str | None:
        raise ImproperlyConfigured(f"{type(self).__name__} must define key_of()")

    def allow_request(self, request: Request, view) -> bool:
        self._wait = None
        if is_exempt(request):
            return True
        ident = self.key_of(request)
        if ident is None:
            return True
        rate = self.rate()
        now = time.time()
        window = int(now // rate.period)
        elapsed = now - window * rate.period
        current_key = f"throttle:{self.scope}:{ident}:{window}"
        previous_key = f"throttle:{self.scope}:{ident}:{window - 1}"
        cache.add(current_key, 0, timeout=rate.period * 2 + 1)
        try:
            count = cache.incr(current_key)
        except ValueError:  # the key expired between add and incr: count this one only
            cache.add(current_key, 1, timeout=rate.period * 2 + 1)
            count = 1
        if count is None:  # the cache is down (django-redis ignores the error)
            return True
        previous = int(cache.get(previous_key) or 0)
        estimate = previous * (1 - elapsed / rate.period) + count
        if estimate <= rate.limit:
            return True
        with contextlib.suppress(ValueError):  # expired meanwhile: nothing to take back
            cache.decr(current_key)
        self._wait = _seconds_until_allowed(
            rate=rate, previous=previous, current=count - 1, elapsed=elapsed
        )
        return False

    def wait(self) -> float | None:
        if self._wait is None:
            return None
        return float(max(1, math.ceil(self._wait)))


class UserRateThrottle(SlidingWindowThrottle):
    """THROTTLE_USER_RATE per authenticated caller (`sub`); anonymous calls count per IP only."""

    scope = "user"

    def rate(self) -> Rate:
        return parse_rate(settings.THROTTLE_USER_RATE)

    def key_of(self, request: Request) -> str | None:
        sub = getattr(request.user, "sub", None)
        return str(sub) if sub else None


class IPRateThrottle(SlidingWindowThrottle):
    """THROTTLE_IP_RATE per client address, for every caller, authenticated or not."""

    scope = "ip"

    def rate(self) -> Rate:
        return parse_rate(settings.THROTTLE_IP_RATE)

    def key_of(self, request: Request) -> str | None:
        return client_ip(request)
