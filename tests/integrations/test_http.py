"""The shared HTTP stack of the service clients against a real HTTP stub: retries and their
deadline, Retry-After, what the breaker counts, and the 503 each failure becomes."""

from __future__ import annotations

import time

import pytest

from integrations.http import (
    BAD_ANSWER,
    BREAKER_OPEN,
    PROVIDER_ERROR,
    TIMEOUT,
    UNREACHABLE,
    Failure,
    MalformedAnswer,
    ServiceHTTP,
)
from petpro_booking.core.breaker import WindowedCircuitBreaker
from petpro_booking.core.errors import DependencyUnavailable
from petpro_booking.core.retrying import EQUAL, RetryPolicy
from tests.integrations.stub_server import running_stub

PATH = "/api/v1/things/1"
QUICK = RetryPolicy(attempts=3, base=0.01, cap=0.02, jitter=EQUAL, deadline=3.0)


@pytest.fixture
def stub():
    with running_stub() as server:
        yield server


def make_http(name: str, **options) -> ServiceHTTP:
    breaker = WindowedCircuitBreaker(f"test-http-{name}", fail_max=5, window_seconds=10)
    breaker.reset()
    return ServiceHTTP(
        dependency="thing service", breaker=breaker, retry_policy_name="user_service", **options
    )


def call(http: ServiceHTTP, stub, *, policy: RetryPolicy = QUICK, timeout: float = 1.0, **options):
    return http.call(
        "GET",
        stub.url + PATH,
        timeout=timeout,
        parse=lambda response: response.json()["name"],
        policy=policy,
        **options,
    )


def failures(http: ServiceHTTP) -> int:
    return http.breaker.snapshot()["failures_in_window"]


def test_an_answer_is_parsed_and_the_headers_are_sent(stub):
    stub.route("GET", PATH, body={"name": "one"})
    http = make_http("ok", headers={"X-API-Key": "k-1"})

    reply = call(http, stub, headers={"Authorization": "Bearer t"})

    assert (reply.status, reply.body) == (200, "one")
    sent = stub.requests[0].headers
    assert sent["x-api-key"] == "k-1"
    assert sent["authorization"] == "Bearer t"
    assert sent["accept"] == "application/json"
    assert sent["user-agent"] == "petpro-booking-service"


def test_5xx_is_retried_and_every_failed_attempt_counts_toward_the_breaker(stub):
    stub.route("GET", PATH, body={"name": "one"}, fail_times=2, fail_status=502)
    http = make_http("5xx")

    assert call(http, stub).body == "one"
    assert stub.count("GET", PATH) == 3
    assert failures(http) == 2


def test_5xx_to_the_end_is_the_dependencys_503(stub):
    stub.route("GET", PATH, status=503, body={})
    http = make_http("5xx-end")
    seen: list[Failure] = []

    with pytest.raises(DependencyUnavailable) as raised:
        call(http, stub, on_failure=seen.append)

    assert stub.count("GET", PATH) == 3
    assert raised.value.status_code == 503
    assert raised.value.details == {"dependency": "thing service"}
    assert raised.value.message == "The thing service is unavailable; try again shortly."
    assert seen == [Failure(PROVIDER_ERROR, raised.value.message, 503)]


def test_other_4xx_answers_are_returned_unretried_and_are_no_breaker_failure(stub):
    stub.route("GET", PATH, status=401, body={"detail": "no"})
    http = make_http("4xx")

    reply = call(http, stub)

    assert (reply.status, reply.body) == (401, None)
    assert stub.count("GET", PATH) == 1
    assert failures(http) == 0


def test_429_is_an_answer_unless_the_dependency_retries_it(stub):
    answers = iter([429, 429, 200])
    stub.route(
        "GET",
        PATH,
        handler=lambda request: (next(answers), {"name": "late"}),
        headers={"Retry-After": "0.2"},
    )

    assert call(make_http("429-answer"), stub).status == 429

    started = time.monotonic()
    reply = call(make_http("429-retried", retry_rate_limited=True), stub)

    assert reply.body == "late"
    assert time.monotonic() - started >= 0.2  # Retry-After is longer than the 10 ms pause


