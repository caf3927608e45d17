"""What to drop from the caches when a slot or the clinics read-model changes: the cache
families (generations, `core.cache`) of the slots app and their bumps. Below both the writes
(`services`, `clinic_sync`) and the reads (`selectors`, `search_warming`), so none of them has
to import another to name a family."""

from __future__ import annotations

from django.db import transaction

from petpro_booking.core import cache as cache_keys


def slot_search_family(clinic_id: str) -> str:
    return f"slots:{clinic_id}"


def clinic_read_model_family(clinic_id: str) -> str:
    return f"clinic:{clinic_id}"


def clinic_read_model_changed(*, clinic_id: str) -> None:
    """Drop the cached clinic and its services (both cache levels, every process within a
    second): now, and again once the change is committed (a reader between the two may
    have cached the old rows)."""
    cache_keys.bump_generation(clinic_read_model_family(clinic_id))
    transaction.on_commit(lambda: cache_keys.bump_generation(clinic_read_model_family(clinic_id)))


def invalidate_slot_search(*, clinic_id: str) -> None:
    """Drop cached searches of this clinic (and the clinic-less ones) once the change is
    committed; reservations and bookings call it too, as every hold changes availability."""

    def bump() -> None:
        cache_keys.bump_generation(slot_search_family(clinic_id), slot_search_family("*"))

    transaction.on_commit(bump)
