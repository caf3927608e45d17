"""The User Service client against a real HTTP stub: answers, cache, timeouts, retries, the
breaker, and what a hold sees when the User Service is down."""

from __future__ import annotations

import time

import jwt
import pytest
from django.core.cache import cache
from prometheus_client import REGISTRY

from integrations.users import client, gateway
from petpro_booking.core import cache as cache_generations
from petpro_booking.core.errors import DependencyUnavailable
from petpro_booking.core.local_cache import MISSING, local_cache
from reservations.models import Reservation
from tests.redis_commands import redis_round_trips

PETS = "/api/v1/users/owner-1/pets"
USER = "/api/v1/users/owner-1"
PETS_BODY = [
    {"id": "pet-1", "name": "Rex", "species": "Dog"},
    {"id": "pet-2", "name": "Tom", "species": "cat"},
]
USER_BODY = {
    "id": "owner-1",
    "name": "Olga Owner",
    "email": "olga@example.com",
    "phone": "+49 30 1234",
    "preferences": {"channels": ["email", "sms"], "locale": "de"},
}


def test_pets_and_profile_come_from_the_user_service(user_service, settings):
    user_service.route("GET", PETS, body=PETS_BODY)
    user_service.route("GET", USER, body=USER_BODY)

    pets = gateway.pets_of(user_id="owner-1")
    profile = gateway.user_get(user_id="owner-1")

    assert [(p.id, p.owner_id, p.name, p.species) for p in pets] == [
        ("pet-1", "owner-1", "Rex", "dog"),
        ("pet-2", "owner-1", "Tom", "cat"),
    ]
    assert profile.name == "Olga Owner"
    assert profile.channels == ("email", "sms")
    assert profile.locale == "de"
    assert profile.extra == {"email": "olga@example.com", "phone": "+49 30 1234"}


def test_requests_carry_a_short_lived_service_token(user_service, settings):
    user_service.route("GET", PETS, body=PETS_BODY)

    gateway.pets_of(user_id="owner-1")

    header = user_service.requests[0].headers["authorization"]
    scheme, _, token = header.partition(" ")
    claims = jwt.decode(
        token, settings.SERVICE_JWT_SIGNING_KEY, algorithms=["HS256"], audience="user-service"
    )
    assert scheme == "Bearer"
    assert claims["iss"] == claims["sub"] == "booking-service"
    assert claims["roles"] == ["service"]
    assert 0 < claims["exp"] - time.time() <= 300


def test_second_call_is_served_from_the_cache_until_invalidated(user_service):
    user_service.route("GET", PETS, body=PETS_BODY)
    user_service.route("GET", USER, body=USER_BODY)

    for _ in range(3):
        assert len(gateway.pets_of(user_id="owner-1")) == 2
        assert gateway.user_get(user_id="owner-1").name == "Olga Owner"
    assert user_service.count("GET", PETS) == 1
    assert user_service.count("GET", USER) == 1

    gateway.invalidate_user(user_id="owner-1")
    gateway.pets_of(user_id="owner-1")
    assert user_service.count("GET", PETS) == 2


def test_unknown_user_is_none_and_not_retried(user_service):
    assert gateway.user_get(user_id="nobody") is None
    assert gateway.pets_of(user_id="nobody") == []
    assert user_service.count("GET", "/api/v1/users/nobody") == 1
    assert client.reader.breaker.snapshot()["failures_in_window"] == 0


def test_a_hanging_user_service_costs_three_timeouts_within_the_budget(user_service, settings):
    user_service.route("GET", PETS, body=PETS_BODY, delay=1.3)

    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        gateway.pets_of(user_id="owner-1")
    elapsed = time.monotonic() - started

    assert raised.value.details == {"dependency": "user service"}
    assert user_service.count("GET", PETS) == 3  # the first try and two retries
    assert 3.0 <= elapsed <= settings.SERVICE_CALL_DEADLINE_SECONDS + 0.3


def test_5xx_is_retried_and_the_call_recovers(user_service):
    user_service.route("GET", PETS, body=PETS_BODY, fail_times=2, fail_status=502)

    pets = gateway.pets_of(user_id="owner-1")

    assert [p.id for p in pets] == ["pet-1", "pet-2"]
    assert user_service.count("GET", PETS) == 3
    # the failed attempts counted toward the breaker, which stays closed below its threshold
    assert client.reader.breaker.snapshot() == {
        "state": "closed",
        "failures_in_window": 2,
        "shared": True,
    }


@pytest.mark.django_db
def test_breaker_opens_on_failed_attempts_and_then_fails_fast(user_service, client):
    user_service.route("GET", PETS, status=503)

    for _ in range(2):  # 3 failed attempts each; the 5th failure opens the breaker
        with pytest.raises(DependencyUnavailable):
            gateway.pets_of(user_id="owner-1")
    reached = user_service.count("GET", PETS)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        gateway.pets_of(user_id="owner-1")

    assert reached == 5  # the 6th attempt was refused by the now-open breaker
    assert user_service.count("GET", PETS) == 5
    assert time.monotonic() - started < 0.1
    assert "circuit breaker open" in raised.value.message
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["user_service"]["state"] == "open"
    assert ready.json()["checks"]["user_service"]["status"] == "degraded"


def test_cached_pets_keep_a_hold_possible_while_the_user_service_is_down(user_service, settings):
    user_service.route("GET", PETS, body=PETS_BODY)
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex"
    settings.USER_CACHE_SECONDS = 0  # every cached answer is now stale
    user_service.stop()

    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex"
    # a pet the stale list does not have cannot be vouched for: 503, not "not your pet"
    with pytest.raises(DependencyUnavailable):
        gateway.pet_get(user_id="owner-1", pet_id="pet-new")