def test_a_retry_after_past_the_deadline_gives_up_at_once(stub):
    stub.route("GET", PATH, status=503, body={}, headers={"Retry-After": "30"})
    http = make_http("retry-after-long")

    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        call(http, stub)

    assert stub.count("GET", PATH) == 1
    assert time.monotonic() - started < 1.0


def test_attempt_timeouts_shrink_to_what_is_left_of_the_deadline(stub):
    stub.route("GET", PATH, body={"name": "slow"}, delay=2.0)
    http = make_http("timeouts")
    seen: list[Failure] = []
    policy = RetryPolicy(attempts=5, base=0.01, cap=0.01, jitter=EQUAL, deadline=1.0)

    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        call(http, stub, policy=policy, timeout=0.4, on_failure=seen.append)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0 + 0.3
    assert 2 <= stub.count("GET", PATH) <= 3  # 0.4 + 0.4 + what is left
    assert seen[0].reason == TIMEOUT
    assert "did not answer in time" in raised.value.message


def test_a_refused_connection_is_retried_only_where_a_repeat_is_harmless(stub):
    url = stub.url
    stub.stop()
    once, retried = make_http("refused-once"), make_http("refused-retried", retry_unreachable=True)
    seen: list[Failure] = []

    for http in (once, retried):
        with pytest.raises(DependencyUnavailable):
            http.call(
                "GET", url + PATH, timeout=0.5, parse=str, policy=QUICK, on_failure=seen.append
            )

    assert (failures(once), failures(retried)) == (1, 3)
    assert [failure.reason for failure in seen] == [UNREACHABLE, UNREACHABLE]


@pytest.mark.parametrize("body", [{"unexpected": True}, ["a", "list"]])
def test_an_answer_the_parser_refuses_is_a_failure_not_retried(stub, body):
    stub.route("GET", PATH, body=body)
    http = make_http("malformed")
    seen: list[Failure] = []

    with pytest.raises(DependencyUnavailable):
        call(http, stub, on_failure=seen.append)

    assert stub.count("GET", PATH) == 1
    assert failures(http) == 1
    assert seen[0].reason == BAD_ANSWER


def test_a_parsers_own_words_reach_the_caller(stub):
    stub.route("GET", PATH, body={"name": ""})
    http = make_http("malformed-words")

    def parse(response):
        if not response.json()["name"]:
            raise MalformedAnswer("The thing service sent a thing without a name.")
        return response.json()["name"]

    with pytest.raises(DependencyUnavailable) as raised:
        http.call("GET", stub.url + PATH, timeout=1.0, parse=parse, policy=QUICK)
    assert raised.value.message == "The thing service sent a thing without a name."


def test_an_open_breaker_refuses_without_a_call(stub):
    stub.route("GET", PATH, status=500, body={})
    http = make_http("open")
    seen: list[Failure] = []
    for _ in range(2):  # 3 failed attempts each: the 5th failure opens the breaker
        with pytest.raises(DependencyUnavailable):
            call(http, stub)
    reached = stub.count("GET", PATH)

    with pytest.raises(DependencyUnavailable) as raised:
        call(http, stub, on_failure=seen.append)

    assert reached == 5
    assert stub.count("GET", PATH) == 5
    assert seen[0].reason == BREAKER_OPEN
    assert "circuit breaker open" in raised.value.message


def test_each_client_builds_its_own_503(stub):
    class ThingUnavailable(DependencyUnavailable):
        pass

    stub.route("GET", PATH, status=500, body={})
    http = make_http(
        "own-error",
        error=lambda failure: ThingUnavailable(
            "thing service", f"{failure.reason} {failure.status}"
        ),
    )

    with pytest.raises(ThingUnavailable) as raised:
        call(http, stub)
    assert raised.value.message == "provider_error 500"
