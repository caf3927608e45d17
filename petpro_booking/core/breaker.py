"""Circuit breakers for calls to other services: failures counted in a sliding time window,
state shared by every worker through Redis, one probe at a time when half-open.

Why not pybreaker's `CircuitBreaker`: it counts *consecutive*
failures (a single success resets the count, so a flapping dependency never trips it, while
five failures an hour apart do), it holds one RLock around the guarded call (every thread of a
worker waits for the slowest call), its half-open state lets every caller through instead of
one probe, and with Redis down its `CircuitRedisStorage` answers a fixed state. Only its state
names were left, so the dependency went; the names stay the same ("closed", "open",
"half-open").

Redis layout per breaker (`petpro:breaker:{<name>}:…`; the name is the Redis Cluster hash tag,
so the admission script's two keys live on one node):
* `failures` — sorted set, one member per failure, score = its time; trimmed to the window.
* `open_until` — epoch seconds the cool-down ends; present = tripped. Its TTL (cool-down plus
  `HALF_OPEN_MEMORY_SECONDS`) lets a forgotten breaker fall back to closed.
  now < open_until → open; now >= open_until → half-open.
* `probe` — `SET NX PX`: the one caller allowed through while half-open (a lease).

When Redis itself is unreachable the breaker never raises because of it: it keeps a window in
process memory until Redis answers again (checked every `REDIS_RETRY_SECONDS`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.conf import settings

from . import metrics
from .redis_client import AnyRedis, redis_from_url

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"
STATE_GAUGE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

HALF_OPEN_MEMORY_SECONDS = 600
REDIS_RETRY_SECONDS = 5.0
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25

T = TypeVar("T")


class BreakerOpen(Exception):
    """The call was refused without trying: the breaker is open (or half-open with its one
    probe already in flight)."""

    def __init__(self, name: str, state: str) -> None:
        self.name = name
        self.state = state
        super().__init__(f"circuit breaker {name} is {state}")


# Outcomes of asking a store whether a call may go through.
ADMIT_CLOSED = "closed"
ADMIT_PROBE = "probe"
REFUSE_OPEN = "open"
REFUSE_PROBE_BUSY = "probe_busy"


class MemoryStore:
    """The per-process window, used while Redis is unreachable (and in embedded mode)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._open_until: float | None = None
        self._probe_until: float | None = None

    def _trim(self, now: float, window: float) -> None:
        while self._failures and self._failures[0] <= now - window:
            self._failures.popleft()

    def admit(self, *, now: float, lease: float) -> str:
        with self._lock:
            if self._open_until is None:
                return ADMIT_CLOSED
            if now < self._open_until:
                return REFUSE_OPEN
            if self._probe_until is not None and now < self._probe_until:
                return REFUSE_PROBE_BUSY
            self._probe_until = now + lease
            return ADMIT_PROBE

    def record_failure(self, *, now: float, window: float) -> int:
        with self._lock:
            self._failures.append(now)
            self._trim(now, window)
            return len(self._failures)

    def trip(self, *, open_until: float, ttl: float) -> bool:
        with self._lock:
            if self._open_until is not None:
                return False
            self._open_until = open_until
            self._probe_until = None
            return True

    def reopen(self, *, open_until: float, ttl: float) -> None:
        with self._lock:
            self._open_until = open_until
            self._probe_until = None

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self._open_until = None
            self._probe_until = None

    def snapshot(self, *, now: float, window: float) -> tuple[float | None, int]:
        with self._lock:
            self._trim(now, window)
            return self._open_until, len(self._failures)


# GET open_until; absent -> closed; in the future -> open; else take the probe lease (NX).
_ADMIT_SCRIPT = """
local open_until = redis.call('GET', KEYS[1])
if not open_until then return 'closed' end
if tonumber(open_until) > tonumber(ARGV[1]) then return 'open' end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 'probe' end
return 'probe_busy'
"""


