"""The in-process cache level in front of Redis (read-model and search generations), seen
from two processes, and the search cache warming (beat job and deploy command)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from petpro_booking.core import cache as cache_keys
from petpro_booking.core.local_cache import MISSING, LocalLRU
from reservations.services import reservation_create
from slots.clinic_sync import clinic_upsert
from slots.invalidation import slot_search_family
from slots.models import Slot
from slots.search_warming import search_cache_warm, week_view_query
from slots.selectors import clinic_get, clinic_service_list

from ..bookings.conftest import OWNER
from ..conftest import api_client_for

ROOT = Path(__file__).resolve().parents[2]

READER = textwrap.dedent(
    """
    import sys
    import django
    django.setup()
    from petpro_booking.core.cache import generation
    from slots.selectors import clinic_get
    from slots.invalidation import slot_search_family
    for line in sys.stdin:
        clinic_id = sys.argv[1]
        if line.strip() == "name":
            print(clinic_get(clinic_id=clinic_id).name, flush=True)
        else:
            print(generation(slot_search_family(clinic_id)), flush=True)
    """
)


def local_hits() -> float:
    return REGISTRY.get_sample_value("petpro_local_cache_total", {"result": "hit"}) or 0.0


def test_the_lru_keeps_the_newest_entries_for_their_ttl():
    lru = LocalLRU(max_entries=2)
    lru.set("a", 1, ttl=60)
    lru.set("b", 2, ttl=60)
    assert lru.get("a") == 1  # a is now the most recent
    lru.set("c", 3, ttl=60)  # evicts b, the least recently used
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, MISSING, 3)
    lru.set("d", 4, ttl=0.01)
    time.sleep(0.02)
    assert lru.get("d") is MISSING  # expired


@pytest.mark.django_db(transaction=True)
def test_the_read_model_is_served_from_the_process_then_dropped_by_a_change(
    clinic_service, django_assert_num_queries
):
    clinic = clinic_service.clinic
    assert clinic_get(clinic_id=clinic.id).name == "Berlin Vet"
    assert [s.id for s in clinic_service_list(clinic_id=clinic.id)] == ["svc-checkup"]
    hits = local_hits()
    with django_assert_num_queries(0):
        assert clinic_get(clinic_id=clinic.id).name == "Berlin Vet"
        clinic_service_list(clinic_id=clinic.id)
    assert local_hits() == hits + 3  # the clinic twice (the list reads it too), the list

    clinic_upsert(clinic_id=clinic.id, name="Berlin Vet Mitte", timezone="Europe/Berlin")

    assert clinic_get(clinic_id=clinic.id).name == "Berlin Vet Mitte"


@pytest.mark.django_db(transaction=True)
def test_without_the_local_level_every_read_asks_redis(clinic_service, settings):
    settings.LOCAL_CACHE_ENABLED = False
    clinic = clinic_service.clinic
    hits = local_hits()
    assert clinic_get(clinic_id=clinic.id).name == "Berlin Vet"
    assert clinic_get(clinic_id=clinic.id).name == "Berlin Vet"
    assert local_hits() == hits


@pytest.mark.django_db(transaction=True)
def test_another_process_sees_a_change_within_a_second(clinic_service):
    clinic = clinic_service.clinic
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "petpro_booking.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "LOCAL_CACHE_ENABLED": "true",
    }
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, clinic.id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )

    def ask(what: str) -> str:
        assert reader.stdin is not None
        assert reader.stdout is not None
        reader.stdin.write(what + "\n")
        reader.stdin.flush()
        return reader.stdout.readline().strip()

    def seconds_until(what: str, expected: str) -> float:
        started = time.monotonic()
        while ask(what) != expected:
            assert time.monotonic() - started < 3, f"{what} still not {expected}"
            time.sleep(0.02)
        return time.monotonic() - started

    try:
        assert ask("name") == "Berlin Vet"
        # A change that bypasses the services is not seen: the reader serves its cache.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE clinics SET name = 'Sneaky' WHERE id = %s", [clinic.id])
        time.sleep(1.1)
        assert ask("name") == "Berlin Vet"

        clinic_upsert(clinic_id=clinic.id, name="Berlin Vet Mitte", timezone="Europe/Berlin")
        assert seconds_until("name", "Berlin Vet Mitte") < 1.0

        family = slot_search_family(clinic.id)
        before = int(ask("generation"))
        cache_keys.bump_generation(family)
        assert seconds_until("generation", str(before + 1)) < 1.0
    finally:
        assert reader.stdin is not None
        reader.stdin.close()
        reader.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_the_week_view_is_warmed_after_a_change_and_on_deploy(
    owner_pet, slot, django_assert_num_queries
):
    # Inside the week view whatever the factory's sequence has reached in this session.
    start = (timezone.now() + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    Slot.objects.filter(id=slot.id).update(start_at=start, end_at=start + dt.timedelta(minutes=30))
    client = api_client_for(sub="owner-1", roles=["pet_owner"])
    query = week_view_query(clinic=slot.clinic, service_id=slot.service_id, available=True)

    call_command("warm_search_cache", "--all")  # what the deploy runs

    with django_assert_num_queries(0):
        page = client.get("/api/v1/slots", query).json()
    assert [row["id"] for row in page["results"]] == [str(slot.id)]
    assert search_cache_warm() == 0  # nothing changed since

    reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")  # the slot is full now
    assert search_cache_warm() == 1  # the beat job's run after the change

    with django_assert_num_queries(0):
        page = client.get("/api/v1/slots", query).json()
    assert page["results"] == []
    schedule = django_settings.CELERY_BEAT_SCHEDULE["warm-search-cache"]
    assert schedule["task"] == "slots.search_cache_warm"
