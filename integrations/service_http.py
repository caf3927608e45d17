"""Resilient reads from the User and Clinic Services (DESIGN §7), shared by both clients.

Per dependency: one httpx client per process, our service JWT, a 1000 ms timeout per attempt,
at most SERVICE_CALL_RETRIES retries on timeouts and 5xx with exponential backoff and jitter,
all inside a total deadline (SERVICE_CALL_DEADLINE_SECONDS, 3.5 s: 3 attempts x 1.0 s plus
~0.1 + 0.2 s backoff and up to 0.1 s jitter each). Retries sit outside the circuit breaker,
so every failed attempt counts toward its threshold; an open breaker fails at once.

Answers are cached in the shared cache: fresh for the caller's TTL, then refetched; while
the service fails, an answer up to SERVICE_CACHE_STALE_SECONDS old is served instead (reads
keep working), and only a question never answered before becomes DependencyUnavailable (503).

What counts as a failure (breaker) and what is retried:
* timeout — failure, retried;  5xx — failure, retried;
* refused/reset connection, malformed answer — failure, not retried (nothing to wait for);
* 404 — an answer ("no such thing"), not cached;
* other 4xx (our token refused, …) — not a breaker failure (the service is up; our
  configuration is wrong): logged as an error and reported as DependencyUnavailable.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from tenacity import retry_if_exception_type

from petpro_booking.core import metrics
from petpro_booking.core.breaker import BreakerOpen, WindowedCircuitBreaker
from petpro_booking.core.errors import DependencyUnavailable
from petpro_booking.core.retrying import retry_policy
from petpro_booking.core.service_tokens import service_token

logger = logging.getLogger(__name__)

MIN_ATTEMPT_TIMEOUT_SECONDS = 0.05

SOURCE_SERVICE = "service"  # answered by the service just now
SOURCE_CACHE = "cache"  # a fresh cached answer
SOURCE_STALE = "stale"  # an old cached answer, served because the service failed


class AttemptFailed(Exception):
    """One attempt failed in a way that says the dependency is unwell (breaker counts it)."""


class ServerError(AttemptFailed):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"answered {status_code}")
        self.status_code = status_code


class MalformedAnswer(AttemptFailed):
    pass


RETRYABLE = (httpx.TimeoutException, ServerError)


@dataclass(frozen=True)
class Answer:
    """`body` is the parsed answer, or None when the service said 404."""

    body: Any
    source: str


class ServiceReader:
    """GET-only client of one dependency; `url_setting` names the base-URL setting."""

    def __init__(self, *, dependency: str, url_setting: str, breaker: WindowedCircuitBreaker):
        self.dependency = dependency  # as named in 503 details: "user service"
        self.url_setting = url_setting
        # "USER_SERVICE_URL" -> the "user_service" retry policy (settings.RETRY_POLICIES)
        self.retry_policy_name = url_setting.removesuffix("_URL").lower()
        self.breaker = breaker
        self._http: httpx.Client | None = None
        self._http_pid = 0
        self._http_lock = threading.Lock()

    @property
    def audience(self) -> str:
        """The callee's name in our tokens' `aud`: USER_SERVICE_URL -> "user-service"."""
        return self.url_setting.removesuffix("_URL").lower().replace("_", "-")

    @property
    def configured(self) -> bool:
        return bool(getattr(settings, self.url_setting))

    def _client(self) -> httpx.Client:
        """The shared client of this process (rebuilt after a fork: pools do not survive it)."""
        with self._http_lock:
            if self._http is None or self._http_pid != os.getpid():
                self._http = httpx.Client(
                    headers={"Accept": "application/json", "User-Agent": "petpro-booking"},
                    limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
                    follow_redirects=False,
                )
                self._http_pid = os.getpid()
            return self._http

    # --- one attempt, inside the breaker --------------------------------------------------
    def _attempt(self, url: str, timeout: float, parse: Callable[[Any], Any]) -> tuple[int, Any]:
        response = self._client().get(
            url,
            headers={"Authorization": f"Bearer {service_token(audience=self.audience)}"},
            timeout=timeout,
        )
        if response.status_code >= 500:
            raise ServerError(response.status_code)
        if response.status_code != 200:
            return response.status_code, None
        try:
            return 200, parse(response.json())
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            raise MalformedAnswer(f"unexpected answer from {url}: {exc!r}") from exc

    def _get(self, path: str, parse: Callable[[Any], Any]) -> tuple[int, Any]:
        url = getattr(settings, self.url_setting).rstrip("/") + path
        deadline = settings.SERVICE_CALL_DEADLINE_SECONDS
        started = time.monotonic()

        def attempt() -> tuple[int, Any]:
            remaining = deadline - (time.monotonic() - started)
            timeout = max(
                MIN_ATTEMPT_TIMEOUT_SECONDS, min(settings.SERVICE_CALL_TIMEOUT_SECONDS, remaining)
            )
            return self.breaker.call(self._attempt, url, timeout, parse)

        retrying = retry_policy(self.retry_policy_name).retrying(
            retry=retry_if_exception_type(RETRYABLE)
        )
        try:
            status, body = retrying(attempt)
        except BreakerOpen as exc:
            metrics.SERVICE_CALLS.labels(dependency=self.dependency, outcome="refused").inc()
            raise DependencyUnavailable(
                self.dependency,
                f"The {self.dependency} is unavailable (circuit breaker {exc.state}); "
                "try again shortly.",
            ) from exc
        except (httpx.HTTPError, AttemptFailed) as exc:
            metrics.SERVICE_CALLS.labels(dependency=self.dependency, outcome="failed").inc()
            logger.warning(
                "%s: GET %s failed after %.2f s: %s: %s",
                self.dependency,
                path,
                time.monotonic() - started,
                type(exc).__name__,
                exc,
            )
            raise DependencyUnavailable(self.dependency) from exc
        if status not in (200, 404):
            metrics.SERVICE_CALLS.labels(dependency=self.dependency, outcome="rejected").inc()
            logger.error(
                "%s: GET %s answered %s; check %s and SERVICE_JWT_SIGNING_KEY",
                self.dependency,
                path,
                status,
                self.url_setting,
            )
            raise DependencyUnavailable(self.dependency)
        metrics.SERVICE_CALLS.labels(
            dependency=self.dependency, outcome="ok" if status == 200 else "not_found"
        ).inc()
        return status, body

    # --- cached read ----------------------------------------------------------------------
    def fetch(
        self,
        path: str,
        *,
        cache_key: str,
        fresh_seconds: int,
        parse: Callable[[Any], Any],
        refresh: bool = False,
        allow_stale: bool = True,
    ) -> Answer:
        """The answer to GET `path`: from the cache while fresh (unless `refresh`), else from
        the service; if the service fails, a stale cached answer when `allow_stale`.
        `parse` turns the JSON into plain cacheable data and raises on a malformed answer.
        Raises DependencyUnavailable when there is nothing to answer with."""
        entry = cache.get(cache_key)
        now = time.time()
        if entry is not None and not refresh and now - entry["at"] < fresh_seconds:
            metrics.SERVICE_CALLS.labels(dependency=self.dependency, outcome="cached").inc()
            return Answer(entry["body"], SOURCE_CACHE)
        try:
            status, body = self._get(path, parse)
        except DependencyUnavailable:
            if entry is not None and allow_stale:
                metrics.SERVICE_CALLS.labels(dependency=self.dependency, outcome="stale").inc()
                logger.warning(
                    "%s unavailable: serving %s from a %.0f s old cached answer",
                    self.dependency,
                    path,
                    now - entry["at"],
                )
                return Answer(entry["body"], SOURCE_STALE)
            raise
        if status == 404:
            cache.delete(cache_key)
            return Answer(None, SOURCE_SERVICE)
        cache.set(
            cache_key,
            {"at": now, "body": body},
            timeout=max(fresh_seconds, settings.SERVICE_CACHE_STALE_SECONDS),
        )
        return Answer(body, SOURCE_SERVICE)

    def health(self) -> dict[str, Any]:
        """The /readyz entry: breaker state when configured (never fails readiness)."""
        if not self.configured:
            return {"status": "not_configured"}
        return self.breaker.health()