class RedisStore:
    """The shared state: every worker of every host sees the same window and state."""

    shared = True

    def __init__(self, client: AnyRedis, name: str) -> None:
        self._client = client
        base = f"petpro:breaker:{{{name}}}"
        self._failures = f"{base}:failures"
        self._open_until = f"{base}:open_until"
        self._probe = f"{base}:probe"
        self._admit = client.register_script(_ADMIT_SCRIPT)

    def admit(self, *, now: float, lease: float) -> str:
        answer = self._admit(
            keys=[self._open_until, self._probe],
            args=[repr(now), uuid.uuid4().hex, max(1, int(lease * 1000))],
        )
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    def record_failure(self, *, now: float, window: float) -> int:
        pipe = self._client.pipeline(transaction=True)
        pipe.zadd(self._failures, {f"{now!r}:{uuid.uuid4().hex[:8]}": now})
        pipe.zremrangebyscore(self._failures, "-inf", now - window)
        pipe.zcard(self._failures)
        pipe.pexpire(self._failures, int((window + 1) * 1000))
        return int(pipe.execute()[2])

    def trip(self, *, open_until: float, ttl: float) -> bool:
        return bool(
            self._client.set(self._open_until, repr(open_until), nx=True, px=int(ttl * 1000))
        )

    def reopen(self, *, open_until: float, ttl: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._open_until, repr(open_until), px=int(ttl * 1000))
        pipe.delete(self._probe)
        pipe.execute()

    def reset(self) -> None:
        self._client.delete(self._open_until, self._probe, self._failures)

    def snapshot(self, *, now: float, window: float) -> tuple[float | None, int]:
        pipe = self._client.pipeline(transaction=False)
        pipe.get(self._open_until)
        pipe.zcount(self._failures, now - window, "+inf")
        raw_until, failures = pipe.execute()
        return (float(raw_until) if raw_until is not None else None), int(failures)


_clients: dict[str, AnyRedis] = {}
_clients_lock = threading.Lock()


def _redis_client(url: str) -> AnyRedis:
    """One client (connection pool) per URL and process, with short socket timeouts so an
    unreachable Redis costs a call at most a fraction of its budget."""
    with _clients_lock:
        if url not in _clients:
            _clients[url] = redis_from_url(
                url,
                socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            )
        return _clients[url]


