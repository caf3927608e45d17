"""The one retry policy of the project: tenacity `Retrying` objects built from named settings.

Every retry has the same shape (`RetryPolicy`): at most `attempts` tries (the first
included; None: as many as the deadline allows), exponential pauses whose n-th is at most
`min(cap, base * 2**(n-1))` seconds, a `jitter` and a `deadline` in seconds: no pause is
started that would end past it (the caller gets the last failure instead of a late answer).

Jitter: `full` draws the pause from [0, ceiling] (contenders for one row or lock spread out
the most); `equal` from [ceiling/2, ceiling] (a sick dependency gets at least half the pause
to recover); `none` waits the ceiling.

The policies are named in `settings.RETRY_POLICIES`; `retry_policy(name)` reads one as the
settings are now, so an override applies at the next call. Which errors are retried, and
what is counted, stays with the caller (`retry=`, `before_sleep=`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from tenacity import RetryCallState, Retrying, stop_after_attempt, stop_any, stop_never
from tenacity.retry import retry_base
from tenacity.stop import stop_base

FULL = "full"
EQUAL = "equal"
NONE = "none"
JITTERS = (FULL, EQUAL, NONE)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int | None = None
    base: float = 0.0
    cap: float = 0.0
    jitter: str = FULL
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {JITTERS}, not {self.jitter!r}")
        if self.attempts is None and self.deadline is None:
            raise ValueError("a retry policy needs attempts, a deadline or both")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("attempts count the first one: at least 1")
        if self.base < 0 or self.cap < 0:
            raise ValueError("pauses are not negative")

    def pause(self, retry_number: int) -> float:
        """The pause before retry number `retry_number` (1: after the first attempt failed)."""
        ceiling = min(self.cap, self.base * 2 ** (retry_number - 1))
        if self.jitter == FULL:
            return random.uniform(0, ceiling)
        if self.jitter == EQUAL:
            return ceiling / 2 + random.uniform(0, ceiling / 2)
        return ceiling

    def retrying(
        self,
        *,
        retry: retry_base | Callable[[RetryCallState], bool],
        before_sleep: Callable[[RetryCallState], None] | None = None,
        at_least: Callable[[RetryCallState], float] | None = None,
        deadline_at: float | None = None,
        retry_error_callback: Callable[[RetryCallState], Any] | None = None,
    ) -> Retrying:
        """A tenacity `Retrying` for one call (build one per call: the deadline starts now).

        `retry` decides what is retried; `before_sleep` sees each retry (metrics, logs);
        `at_least` lengthens a pause (a server's Retry-After); `deadline_at` is an absolute
        `time.monotonic()` instant that replaces `now + deadline` (one budget shared by several
        calls). The last failure is re-raised as itself, not wrapped in tenacity's RetryError;
        a retried *result* that runs out goes to `retry_error_callback`."""
        stops: list[stop_base] = []
        if self.attempts is not None:
            stops.append(stop_after_attempt(self.attempts))
        if deadline_at is None and self.deadline is not None:
            deadline_at = time.monotonic() + self.deadline
        if deadline_at is not None:
            stops.append(_StopBefore(deadline_at))

        def wait(state: RetryCallState) -> float:
            pause = self.pause(state.attempt_number)
            return max(pause, at_least(state)) if at_least is not None else pause

        return Retrying(
            stop=stop_any(*stops) if stops else stop_never,
            wait=wait,
            retry=retry,
            before_sleep=before_sleep,
            reraise=True,
            retry_error_callback=retry_error_callback,
        )


class _StopBefore(stop_base):
    """Stop when the coming pause would end at or past `deadline_at` (monotonic seconds)."""

    def __init__(self, deadline_at: float) -> None:
        self.deadline_at = deadline_at

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline_at


def retry_policy(name: str) -> RetryPolicy:
    """The policy `settings.RETRY_POLICIES[name]`. A string value there names the setting that
    holds the number (the knobs operators already know, such as DB_SERIALIZABLE_ATTEMPTS);
    `retries` is the other way to say `attempts` (attempts = 1 + retries)."""
    spec: dict[str, Any] = dict(settings.RETRY_POLICIES[name])
    values: dict[str, Any] = {
        key: getattr(settings, value) if isinstance(value, str) and key != "jitter" else value
        for key, value in spec.items()
    }
    if "retries" in values:
        values["attempts"] = 1 + values.pop("retries")
    return RetryPolicy(**values)
