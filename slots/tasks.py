"""Celery tasks of the slots app (thin: one service call each, safe to run twice)."""

from __future__ import annotations

from celery import shared_task

from .clinic_sync import clinics_refresh as refresh_from_clinic_service


@shared_task(name="slots.clinics_refresh", ignore_result=True)
def clinics_refresh() -> dict[str, int]:
    """Beat job (CELERY_BEAT_SCHEDULE "refresh-clinics"): re-read known clinics from the Clinic
    Service; a no-op without CLINIC_SERVICE_URL."""
    report = refresh_from_clinic_service()
    return {"refreshed": report.refreshed, "unknown": report.unknown, "failed": report.failed}


@shared_task(name="slots.search_cache_warm", ignore_result=True)
def search_cache_warm() -> int:
    """Beat job (CELERY_BEAT_SCHEDULE "warm-search-cache"): recompute the week view of the
    clinics whose slots changed since the last run."""
    from .search_warming import search_cache_warm as warm

    return warm()
