"""The sliding-window circuit breaker on the real Redis: what a consecutive-failure breaker
(pybreaker's) gets wrong, the cool-down and its single probe, state shared across processes,
and a Redis outage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
from prometheus_client import REGISTRY

from petpro_booking.core.breaker import BreakerOpen, WindowedCircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Down(Exception):
    pass


def fail() -> None:
    raise Down


def ok() -> str:
    return "ok"


def attempt(breaker, func) -> str:
    """Call through `breaker`; 'ok', 'failed' or 'refused'."""
    try:
        breaker.call(func)
    except BreakerOpen:
        return "refused"
    except Down:
        return "failed"
    return "ok"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock, settings) -> WindowedCircuitBreaker:
    return WindowedCircuitBreaker(
        "test-dependency",
        fail_max=5,
        window_seconds=10,
        reset_seconds=30,
        redis_url=settings.REDIS_URL,
        clock=clock,
    )


def test_five_failures_within_ten_seconds_open_it_even_with_successes_between(breaker, clock):
    # (A breaker counting consecutive failures, as pybreaker's does, would stay closed here.)
    for _ in range(5):
        attempt(breaker, fail)
        clock.advance(1)
        attempt(breaker, ok)
        clock.advance(1)

    assert breaker.current_state == "open"
    assert attempt(breaker, ok) == "refused"


def test_five_failures_spread_over_sixty_seconds_do_not_open_it(breaker, clock):
    # (A breaker counting consecutive failures, however far apart, would open here.)
    outcomes = []
    for _ in range(5):
        outcomes.append(attempt(breaker, fail))
        clock.advance(15)

    assert outcomes == ["failed"] * 5
    assert breaker.snapshot()["state"] == "closed"
    assert breaker.snapshot()["failures_in_window"] == 0  # the last one is 15 s old by now
    assert attempt(breaker, ok) == "ok"


def test_an_open_breaker_refuses_without_calling(breaker, clock):
    for _ in range(5):
        attempt(breaker, fail)
    calls = []

    with pytest.raises(BreakerOpen) as refused:
        breaker.call(lambda: calls.append(1))

    assert calls == []
    assert refused.value.state == "open"
    assert breaker.snapshot()["retry_in_seconds"] == 30.0


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_it(breaker, clock):
    for _ in range(5):
        attempt(breaker, fail)
    clock.advance(29)
    assert attempt(breaker, ok) == "refused"
    clock.advance(1)
    assert breaker.current_state == "half-open"

    probe_started, release_probe = threading.Event(), threading.Event()

    def slow_success() -> str:
        probe_started.set()
        release_probe.wait(5)
        return "ok"

    probe = threading.Thread(target=lambda: breaker.call(slow_success))
    probe.start()
    assert probe_started.wait(5)
    others = [attempt(breaker, ok) for _ in range(3)]  # while the probe is in flight
    release_probe.set()
    probe.join(5)

    assert others == ["refused"] * 3
    assert breaker.current_state == "closed"
    assert breaker.snapshot()["failures_in_window"] == 0
    assert attempt(breaker, ok) == "ok"


def test_a_failed_probe_opens_it_for_another_cool_down(breaker, clock):
    for _ in range(5):
        attempt(breaker, fail)
    clock.advance(30)

    assert attempt(breaker, fail) == "failed"  # the probe
    assert breaker.current_state == "open"
    clock.advance(29)
    assert attempt(breaker, ok) == "refused"
    clock.advance(1)
    assert attempt(breaker, ok) == "ok"
    assert breaker.current_state == "closed"


def test_state_changes_are_logged_and_counted(breaker, clock, caplog):
    def changes(old: str, new: str) -> float:
        labels = {"dependency": "test-dependency", "from_state": old, "to_state": new}
        return REGISTRY.get_sample_value("petpro_breaker_state_changes_total", labels) or 0.0

    before = {pair: changes(*pair) for pair in [("closed", "open"), ("open", "half-open")]}
    before[("half-open", "closed")] = changes("half-open", "closed")

    with caplog.at_level("INFO", logger="petpro_booking.core.breaker"):
        for _ in range(7):  # more failures than needed: the breaker opens once
            attempt(breaker, fail)
        clock.advance(30)
        attempt(breaker, ok)

    for pair, count in before.items():
        assert changes(*pair) == count + 1, pair
    assert REGISTRY.get_sample_value("petpro_breaker_state", {"dependency": "test-dependency"}) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "circuit breaker test-dependency: closed -> open after 5 failures within 10 s" in messages
    )
    assert "circuit breaker test-dependency: half-open -> closed" in messages


WORKER = textwrap.dedent(
    """
    import sys
    from petpro_booking.core.breaker import BreakerOpen, WindowedCircuitBreaker

    breaker = WindowedCircuitBreaker(
        "shared-dependency", fail_max=5, window_seconds=10, reset_seconds=30,
        probe_lease_seconds=5, redis_url=sys.argv[1],
    )
    if sys.argv[2] == "fail":
        for _ in range(int(sys.argv[3])):
            try:
                breaker.call(lambda: 1 / 0)
            except (ZeroDivisionError, BreakerOpen):
                pass
    print(breaker.snapshot()["state"], breaker.snapshot()["failures_in_window"])
    """
)


def run_worker(redis_url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, redis_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_every_process_sees_the_same_window_and_state(settings):
    here = WindowedCircuitBreaker(
        "shared-dependency",
        fail_max=5,
        window_seconds=10,
        reset_seconds=30,
        redis_url=settings.REDIS_URL,
    )
    attempt(here, fail)
    attempt(here, fail)

    # another process adds three failures to the same window: together they are five
    assert run_worker(settings.REDIS_URL, "fail", "3") == "open 5"
    assert here.current_state == "open"
    assert attempt(here, ok) == "refused"

    here.reset()
    assert run_worker(settings.REDIS_URL, "look") == "closed 0"


def test_a_redis_outage_falls_back_to_an_in_process_window(private_redis, clock, caplog):
    breaker = WindowedCircuitBreaker(
        "redis-outage",
        fail_max=5,
        window_seconds=10,
        reset_seconds=30,
        redis_url=private_redis.url,
        clock=clock,
    )
    attempt(breaker, fail)
    assert breaker.snapshot()["shared"] is True
    fallbacks_before = (
        REGISTRY.get_sample_value(
            "petpro_redis_unavailable_fallbacks_total", {"operation": "breaker"}
        )
        or 0
    )
    private_redis.stop()

    started = time.monotonic()
    outcomes = [attempt(breaker, fail) for _ in range(6)]
    elapsed = time.monotonic() - started

    assert outcomes == ["failed"] * 5 + ["refused"]  # the window lives on in this process
    assert breaker.snapshot() == {
        "state": "open",
        "failures_in_window": 5,
        "shared": False,
        "retry_in_seconds": 30.0,
    }
    assert elapsed < 1.0  # one short Redis timeout, then no more waiting on it
    assert (
        REGISTRY.get_sample_value(
            "petpro_redis_unavailable_fallbacks_total", {"operation": "breaker"}
        )
        == fallbacks_before + 1
    )
    assert any("Redis unreachable" in record.getMessage() for record in caplog.records)
