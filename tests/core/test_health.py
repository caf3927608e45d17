"""Probes: liveness, readiness that fails only on the database, degraded dependencies."""

from __future__ import annotations

import pytest
from django.db import connections

from petpro_booking.core import health

pytestmark = pytest.mark.django_db


def test_healthz(anon_client):
    assert anon_client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_every_dependency(anon_client):
    response = anon_client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "ok"
    assert checks["event_broker"]["status"] == "ok"


def test_readyz_stays_ready_when_redis_and_broker_are_down(anon_client, settings):
    settings.EVENT_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    response = anon_client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["event_broker"]["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "degraded"


def test_readyz_is_503_when_the_database_is_unreachable(anon_client, monkeypatch):
    params = dict(connections["default"].settings_dict)
    params["PORT"] = 1
    params["OPTIONS"] = {k: v for k, v in params["OPTIONS"].items() if k != "pool"}
    params["OPTIONS"]["connect_timeout"] = 1
    unreachable = connections["default"].__class__(params, alias="unreachable")
    monkeypatch.setattr(health, "connection", unreachable)
    response = anon_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "unavailable"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_probe_or_the_scrape_refuses_other_methods_with_the_envelope(path, method):
    # Django's CSRF check met a POST first and answered its HTML 403 page (a sweep found it).
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    response = getattr(browser, method)(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert browser.head(path).status_code in (200, 503)
