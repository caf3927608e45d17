"""One entry point for clinic data; settings choose the adapter, callers never branch on mode.

With CLINIC_SERVICE_URL set, the Clinic Service feeds the slots app's clinics read-model
(`client`); without it the read-model's own tables are the source, edited in admin (`local`),
and there is nothing to fetch.
"""

from __future__ import annotations

from django.conf import settings

from .client import DEPENDENCY, ClinicInfo, ServiceInfo

__all__ = [
    "DEPENDENCY",
    "ClinicInfo",
    "ServiceInfo",
    "clinic_get",
    "clinic_services",
    "clinics_fed_from_outside",
    "invalidate_clinic",
]


def _adapter():
    if settings.CLINIC_SERVICE_URL:
        from . import client

        return client
    from . import local

    return local


def clinics_fed_from_outside() -> bool:
    """True when an outside service is the source of clinics (the read-model syncs from it);
    False when the local tables are (nothing to fetch, nothing goes stale)."""
    return _adapter().FED_FROM_OUTSIDE


def clinic_get(
    *, clinic_id: str, refresh: bool = False, allow_stale: bool = True
) -> ClinicInfo | None:
    """The clinic as its source knows it, None if unknown; DependencyUnavailable ("clinic
    service", 503) when the source cannot answer and nothing usable is cached."""
    return _adapter().clinic_get(clinic_id=clinic_id, refresh=refresh, allow_stale=allow_stale)


def clinic_services(
    *, clinic_id: str, refresh: bool = False, allow_stale: bool = True
) -> list[ServiceInfo] | None:
    """The services the clinic offers, None if the source does not know the clinic."""
    return _adapter().clinic_services(clinic_id=clinic_id, refresh=refresh, allow_stale=allow_stale)


def invalidate_clinic(clinic_id: str) -> None:
    """Forget cached answers about this clinic (a no-op without an outside source)."""
    _adapter().invalidate_clinic(clinic_id)
