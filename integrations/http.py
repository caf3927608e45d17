"""One resilient HTTP stack for the clients of other services (Payment, User, Clinic Service).

`ServiceHTTP` is one dependency: its httpx client (one per process: pooled connections,
headers, TLS, no redirects), a call with its retries (the dependency's policy from
`core/retrying.py`, a server's Retry-After honoured when longer than the pause, each attempt's
timeout cut to what is left of the deadline), every attempt inside the dependency's circuit
breaker (`core/breaker.py`: failures within a time window, state shared through Redis; retries
sit outside it, so every failed attempt counts), and every failure mapped to the service's 503
(`dependency_unavailable`). Each client keeps only its endpoints and the parsing of answers.

What each outcome of an attempt is (in brackets the `Failure.reason` a client sees):
* timeout: a breaker failure, retried (`timeout`);
* 5xx: a breaker failure, retried (`provider_error`);
* 429: with `retry_rate_limited` like a 5xx, otherwise returned to the client;
* refused or reset connection: a breaker failure, retried with `retry_unreachable`
  (`unreachable`);
* a 2xx the client's parser refuses: a breaker failure, not retried (`bad_answer`);
* any other 4xx (404 too): returned to the client, no breaker failure;
* the breaker is open: no call, not retried (`breaker_open`).

A refused connection is worth retrying only where a repeat is harmless and cheap to wait for
(the payment calls carry an Idempotency-Key); the User and Clinic reads fail over to cached
answers instead.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from django.conf import settings
from tenacity import RetryCallState, retry_if_exception_type

from petpro_booking.core.breaker import BreakerOpen, WindowedCircuitBreaker
from petpro_booking.core.errors import DependencyUnavailable
from petpro_booking.core.retrying import RetryPolicy, retry_policy

logger = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = "petpro-booking-service"
MIN_ATTEMPT_TIMEOUT_SECONDS = 0.05

TIMEOUT = "timeout"
PROVIDER_ERROR = "provider_error"
UNREACHABLE = "unreachable"
BAD_ANSWER = "bad_answer"
BREAKER_OPEN = "breaker_open"

MESSAGES = {
    TIMEOUT: "The {dependency} did not answer in time; try again shortly.",
    PROVIDER_ERROR: "The {dependency} is unavailable; try again shortly.",
    UNREACHABLE: "The {dependency} cannot be reached; try again shortly.",
    BAD_ANSWER: "The {dependency} gave an answer we cannot use.",
    BREAKER_OPEN: "The {dependency} is unavailable (circuit breaker {state}); try again shortly.",
}


class RetryableStatus(Exception):
    """A 5xx (or a 429 where retried): the dependency is unwell; worth another attempt."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"answered {response.status_code}")
        self.response = response


class MalformedAnswer(Exception):
    """A parser's refusal of a 2xx answer (its message says what was wrong)."""


# What a parser may raise on an answer that is not the wire format (RecursionError: JSON
# nested past the interpreter's limit).
PARSE_ERRORS = (
    MalformedAnswer,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)


@dataclass(frozen=True)
class Failure:
    """Why a call failed for good: `reason` (one of MESSAGES' keys), a message for the caller,
    the dependency's last HTTP status if it answered."""

    reason: str
    message: str
    status: int | None = None


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A final answer: `body` is the parsed 2xx, None for a 4xx (status says which)."""

    status: int
    body: T | None


def _retry_after_seconds(retry_state: RetryCallState) -> float:
    """A retried answer's Retry-After in seconds (0 when absent or not a number of seconds)."""
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    if not isinstance(exc, RetryableStatus):
        return 0.0
    try:
        return max(0.0, float(exc.response.headers.get("Retry-After", "")))
    except ValueError:
        return 0.0


def _tls_verify() -> ssl.SSLContext | bool:
    """Certificates are checked against SERVICE_CA_FILE when set (a private CA), else the
    default trust store."""
    ca_file = settings.SERVICE_CA_FILE
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