class WindowedCircuitBreaker:
    """Opens after `fail_max` failures within `window_seconds` (whatever succeeded between
    them), stays open `reset_seconds`, then lets one probe through: its success closes the
    breaker, its failure opens it for another cool-down.

    Thresholds left as None are read from settings at each call (SERVICE_BREAKER_*).
    """

    def __init__(
        self,
        name: str,
        *,
        fail_max: int | None = None,
        window_seconds: float | None = None,
        reset_seconds: float | None = None,
        probe_lease_seconds: float | None = None,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._fail_max = fail_max
        self._window_seconds = window_seconds
        self._reset_seconds = reset_seconds
        self._probe_lease_seconds = probe_lease_seconds
        self._redis_url = redis_url
        self._clock = clock
        self._memory = MemoryStore()
        self._redis_stores: dict[str, RedisStore] = {}  # by URL
        self._redis_down_until = 0.0
        self._store_lock = threading.Lock()

    # --- configuration ------------------------------------------------------------------
    @property
    def fail_max(self) -> int:
        return self._fail_max or settings.SERVICE_BREAKER_FAIL_MAX

    @property
    def window_seconds(self) -> float:
        return self._window_seconds or settings.SERVICE_BREAKER_WINDOW_SECONDS

    @property
    def reset_seconds(self) -> float:
        return self._reset_seconds or settings.SERVICE_BREAKER_RESET_SECONDS

    @property
    def probe_lease_seconds(self) -> float:
        return self._probe_lease_seconds or settings.SERVICE_CALL_DEADLINE_SECONDS + 1.0

    # --- storage: Redis when it answers, process memory otherwise --------------------------
    def _redis(self) -> RedisStore | None:
        url = self._redis_url if self._redis_url is not None else settings.REDIS_URL
        if not url or time.monotonic() < self._redis_down_until:
            return None
        with self._store_lock:
            if url not in self._redis_stores:
                self._redis_stores[url] = RedisStore(_redis_client(url), self.name)
            return self._redis_stores[url]

    def _on_store(self, operation: str, action: Callable[[Any], T]) -> tuple[T, bool]:
        """Run `action` on the shared store, or on the in-process one if Redis fails.
        Returns (result, shared)."""
        store = self._redis()
        if store is not None:
            try:
                return action(store), True
            except redis.RedisError as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                metrics.REDIS_UNAVAILABLE_FALLBACKS.labels(operation="breaker").inc()
                logger.warning(
                    "circuit breaker %s: Redis unreachable during %s (%s); "
                    "counting failures in this process for %.0f s",
                    self.name,
                    operation,
                    type(exc).__name__,
                    REDIS_RETRY_SECONDS,
                )
        return action(self._memory), False

    # --- the guarded call ---------------------------------------------------------------
    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `func` if the breaker lets it through; any exception it raises is a failure.
        Raises BreakerOpen without calling `func`."""
        now = self._clock()
        admitted, _ = self._on_store(
            "admit", lambda store: store.admit(now=now, lease=self.probe_lease_seconds)
        )
        if admitted == REFUSE_OPEN:
            raise BreakerOpen(self.name, OPEN)
        if admitted == REFUSE_PROBE_BUSY:
            raise BreakerOpen(self.name, HALF_OPEN)
        probe = admitted == ADMIT_PROBE
        if probe:
            self._changed(OPEN, HALF_OPEN)
        try:
            result = func(*args, **kwargs)
        except Exception:
            self._failed(probe=probe)
            raise
        if probe:
            self._on_store("close", lambda store: store.reset())
            self._changed(HALF_OPEN, CLOSED)
        return result

    def _failed(self, *, probe: bool) -> None:
        now = self._clock()
        open_until = now + self.reset_seconds
        ttl = self.reset_seconds + HALF_OPEN_MEMORY_SECONDS
        if probe:
            self._on_store("reopen", lambda store: store.reopen(open_until=open_until, ttl=ttl))
            self._changed(HALF_OPEN, OPEN)
            return
        window = self.window_seconds
        failures, _ = self._on_store(
            "record_failure", lambda store: store.record_failure(now=now, window=window)
        )
        if failures >= self.fail_max:
            tripped, _ = self._on_store(
                "trip", lambda store: store.trip(open_until=open_until, ttl=ttl)
            )
            if tripped:  # only the worker that tripped it reports the change
                self._changed(CLOSED, OPEN, failures=failures)

    def _changed(self, old: str, new: str, *, failures: int | None = None) -> None:
        metrics.BREAKER_STATE_CHANGES.labels(
            dependency=self.name, from_state=old, to_state=new
        ).inc()
        metrics.BREAKER_STATE.labels(dependency=self.name).set(STATE_GAUGE_VALUES[new])
        log = logger.warning if new == OPEN else logger.info
        if failures is None:
            log("circuit breaker %s: %s -> %s", self.name, old, new)
        else:
            log(
                "circuit breaker %s: %s -> %s after %d failures within %.0f s",
                self.name,
                old,
                new,
                failures,
                self.window_seconds,
            )

    # --- reading the state --------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """State, failures in the current window, and whether the state is the shared one."""
        now = self._clock()
        window = self.window_seconds
        (open_until, failures), shared = self._on_store(
            "snapshot", lambda store: store.snapshot(now=now, window=window)
        )
        if open_until is None:
            state = CLOSED
        elif now < open_until:
            state = OPEN
        else:
            state = HALF_OPEN
        metrics.BREAKER_STATE.labels(dependency=self.name).set(STATE_GAUGE_VALUES[state])
        report: dict[str, Any] = {
            "state": state,
            "failures_in_window": failures,
            "shared": shared,
        }
        if state == OPEN and open_until is not None:
            report["retry_in_seconds"] = round(open_until - now, 1)
        return report

    @property
    def current_state(self) -> str:
        return self.snapshot()["state"]

    def health(self) -> dict[str, Any]:
        """A /readyz entry: an open breaker is degraded, never unready."""
        report = self.snapshot()
        return {"status": "ok" if report["state"] == CLOSED else "degraded", **report}

    def reset(self) -> None:
        """Forget failures and close (operators, tests)."""
        self._on_store("reset", lambda store: store.reset())
