"""Warming the search cache: the first page of each active clinic and service for the next 7
days is computed before anyone asks for it, after every change (the `warm-search-cache` beat
job) and on deploy (`manage.py warm_search_cache --all`, run by the chart's post-upgrade hook).

The warmed query is the "week view": `clinic_id`, `service_id`, `start_from` = today 00:00 in
the clinic's time zone, `start_to` = 7 days later (both with the clinic's offset), page 1 of the
default size, once with `available` unset and once with `available=true`. It goes through the
API's own query serializer and `slot_search_page`, so a client asking for exactly that week
gets the cached page (the cache key is the validated query).

A clinic is warmed again only when its search generation moved since it was last warmed (any
slot change bumps it) or the day changed; the last warmed generation is kept in Redis.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.utils import timezone

from petpro_booking.core import cache as cache_keys

from .invalidation import slot_search_family
from .models import Clinic, ClinicService
from .selectors import slot_search_page
from .serializers import SlotSearchQuery

WARM_DAYS = 7
MARKER_TTL_SECONDS = 86400


def week_view_query(
    *,
    clinic: Clinic,
    service_id: str,
    available: bool | None = None,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The query string of the warmed page (what a client sends to hit it)."""
    zone = ZoneInfo(clinic.timezone)
    today = (now or timezone.now()).astimezone(zone).date()
    start = dt.datetime.combine(today, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(today + dt.timedelta(days=WARM_DAYS), dt.time.min, tzinfo=zone)
    query = {
        "clinic_id": clinic.id,
        "service_id": service_id,
        "start_from": start.isoformat(),
        "start_to": end.isoformat(),
    }
    if available is not None:
        query["available"] = "true" if available else "false"
    return query


def _warm_page(query: dict[str, str]) -> None:
    parsed = SlotSearchQuery(data=query)
    parsed.is_valid(raise_exception=True)
    params: dict[str, Any] = dict(parsed.validated_data)
    page, page_size = params.pop("page"), params.pop("page_size")
    filters = {key: value for key, value in params.items() if value is not None}
    slot_search_page(filters=filters, page=page, page_size=page_size)


def search_cache_warm(*, everything: bool = False, now: dt.datetime | None = None) -> int:
    """Warm the week view of every active service of every active clinic whose search
    generation moved since its last warming (all of them with `everything`). Returns how many
    clinics were warmed."""
    now = now or timezone.now()
    warmed = 0
    clinics = Clinic.objects.filter(active=True).order_by("id")
    services: dict[str, list[str]] = {}
    for clinic_id, service_id in (
        ClinicService.objects.filter(active=True, clinic__active=True)
        .order_by("clinic_id", "id")
        .values_list("clinic_id", "id")
    ):
        services.setdefault(clinic_id, []).append(service_id)
    for clinic in clinics:
        if clinic.id not in services:
            continue
        marker_key = f"searchwarm:{clinic.id}"
        state = [
            cache_keys.generation(slot_search_family(clinic.id)),
            cache_keys.generation(slot_search_family("*")),
            now.astimezone(ZoneInfo(clinic.timezone)).date().isoformat(),
        ]
        if not everything and cache.get(marker_key) == state:
            continue
        for service_id in services[clinic.id]:
            for available in (None, True):
                _warm_page(
                    week_view_query(
                        clinic=clinic, service_id=service_id, available=available, now=now
                    )
                )
        cache.set(marker_key, state, timeout=MARKER_TTL_SECONDS)
        warmed += 1
    return warmed
