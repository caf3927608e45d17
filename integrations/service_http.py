"""Cached reads from the User and Clinic Services (their wire formats are in each client), on
the shared resilient HTTP stack (`integrations/http.py`): our service JWT,
SERVICE_CALL_TIMEOUT_SECONDS per attempt, the `user_service` / `clinic_service` retry policy
on timeouts and 5xx within SERVICE_CALL_DEADLINE_SECONDS, the circuit breaker, the 503.

Answers are cached in the shared cache: fresh for the caller's TTL, then refetched; while
the service fails, an answer up to SERVICE_CACHE_STALE_SECONDS old is served instead (reads
keep working), and only a question never answered before becomes DependencyUnavailable (503).

Beyond the stack's table: a refused connection is not retried (nothing to wait for: the
stale answer serves); 404 is an answer ("no such thing"), not cached; any other 4xx (our
token refused, ...) is no breaker failure (the service is up; our configuration is wrong):
logged as an error and reported as DependencyUnavailable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from petpro_booking.core import metrics
from petpro_booking.core.breaker import WindowedCircuitBreaker
from petpro_booking.core.errors import DependencyUnavailable
from petpro_booking.core.parsers import cleaned_answer
from petpro_booking.core.service_tokens import service_token

from .http import BREAKER_OPEN, Failure, ServiceHTTP

logger = logging.getLogger(__name__)

SOURCE_SERVICE = "service"  # answered by the service just now
SOURCE_CACHE = "cache"  # a fresh cached answer
SOURCE_STALE = "stale"  # an old cached answer, served because the service failed


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
        # USER_SERVICE_URL -> the "user_service" retry policy (settings.RETRY_POLICIES)
        self.http = ServiceHTTP(
            dependency=dependency,
            breaker=breaker,
            retry_policy_name=url_setting.removesuffix("_URL").lower(),
        )

    @property
    def breaker(self) -> WindowedCircuitBreaker:
        return self.http.breaker

    @property
    def audience(self) -> str:
        """The callee's name in our tokens' `aud`: USER_SERVICE_URL -> "user-service"."""
        return self.url_setting.removesuffix("_URL").lower().replace("_", "-")

    @property
    def configured(self) -> bool:
        return bool(getattr(settings, self.url_setting))

    def _failed(self, failure: Failure) -> None:
        outcome = "refused" if failure.reason == BREAKER_OPEN else "failed"
        metrics.SERVICE_CALLS.labels(dependency=self.dependency, outcome=outcome).inc()

    def _get(self, path: str, parse: Callable[[Any], Any]) -> tuple[int, Any]:
        reply = self.http.call(
            "GET",
            getattr(settings, self.url_setting).rstrip("/") + path,
            timeout=settings.SERVICE_CALL_TIMEOUT_SECONDS,
            # Names people typed reach our rows and events: text a column can hold.
            parse=lambda response: parse(cleaned_answer(response.json())),
            headers={"Authorization": f"Bearer {service_token(audience=self.audience)}"},
            on_failure=self._failed,
        )
        status, body = reply.status, reply.body
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
        Raises DependencyUnavailable when there is nothing to answer with.

        A path with a dot segment (an id of "." or ".." that a caller typed, kept as it is by
        `quote`) names nothing there: HTTP clients resolve it away (`/clinics/../services` is
        `/services`), so it is answered "no such thing" without asking."""
        if any(part in (".", "..") for part in path.split("?", 1)[0].split("/")):
            return Answer(None, SOURCE_SERVICE)
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