def test_a_pet_added_since_the_cached_list_is_found(user_service):
    user_service.route("GET", PETS, body=PETS_BODY)
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-3") is None
    user_service.route(
        "GET", PETS, body=[*PETS_BODY, {"id": "pet-3", "name": "Bo", "species": "dog"}]
    )

    assert gateway.pet_get(user_id="owner-1", pet_id="pet-3").name == "Bo"
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-9") is None


def test_malformed_answer_is_a_failure_not_a_crash(user_service):
    user_service.route("GET", PETS, body={"unexpected": True})

    with pytest.raises(DependencyUnavailable):
        gateway.pets_of(user_id="owner-1")
    assert user_service.count("GET", PETS) == 1
    assert client.reader.breaker.snapshot()["failures_in_window"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_pet_name_no_column_can_hold_is_cleaned_and_the_hold_is_made(
    user_service, slot, owner_client
):
    """A name typed with a NUL or a lone surrogate (text the User Service holds) went into the
    hold's event and failed its INSERT (a 500): our copy drops the NUL and marks the rest."""
    user_service.route(
        "GET", PETS, body=[{"id": "pet-1", "name": "Re\x00x \ud800", "species": "dog"}]
    )

    held = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )

    assert held.status_code == 201, held.content[:300]
    assert Reservation.objects.get().pet_name == "Rex \ufffd"


def test_an_answer_nested_past_the_interpreter_limit_is_a_failure_not_a_crash(user_service):
    """`response.json()` raised RecursionError, which no parser caught (a 500)."""
    user_service.route("GET", PETS, body=b"[" * 5000 + b"]" * 5000)

    with pytest.raises(DependencyUnavailable):
        gateway.pets_of(user_id="owner-1")


def test_a_rejected_service_token_is_reported_without_tripping_the_breaker(user_service):
    user_service.route("GET", PETS, status=401, body={"detail": "bad token"})

    with pytest.raises(DependencyUnavailable):
        gateway.pets_of(user_id="owner-1")
    assert client.reader.breaker.snapshot()["failures_in_window"] == 0


@pytest.mark.django_db
def test_hold_with_an_uncached_pet_check_is_503_while_the_user_service_is_down(
    user_service, slot, owner_client
):
    user_service.route("GET", PETS, status=500)
    opened_before = REGISTRY.get_sample_value(
        "petpro_breaker_state_changes_total",
        {"dependency": "user-service", "from_state": "closed", "to_state": "open"},
    )

    answers = []
    for _ in range(3):
        started = time.monotonic()
        response = owner_client.post(
            "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
        )
        answers.append((response, time.monotonic() - started))

    for response, elapsed in answers:
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "dependency_unavailable"
        assert response.json()["error"]["details"] == {"dependency": "user service"}
        assert elapsed < 3.6
    assert answers[-1][1] < 0.2  # the breaker is open by then: no call, no wait
    slot.refresh_from_db()
    assert slot.held_count == 0
    opened_after = REGISTRY.get_sample_value(
        "petpro_breaker_state_changes_total",
        {"dependency": "user-service", "from_state": "closed", "to_state": "open"},
    )
    assert opened_after == (opened_before or 0) + 1


@pytest.mark.django_db(transaction=True)
def test_hold_checks_the_pet_with_the_user_service(user_service, slot, owner_client):
    user_service.route("GET", PETS, body=PETS_BODY)

    held = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    not_mine = owner_client.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-77"}, format="json"
    )

    assert held.status_code == 201
    assert not_mine.status_code == 400
    assert not_mine.json()["error"]["code"] == "invalid_pet"


def test_a_warm_pet_check_costs_no_redis_round_trip_and_invalidation_reaches_it(
    user_service, settings
):
    settings.LOCAL_CACHE_GENERATION_SECONDS = 0.1
    user_service.route("GET", PETS, body=PETS_BODY)
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex"  # warm
    with redis_round_trips() as sent:
        for _ in range(3):
            assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex"
    assert sent == []  # this process's copy (every hold checks its pet)

    # We learn the pet was renamed: this process sees it at once...
    user_service.route("GET", PETS, body=[{"id": "pet-1", "name": "Rex II", "species": "dog"}])
    gateway.invalidate_user(user_id="owner-1")
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex II"
    assert user_service.count("GET", PETS) == 2

    # ...and another process's bump (the Redis generation only) within the generation's TTL.
    user_service.route("GET", PETS, body=[{"id": "pet-1", "name": "Rex III", "species": "dog"}])
    cache.delete(client._pets_key("owner-1"))
    cache.incr(cache_generations._generation_key(client.USERS_FAMILY))
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex II"  # not yet seen
    time.sleep(0.15)
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex III"


def test_a_stale_answer_is_not_kept_in_the_process(user_service, settings):
    settings.USER_CACHE_SECONDS = 1  # the local copy never outlives the Redis one
    user_service.route("GET", PETS, body=PETS_BODY)
    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex"
    user_service.stop()
    time.sleep(1.1)  # both copies old: the next answer is the stale Redis one

    assert gateway.pet_get(user_id="owner-1", pet_id="pet-1").name == "Rex"  # served, stale
    key = ("user-pets", "owner-1", cache_generations.generation(client.USERS_FAMILY))
    assert local_cache().get(key) is MISSING
