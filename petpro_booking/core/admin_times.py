"""Moments on admin pages as people read them: in the clinic's time zone with the zone written
(`2026-12-09 10:00 (Europe/Berlin)`), and in UTC, written, for what belongs to no clinic.

Django's admin would show a stored moment in the server's zone (UTC) without naming it. An
admin shows a field through a column made here instead, in its list and on the object's page.
The clinics app registers how clinic ids map to time zones (`on_clinic_zones`), for rows that
carry only a clinic id (events), so core knows no app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin

from .clock import local_label

UTC = "UTC"
_clinic_zones: list[Callable[[set[str]], dict[str, str]]] = []


def on_clinic_zones(lookup: Callable[[set[str]], dict[str, str]]) -> None:
    """Register `lookup(clinic_ids)` -> `{clinic id: IANA zone name}` (AppConfig.ready of the
    app that owns clinics)."""
    _clinic_zones[:] = [lookup]


def clinic_zones(clinic_ids: Iterable[str]) -> dict[str, str]:
    """The time zones of these clinics, in one lookup; a clinic we do not know is left out."""
    wanted = {str(clinic_id) for clinic_id in clinic_ids if clinic_id}
    if not wanted or not _clinic_zones:
        return {}
    return _clinic_zones[0](wanted)


def local_time_column(
    field: str, description: str, *, zone_of: Callable[[Any], str | None]
) -> Callable[[Any, Any], str]:
    """A ModelAdmin column (list_display, readonly_fields) showing `field` in the zone
    `zone_of(row)` names, UTC when it names none:

        created_local = local_time_column("created_at", "created", zone_of=lambda r: r.tz)
    """

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, row: Any) -> str:
        return local_label(getattr(row, field), zone_of(row) or UTC) or "-"

    return column
