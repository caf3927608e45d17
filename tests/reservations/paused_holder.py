"""A lock holder in its own process, for the paused-holder test: it takes the slot lock with
a 1 s lease, reads a hold, says "locked" and waits for a line on stdin (the test freezes it
with SIGSTOP meanwhile, renewal thread included). Resumed, it tries to confirm the hold with
the version it saw and prints the outcome as JSON."""

from __future__ import annotations

import json
import os
import sys


def main(reservation_id: str, redis_url: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petpro_booking.settings.test")
    import django

    django.setup()
    from django.db import transaction

    from petpro_booking.core.errors import ApplicationError
    from petpro_booking.core.locking import DistributedLockManager
    from petpro_booking.core.principal import Principal
    from reservations.models import Reservation
    from reservations.services import reservation_mark_confirmed
    from slots.locking import slot_lock_key, slot_rows_lock
    from slots.services import slot_convert_hold

    manager = DistributedLockManager(redis_url=redis_url, ttl_seconds=1, wait_seconds=2)
    seen = Reservation.objects.select_related("slot").get(id=reservation_id)
    key = slot_lock_key(
        clinic_id=seen.slot.clinic_id, service_id=seen.slot.service_id, slot_id=seen.slot_id
    )
    owner = Principal(sub=seen.user_id, roles=frozenset({"pet_owner"}))
    with manager.acquire(key):
        print("locked", flush=True)
        sys.stdin.readline()
        try:
            with transaction.atomic():
                slot = slot_rows_lock(seen.slot_id)[seen.slot_id]
                reservation_mark_confirmed(
                    reservation=seen, actor=owner, slot=slot, seen_version=seen.version
                )
                slot_convert_hold(slot_id=seen.slot_id)
            outcome = "confirmed"
        except ApplicationError as exc:
            outcome = exc.code
    print(json.dumps({"outcome": outcome}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
