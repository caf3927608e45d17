"""A lock holder frozen past its lease (SIGSTOP: its renewal thread stops too) loses the lock
to the next writer, and its later write, fenced on the version it saw, fails instead of
landing (the Redis lock and the fencing, docs/architecture.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.models import Reservation
from reservations.services import reservation_create, reservation_release

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault]
ROOT = Path(__file__).resolve().parents[2]


def child_environment(redis_url: str) -> dict[str, str]:
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "petpro_booking.settings.test",
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
    }


def test_paused_holder_cannot_commit_a_stale_write(owner_pet, slot, private_redis, settings):
    settings.REDIS_URL = private_redis.url
    owner = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
    hold = reservation_create(actor=owner, slot_id=slot.id, pet_id="pet-1")

    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.reservations.paused_holder", str(hold.id), private_redis.url],
        cwd=ROOT,
        env=child_environment(private_redis.url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGSTOP)  # a GC pause, a VM stall: the whole process stops
        time.sleep(1.5)  # the 1 s lease runs out; nobody renews it

        # Takes the lock the frozen holder still thinks it has (its lease ran out). No bound on
        # how long that took: a loaded machine is slow, and the outcome is what matters.
        released = reservation_release(actor=owner, reservation_id=hold.id)
        assert released.status == "released"

        holder.send_signal(signal.SIGCONT)
        out, err = holder.communicate("go\n", timeout=30)
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
    assert holder.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"outcome": "reservation_not_held"}
    assert "expired before its release" in err  # the holder learns it only at the very end
    hold.refresh_from_db()
    assert hold.status == "released"
    slot.refresh_from_db()
    assert (slot.held_count, slot.booked_count) == (0, 0)
    assert not Event.objects.filter(event_type="ReservationConfirmed").exists()
    assert Reservation.objects.filter(status="confirmed").count() == 0
