"""Rate limits on the real Redis: per user, per client IP (behind a trusted proxy too), the
exemptions, Retry-After, and what happens when Redis is gone."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from petpro_booking.core.throttles import Rate, client_ip, parse_rate
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/clinics"


@pytest.fixture
def limits(settings):
    """Small limits for these tests (the test settings are generous for everyone else)."""

    def set_limits(*, user: str = "1000/min", ip: str = "1000/min") -> None:
        settings.THROTTLE_USER_RATE = user
        settings.THROTTLE_IP_RATE = ip

    return set_limits


def statuses(client: APIClient, count: int, **extra) -> list[int]:
    return [client.get(URL, **extra).status_code for _ in range(count)]


def test_each_user_gets_their_own_per_minute_limit(limits):
    limits(user="3/min")
    first = api_client_for(sub="owner-1", roles=["pet_owner"])
    second = api_client_for(sub="owner-2", roles=["pet_owner"])

    assert statuses(first, 3) == [200, 200, 200]
    refused = first.get(URL)
    assert second.get(URL).status_code == 200  # same IP, other user: not affected

    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    retry_after = int(refused["Retry-After"])
    # when the counter admits the next one: the rest of this minute plus the part of the
    # next one it takes this minute's weight to fade enough (under two minutes)
    assert 1 <= retry_after < 120
    assert body["details"] == {"retry_after_seconds": retry_after}


def test_every_caller_from_one_ip_shares_the_ip_limit(limits):
    limits(ip="4/min")
    owners = [api_client_for(sub=f"owner-{n}", roles=["pet_owner"]) for n in range(5)]

    from_one_ip = [o.get(URL, REMOTE_ADDR="192.0.2.10").status_code for o in owners]
    from_another = owners[0].get(URL, REMOTE_ADDR="192.0.2.11").status_code

    assert from_one_ip == [200, 200, 200, 200, 429]
    assert from_another == 200


class OpenView(APIView):
    """An endpoint anyone may call, like the payment webhook."""

    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


def test_anonymous_callers_count_per_ip(limits):
    limits(ip="2/min")
    view = OpenView.as_view()
    factory = APIRequestFactory()

    answers = [view(factory.get("/open", REMOTE_ADDR="198.51.100.1")) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1]["Retry-After"]


def test_service_tokens_are_exempt(limits):
    limits(user="2/min", ip="2/min")
    service = api_client_for(sub="notification-service", roles=["service"])

    assert statuses(service, 6) == [200] * 6


def test_allowlisted_networks_are_exempt(limits, settings):
    limits(user="2/min", ip="2/min")
    settings.THROTTLE_IP_ALLOWLIST = ["10.9.0.0/16", "2001:db8::/32"]
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])

    assert statuses(owner, 5, REMOTE_ADDR="10.9.4.2") == [200] * 5
    assert statuses(owner, 5, REMOTE_ADDR="2001:db8::7") == [200] * 5
    # outside the allowlist the same user is limited as usual
    assert statuses(owner, 3, REMOTE_ADDR="10.8.0.1") == [200, 200, 429]


def test_behind_a_proxy_the_client_is_the_right_most_untrusted_hop(limits, settings):
    limits(ip="2/min")
    settings.THROTTLE_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    settings.THROTTLE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    owners = [api_client_for(sub=f"owner-{n}", roles=["pet_owner"]) for n in range(4)]
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    # one client, whatever it writes at the left of the header, behind two of our proxies
    one_client = [
        owners[0].get(URL, HTTP_X_FORWARDED_FOR="203.0.113.7, 10.0.0.9", **proxy),
        owners[1].get(URL, HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7, 10.0.0.9", **proxy),
        owners[2].get(URL, HTTP_X_FORWARDED_FOR="8.8.8.8, 203.0.113.7", **proxy),
    ]
    other_client = owners[3].get(URL, HTTP_X_FORWARDED_FOR="198.51.100.9", **proxy)

    assert [r.status_code for r in one_client] == [200, 200, 429]
    assert other_client.status_code == 200


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "10.0.0.2", "203.0.113.7", "203.0.113.7"),  # the direct peer is the one proxy
        ([], "10.0.0.2", "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # left entries are ignored
        ([], "10.0.0.2", "", "10.0.0.2"),  # no header: the peer itself
        (["10.0.0.0/8"], "192.0.2.1", "203.0.113.7", "192.0.2.1"),  # peer is not our proxy
        (["10.0.0.0/8"], "10.0.0.2", "203.0.113.7:5123, 10.1.1.1", "203.0.113.7"),
        (["10.0.0.0/8"], "10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        (["10.0.0.0/8"], "10.0.0.2", "not-an-ip, 10.1.1.1", "10.0.0.2"),
    ],
)
def test_client_ip(settings, trusted, remote, forwarded, expected):
    settings.THROTTLE_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    settings.THROTTLE_TRUSTED_PROXIES = trusted
    request = APIRequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == expected


def test_without_a_proxy_header_setting_the_header_is_not_believed(settings):
    settings.THROTTLE_TRUSTED_PROXY_HEADER = ""
    request = APIRequestFactory().get("/", REMOTE_ADDR="192.0.2.5", HTTP_X_FORWARDED_FOR="1.2.3.4")

    assert client_ip(request) == "192.0.2.5"


def test_requests_go_through_when_redis_is_down(limits, settings, private_redis):
    limits(user="1/min", ip="1/min")
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": private_redis.url,
        }
    }
    private_redis.stop()
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])

    assert statuses(owner, 3) == [200, 200, 200]


def test_a_redis_that_lost_its_scripts_still_counts_with_expiring_keys(limits):
    """On one Redis node the limits are counted by one Lua script; a restarted Redis has lost
    it (SCRIPT FLUSH here): the next request loads it again and the limit still holds. Every
    counter key expires (volatile-lru may evict them)."""
    from django_redis import get_redis_connection

    limits(user="2/min")
    owner = api_client_for(sub="owner-flush", roles=["pet_owner"])
    assert statuses(owner, 1) == [200]
    client = get_redis_connection("default")
    client.script_flush()

    assert statuses(owner, 2) == [200, 429]
    keys = list(client.scan_iter(match="*throttle:{user:owner-flush}*"))
    assert keys
    assert all(0 < client.ttl(key) <= 121 for key in keys)


def test_rates_are_read_from_settings_strings():
    assert parse_rate("60/min") == Rate(limit=60, period=60)
    assert parse_rate("120/minute") == Rate(limit=120, period=60)
    assert parse_rate("5/s") == Rate(limit=5, period=1)
    assert parse_rate("1000/day") == Rate(limit=1000, period=86400)
    for bad in ("sixty/min", "60/fortnight", "0/min"):
        with pytest.raises(ImproperlyConfigured):
            parse_rate(bad)


def test_retrying_after_retry_after_succeeds(limits):
    limits(user="2/s")
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])
    statuses(owner, 2)
    refused = owner.get(URL)
    assert refused.status_code == 429

    time.sleep(int(refused["Retry-After"]))

    assert owner.get(URL).status_code == 200


def test_limits_hold_on_the_local_memory_cache_of_embedded_mode(limits, settings):
    limits(user="2/min", ip="3/min")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    first = api_client_for(sub="owner-1", roles=["pet_owner"])
    second = api_client_for(sub="owner-2", roles=["pet_owner"])

    assert statuses(first, 3) == [200, 200, 429]
    # owner-1's refused request was not counted, so the IP's third request is owner-2's
    assert statuses(second, 2) == [200, 429]


def test_callers_without_a_valid_token_count_against_the_ip_limit(limits, anon_client):
    limits(ip="3/min")
    assert statuses(anon_client, 3) == [401, 401, 401]
    forged = anon_client.get(URL, HTTP_AUTHORIZATION="Bearer not-a-token")
    assert forged.status_code == 429
    assert forged.json()["error"]["code"] == "rate_limited"
    assert int(forged["Retry-After"]) >= 1


def test_callers_refused_for_their_role_count_against_the_limits(limits):
    """DRF checks permissions before it throttles: a staff token hammering an owner's
    endpoint got 403 forever and was never counted."""
    limits(user="3/min")
    staff = api_client_for(sub="staff-5", roles=["clinic_staff"], clinic_ids=["c-1"])
    answers = [staff.post("/api/v1/reservations", {}, format="json") for _ in range(4)]
    assert [a.status_code for a in answers] == [403, 403, 403, 429]
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert int(answers[-1]["Retry-After"]) >= 1


def test_refused_and_answered_requests_share_one_count(limits, owner_client):
    """The handler's count and the throttle's are one counter, each request counted once."""
    limits(user="4/min")
    assert [owner_client.get("/api/v1/bookings").status_code for _ in range(2)] == [200, 200]
    refused = [owner_client.post("/api/v1/slots", {}, format="json") for _ in range(2)]
    assert [r.status_code for r in refused] == [403, 403]
    assert owner_client.get("/api/v1/bookings").status_code == 429


def test_unknown_api_paths_count_against_the_ip_limit(limits, anon_client):
    """No view answers them, so no DRF throttle ran: a scanner walking paths was never
    counted. The JSON 404 now counts against the IP limit like every request."""
    limits(ip="3/min")
    paths = ["/api/v1/nothing", "/api/v1/admin.php", "/api/v2/slots"]
    assert [anon_client.get(path).status_code for path in paths] == [404, 404, 404]
    refused = anon_client.get("/api/v1/wp-login")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    wait = int(refused["Retry-After"])
    assert wait >= 1
    assert refused.json()["error"]["details"] == {"retry_after_seconds": wait}