class ServiceHTTP:
    """The resilient HTTP of one dependency. `error` builds the 503 the callers see from a
    `Failure` (default: `DependencyUnavailable(dependency, message)`)."""

    def __init__(
        self,
        *,
        dependency: str,
        breaker: WindowedCircuitBreaker,
        retry_policy_name: str,
        headers: Mapping[str, str] | None = None,
        base_url: str = "",
        retry_rate_limited: bool = False,
        retry_unreachable: bool = False,
        error: Callable[[Failure], DependencyUnavailable] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.dependency = dependency  # as named in 503 details and logs: "user service"
        self.breaker = breaker
        self.retry_policy_name = retry_policy_name
        self.headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        self.base_url = base_url.rstrip("/")
        self.retry_rate_limited = retry_rate_limited
        retried: tuple[type[BaseException], ...] = (httpx.TimeoutException, RetryableStatus)
        if retry_unreachable:
            retried += (httpx.NetworkError, httpx.RemoteProtocolError)
        self.retried = retried
        self.error = error or (lambda failure: DependencyUnavailable(dependency, failure.message))
        self.transport = transport
        self._http: httpx.Client | None = None
        self._http_pid = 0
        self._http_lock = threading.Lock()

    def client(self) -> httpx.Client:
        """This process's client (rebuilt after a fork: pooled connections do not survive it)."""
        with self._http_lock:
            if self._http is None or self._http_pid != os.getpid():
                self._http = httpx.Client(
                    base_url=self.base_url,
                    headers=self.headers,
                    limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
                    follow_redirects=False,
                    verify=_tls_verify(),
                    transport=self.transport,
                )
                self._http_pid = os.getpid()
            return self._http

    def close(self) -> None:
        with self._http_lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def failure(self, reason: str, *, message: str | None = None, **extra: Any) -> Failure:
        text = message or MESSAGES[reason].format(dependency=self.dependency, **extra)
        return Failure(reason=reason, message=text, status=extra.get("status"))

    def call(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        parse: Callable[[httpx.Response], T],
        policy: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        on_retry: Callable[[RetryCallState], None] | None = None,
        on_failure: Callable[[Failure], None] | None = None,
    ) -> Reply[T]:
        """`method url` with retries inside the deadline, each attempt inside the breaker,
        `timeout` per attempt. A 2xx is parsed inside the attempt (a refusal counts against
        the breaker); any other 4xx is returned unparsed. Raises `self.error(failure)` when
        the call fails for good, after `on_failure(failure)` (metrics, logs)."""
        policy = policy or retry_policy(self.retry_policy_name)
        started = time.monotonic()
        deadline_at = started + policy.deadline if policy.deadline is not None else None

        def attempt() -> Reply[T]:
            remaining = deadline_at - time.monotonic() if deadline_at is not None else timeout
            attempt_timeout = max(MIN_ATTEMPT_TIMEOUT_SECONDS, min(timeout, remaining))
            return self.breaker.call(
                self._attempt, method, url, attempt_timeout, parse, headers, json
            )

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            logger.warning(
                "%s: %s %s attempt %d failed (%s); retrying in %.2f s",
                self.dependency,
                method,
                url,
                state.attempt_number,
                outcome.exception() if outcome is not None else "?",
                state.upcoming_sleep,
            )
            if on_retry is not None:
                on_retry(state)

        retrying = policy.retrying(
            retry=retry_if_exception_type(self.retried),
            before_sleep=before_sleep,
            at_least=_retry_after_seconds,
            deadline_at=deadline_at,
        )
        try:
            return retrying(attempt)
        except BreakerOpen as exc:
            failure = self.failure(BREAKER_OPEN, state=exc.state)
            cause: BaseException = exc
        except httpx.TimeoutException as exc:
            failure, cause = self.failure(TIMEOUT), exc
        except RetryableStatus as exc:
            status = exc.response.status_code
            failure, cause = self.failure(PROVIDER_ERROR, status=status), exc
        except httpx.HTTPError as exc:
            failure, cause = self.failure(UNREACHABLE), exc
        except MalformedAnswer as exc:
            failure, cause = self.failure(BAD_ANSWER, message=str(exc) or None), exc
        if failure.reason != BREAKER_OPEN:
            logger.warning(
                "%s: %s %s failed after %.2f s: %s: %s",
                self.dependency,
                method,
                url,
                time.monotonic() - started,
                type(cause).__name__,
                cause,
            )
        if on_failure is not None:
            on_failure(failure)
        raise self.error(failure) from cause

    def _attempt(
        self,
        method: str,
        url: str,
        timeout: float,
        parse: Callable[[httpx.Response], T],
        headers: Mapping[str, str] | None,
        json: Any,
    ) -> Reply[T]:
        response = self.client().request(method, url, headers=headers, json=json, timeout=timeout)
        status = response.status_code
        if status >= 500 or (status == 429 and self.retry_rate_limited):
            raise RetryableStatus(response)
        if not 200 <= status < 300:
            return Reply(status, None)
        try:
            return Reply(status, parse(response))
        except PARSE_ERRORS as exc:
            raise MalformedAnswer(
                exc.args[0] if isinstance(exc, MalformedAnswer) and exc.args else ""
            ) from exc
