"""Local adapter (embedded mode): the clinics read-model's own tables are the source of
clinics, edited in admin, so there is nothing to fetch and nothing cached to forget."""

from __future__ import annotations

from .client import ClinicInfo, ServiceInfo

FED_FROM_OUTSIDE = False


def clinic_get(*, clinic_id: str, refresh: bool = False, allow_stale: bool = True) -> ClinicInfo:
    raise LookupError("no outside clinic source is configured: the read-model is the source")


def clinic_services(
    *, clinic_id: str, refresh: bool = False, allow_stale: bool = True
) -> list[ServiceInfo]:
    raise LookupError("no outside clinic source is configured: the read-model is the source")


def invalidate_clinic(clinic_id: str) -> None:
    return None
