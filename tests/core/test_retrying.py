"""The one retry policy: pauses, jitter, attempts, deadline, Retry-After and named settings."""

from __future__ import annotations

import time

import pytest
from tenacity import retry_if_exception_type, retry_if_result

from petpro_booking.core.retrying import EQUAL, FULL, NONE, RetryPolicy, retry_policy


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def failing(times: int, error: type[Exception] = Flaky):
    calls: list[float] = []

    def call() -> str:
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise error(f"failure {len(calls)}")
        return "done"

    return call, calls


@pytest.mark.parametrize(
    ("jitter", "low", "high"), [(FULL, 0.0, 1.0), (EQUAL, 0.5, 1.0), (NONE, 1.0, 1.0)]
)
def test_pauses_grow_exponentially_up_to_the_cap_within_their_jitter(jitter, low, high):
    policy = RetryPolicy(attempts=10, base=0.1, cap=0.4, jitter=jitter)
    for retry_number, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.4), (9, 0.4)]:
        pauses = [policy.pause(retry_number) for _ in range(200)]
        assert min(pauses) >= low * ceiling - 1e-9
        assert max(pauses) <= high * ceiling + 1e-9
    if jitter != NONE:
        assert len({round(policy.pause(3), 6) for _ in range(50)}) > 1  # really random


def test_attempts_count_the_first_and_the_last_failure_is_raised_as_itself():
    call, calls = failing(10)
    retrying = RetryPolicy(attempts=3, base=0.001, cap=0.001).retrying(
        retry=retry_if_exception_type(Flaky)
    )

    with pytest.raises(Flaky, match="failure 3"):
        retrying(call)
    assert len(calls) == 3


def test_a_success_within_the_attempts_is_returned():
    call, calls = failing(2)
    retrying = RetryPolicy(attempts=3, base=0.001, cap=0.001).retrying(
        retry=retry_if_exception_type(Flaky)
    )

    assert retrying(call) == "done"
    assert len(calls) == 3


def test_only_the_errors_the_caller_names_are_retried():
    call, calls = failing(5, Fatal)
    retrying = RetryPolicy(attempts=5).retrying(retry=retry_if_exception_type(Flaky))

    with pytest.raises(Fatal):
        retrying(call)
    assert len(calls) == 1


def test_before_sleep_sees_every_retry_but_not_the_give_up():
    call, _ = failing(10)
    seen: list[int] = []
    retrying = RetryPolicy(attempts=4, base=0.001, cap=0.001).retrying(
        retry=retry_if_exception_type(Flaky),
        before_sleep=lambda state: seen.append(state.attempt_number),
    )

    with pytest.raises(Flaky):
        retrying(call)
    assert seen == [1, 2, 3]


def test_no_pause_runs_past_the_deadline():
    call, calls = failing(100)
    retrying = RetryPolicy(base=0.05, cap=0.05, jitter=NONE, deadline=1.02).retrying(
        retry=retry_if_exception_type(Flaky)
    )

    started = time.monotonic()
    with pytest.raises(Flaky):
        retrying(call)

    # at 0, 0.05, ..., 1.00 (fewer on a busy machine: a deadline of 0.22 once saw a single
    # call when the first took that long); a pause to 1.05 would pass 1.02
    assert 2 <= len(calls) <= 21
    assert calls[-1] - started < 1.02


def test_a_shared_deadline_instant_replaces_the_policy_deadline():
    call, calls = failing(100)
    deadline_at = time.monotonic() - 1  # already spent by an earlier call
    retrying = RetryPolicy(attempts=5, base=0.01, cap=0.01, deadline=10).retrying(
        retry=retry_if_exception_type(Flaky), deadline_at=deadline_at
    )

    with pytest.raises(Flaky):
        retrying(call)
    assert len(calls) == 1


def test_at_least_lengthens_a_pause_as_a_retry_after_does():
    call, calls = failing(1)
    retrying = RetryPolicy(attempts=2, base=0.001, cap=0.001).retrying(
        retry=retry_if_exception_type(Flaky), at_least=lambda state: 0.15
    )

    assert retrying(call) == "done"
    assert calls[1] - calls[0] >= 0.15


def test_a_retried_result_that_runs_out_goes_to_the_error_callback():
    answers = iter([False, False, False, True])
    retrying = RetryPolicy(attempts=3).retrying(
        retry=retry_if_result(lambda ok: not ok), retry_error_callback=lambda state: "gave up"
    )

    assert retrying(lambda: next(answers)) == "gave up"


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({}, "attempts, a deadline or both"),
        ({"attempts": 0}, "at least 1"),
        ({"attempts": 2, "jitter": "some"}, "jitter must be one of"),
        ({"attempts": 2, "base": -1}, "not negative"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(options, why):
    with pytest.raises(ValueError, match=why):
        RetryPolicy(**options)


def test_named_policies_read_their_settings_at_each_call(settings):
    settings.DB_SERIALIZABLE_ATTEMPTS = 3
    assert retry_policy("serializable") == RetryPolicy(attempts=3, base=0.01, cap=0.2, jitter=FULL)

    settings.DB_SERIALIZABLE_ATTEMPTS = 5
    assert retry_policy("serializable").attempts == 5


def test_retries_are_attempts_after_the_first(settings):
    settings.PAYMENT_MAX_RETRIES = 3
    settings.PAYMENT_RETRY_BACKOFF_SECONDS = 0.2
    settings.PAYMENT_TOTAL_DEADLINE_SECONDS = 8.0

    assert retry_policy("payment_service") == RetryPolicy(
        attempts=4, base=0.2, cap=2.0, jitter=EQUAL, deadline=8.0
    )


def test_every_named_policy_in_the_settings_can_be_built(settings):
    for name in settings.RETRY_POLICIES:
        assert isinstance(retry_policy(name), RetryPolicy)


def test_an_unknown_policy_name_is_a_key_error():
    with pytest.raises(KeyError):
        retry_policy("no-such-policy")
