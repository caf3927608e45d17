"""Search reads from a real streaming replica; a stale replica never decides a hold or a
confirm (they read and write the primary); losing the replica sends reads to the primary.

The replica (tests/pg_replica.py) is a second PostgreSQL cluster on 5433, built with
pg_basebackup from the suite's server and kept in sync by streaming replication; "stale" is
`pg_wal_replay_pause()` on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import connection, connections
from prometheus_client import REGISTRY

from petpro_booking.core import db as core_db
from petpro_booking.core.local_cache import clear_local_cache
from petpro_booking.settings.base import replica_config
from slots.models import Slot
from slots.selectors import slot_search_page

from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory

ALIAS = "replica_test"

# The replica is one of this test's databases (so Django lets it be used) and a test mirror of
# the primary (so it is never flushed: a standby is read-only; flushing the primary suffices).
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", ALIAS])


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup, django_db_blocker, pg_replica) -> Iterator:
    """Register the replica as a database alias before any test of this module sets up."""
    with django_db_blocker.unblock():
        dbname = connection.settings_dict["NAME"]
    config = replica_config(pg_replica.url(dbname))
    config["TEST"] = {"MIRROR": "default"}
    connections.settings[ALIAS] = connections.configure_settings(
        {"default": connections.settings["default"], ALIAS: config}
    )[ALIAS]
    pg_replica.dbname = dbname
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            connections[ALIAS].close()
            connections[ALIAS].close_pool()
        del connections[ALIAS]
        del connections.settings[ALIAS]


@pytest.fixture
def replica(pg_replica, settings) -> Iterator:
    """The replica as the service's read replica, caught up with the primary."""
    settings.DATABASE_REPLICA_ALIASES = [ALIAS]
    core_db._replica_down_until.clear()
    pg_replica.catch_up(pg_replica.dbname)
    try:
        yield pg_replica
    finally:
        if pg_replica.running:
            pg_replica.resume_replay(pg_replica.dbname)
        core_db._replica_down_until.clear()


def search(clinic_id: str) -> list[dict]:
    cache.clear()  # every search here asks the database
    clear_local_cache()
    return slot_search_page(filters={"clinic_id": clinic_id}, page=1, page_size=20)["results"]


def test_search_reads_from_the_replica(replica, slot):
    replica.catch_up(replica.dbname)  # it has the slot...
    replica.pause_replay(replica.dbname)  # ...and nothing after this
    newer = SlotFactory(clinic=slot.clinic, service=slot.service)  # on the primary only, yet

    assert [row["id"] for row in search(slot.clinic_id)] == [str(slot.id)]
    assert Slot.objects.filter(clinic_id=slot.clinic_id).count() == 2  # the primary has both

    replica.resume_replay(replica.dbname)
    replica.catch_up(replica.dbname)
    assert [row["id"] for row in search(slot.clinic_id)] == [str(slot.id), str(newer.id)]


def test_a_stale_replica_never_decides_a_hold_or_a_confirm(replica, slot):
    LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")
    LocalPetFactory(owner__id="owner-2", id="pet-2", species="dog")
    first = api_client_for(sub="owner-1", roles=["pet_owner"])
    second = api_client_for(sub="owner-2", roles=["pet_owner"])
    replica.catch_up(replica.dbname)  # it has the slot...
    replica.pause_replay(replica.dbname)  # ...and nothing after this

    held = first.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-1"}, format="json"
    )
    assert held.status_code == 201  # the slot (capacity 1) is full on the primary

    assert search(slot.clinic_id)[0]["available_capacity"] == 1  # the stale replica: still free
    refused = second.post(
        "/api/v1/reservations", {"slot_id": str(slot.id), "pet_id": "pet-2"}, format="json"
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "slot_unavailable"
    # The replica has never seen this hold: the confirm reads and fences on the primary.
    confirmed = first.post(f"/api/v1/reservations/{held.json()['id']}/confirm")
    assert confirmed.status_code == 201
    released_again = first.delete(f"/api/v1/reservations/{held.json()['id']}")
    assert released_again.status_code == 409  # confirmed on the primary, whatever the replica says
    slot.refresh_from_db()
    assert (slot.booked_count, slot.held_count) == (1, 0)

    replica.resume_replay(replica.dbname)
    replica.catch_up(replica.dbname)
    assert search(slot.clinic_id)[0]["available_capacity"] == 0


def test_losing_the_replica_sends_reads_to_the_primary(replica, slot):
    assert core_db.read_replica() == ALIAS
    fallbacks = REGISTRY.get_sample_value("petpro_replica_fallbacks_total") or 0
    replica.stop()
    try:
        started = time.monotonic()
        assert [row["id"] for row in search(slot.clinic_id)] == [str(slot.id)]
        assert core_db.read_replica() == "default"  # skipped now, without waiting again
        assert time.monotonic() - started < 3
        assert REGISTRY.get_sample_value("petpro_replica_fallbacks_total") == fallbacks + 2
    finally:
        replica.start()
