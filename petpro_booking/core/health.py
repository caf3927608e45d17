"""Liveness and readiness probes: ready means the database answers; the rest is reported."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from .tls import amqp_ssl_options

logger = logging.getLogger(__name__)

# Extra degraded-but-ready checks other modules add (e.g. circuit breakers): name -> report.
_EXTRA_CHECKS: dict[str, Callable[[], dict[str, Any]]] = {}


def register_check(name: str, check: Callable[[], dict[str, Any]]) -> None:
    _EXTRA_CHECKS[name] = check


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"status": "ok"}
    except Exception as exc:  # any driver error means "not reachable"
        logger.warning("readyz: database unreachable: %s", type(exc).__name__)
        return {"status": "unavailable", "error": type(exc).__name__}


def check_redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"status": "not_configured"}
    from django_redis import get_redis_connection

    try:
        get_redis_connection("default").ping()
        return {"status": "ok"}
    except Exception as exc:
        return {"status": "degraded", "error": type(exc).__name__}


def check_event_broker() -> dict[str, Any]:
    if not settings.EVENT_BROKER_URL:
        return {"status": "not_configured"}
    from kombu import Connection

    try:
        with Connection(
            settings.EVENT_BROKER_URL,
            connect_timeout=1,
            ssl=amqp_ssl_options(settings.EVENT_BROKER_URL, ca_file=settings.BROKER_CA_FILE),
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        return {"status": "ok"}
    except Exception as exc:
        return {"status": "degraded", "error": type(exc).__name__}


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def run_checks() -> dict[str, dict[str, Any]]:
    """Every check's report; readyz and the /metrics health gauges both use it."""
    checks: dict[str, Any] = {
        "database": check_database(),
        "redis": check_redis(),
        "event_broker": check_event_broker(),
    }
    for name, check in _EXTRA_CHECKS.items():
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = {"status": "degraded", "error": type(exc).__name__}
    return checks


def readyz(request: HttpRequest) -> JsonResponse:
    checks = run_checks()
    ready = checks["database"]["status"] == "ok"
    degraded = any(c.get("status") == "degraded" for c in checks.values())
    overall = "unavailable" if not ready else ("degraded" if degraded else "ok")
    return JsonResponse({"status": overall, "checks": checks}, status=200 if ready else 503)
