"""The clinics read-model: its one write (`clinic_upsert`) and its sync from the clinics
gateway. When an outside service feeds clinics (CLINIC_SERVICE_URL set), a clinic and its
services are fetched on first use and when the local copy is older than CLINIC_CACHE_SECONDS,
and refreshed in bulk by `manage.py refresh_clinics` and the beat job. With the local adapter
the tables are the source and nothing here calls out (the gateway says which; no mode check
here).

When the Clinic Service cannot answer, a clinic we already know keeps being served from its
local rows (search, reads, holds on existing slots go on); one we have never seen is a 503
`dependency_unavailable`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.clinics import gateway as clinic_source
from petpro_booking.core.errors import DependencyUnavailable, ValidationFailed

from .invalidation import clinic_read_model_changed, invalidate_slot_search
from .models import Clinic, ClinicService, Slot

logger = logging.getLogger(__name__)


def time_zone_known(name: str) -> bool:
    """Whether `name` is an IANA time zone (the read-model's and the admin's one check)."""
    try:
        ZoneInfo(name)
    except (KeyError, ValueError):
        return False
    return True


def clinic_upsert(
    *, clinic_id: str, name: str, timezone: str, active: bool = True, language: str = "en"
) -> Clinic:
    """Insert or refresh a clinic of the read-model (local adapter and Clinic Service sync)."""
    if not time_zone_known(timezone):
        raise ValidationFailed(details={"timezone": ["Not an IANA time zone."]})
    clinic, _ = Clinic.objects.update_or_create(
        id=clinic_id,
        defaults={"name": name, "timezone": timezone, "active": active, "language": language},
    )
    transaction.on_commit(lambda: clinic_source.invalidate_clinic(clinic_id))
    clinic_read_model_changed(clinic_id=clinic_id)
    invalidate_slot_search(clinic_id=clinic_id)  # active and time zone decide what is bookable
    return clinic


def clinic_is_stale(clinic: Clinic, *, now: dt.datetime | None = None) -> bool:
    if clinic.synced_at is None:
        return True
    age = (now or timezone.now()) - clinic.synced_at
    return age >= dt.timedelta(seconds=settings.CLINIC_CACHE_SECONDS)


def clinic_sync_due(clinic: Clinic | None) -> bool:
    """True when the Clinic Service feeds the read-model and this clinic (None: not known
    locally) is missing or stale; False when the local tables are the source."""
    return clinic_source.clinics_fed_from_outside() and (clinic is None or clinic_is_stale(clinic))


def clinic_sync_from_service(*, clinic_id: str, refresh: bool = False) -> Clinic | None:
    """Fetch one clinic and its services from the Clinic Service and upsert them.

    Services it no longer lists are marked inactive (slots and bookings keep pointing at
    them); a clinic it no longer knows is marked inactive. Returns the local clinic, None if
    neither side knows it. `refresh` skips the cached answers. Raises DependencyUnavailable
    ("clinic service") when the service cannot answer and nothing is cached.
    """
    return _sync(clinic_id=clinic_id, refresh=refresh)[0]


def _sync(*, clinic_id: str, refresh: bool) -> tuple[Clinic | None, bool]:
    """(local clinic, whether the Clinic Service knows it)."""
    # No stale answers here: the local rows are the long-lived copy, and marking them synced
    # from an old answer would hide that the Clinic Service has not been heard from.
    info = clinic_source.clinic_get(clinic_id=clinic_id, refresh=refresh, allow_stale=False)
    now = timezone.now()
    if info is None:
        if Clinic.objects.filter(id=clinic_id, active=True).update(active=False, synced_at=now):
            # No longer bookable: its cached search pages go, as `clinic_upsert` drops them.
            invalidate_slot_search(clinic_id=clinic_id)
        clinic_read_model_changed(clinic_id=clinic_id)
        clinic = Clinic.objects.filter(id=clinic_id).first()
        if clinic is not None:
            logger.warning("clinic %s is unknown to the Clinic Service; marked inactive", clinic_id)
        return clinic, False
    services = (
        clinic_source.clinic_services(clinic_id=clinic_id, refresh=refresh, allow_stale=False) or []
    )
    try:
        with transaction.atomic():
            clinic = clinic_upsert(
                clinic_id=clinic_id,
                name=info.name,
                timezone=info.timezone,
                active=info.active,
                language=info.language,
            )
            Clinic.objects.filter(id=clinic_id).update(synced_at=now)
            kept_away = _services_kept_at_their_clinic(
                clinic_id=clinic_id, service_ids=[service.id for service in services]
            )
            for service in services:
                if service.id in kept_away:
                    continue
                ClinicService.objects.update_or_create(
                    id=service.id,
                    defaults={
                        "clinic_id": clinic_id,
                        "name": service.name,
                        "duration_minutes": service.duration_minutes,
                        "price": service.price,
                        "currency": service.currency,
                        "species": list(service.species),
                        "requires_payment": service.requires_payment,
                        "cancellation_window_hours": service.cancellation_window_hours,
                        **dict(service.rules),  # booking rules, only those it sends
                        "active": True,
                        "synced_at": now,
                    },
                )
            ClinicService.objects.filter(clinic_id=clinic_id).exclude(
                id__in=[service.id for service in services]
            ).update(active=False, synced_at=now)
    except ValidationFailed as exc:  # e.g. a time zone we cannot use
        logger.error("clinic %s from the Clinic Service is not usable: %s", clinic_id, exc.details)
        raise DependencyUnavailable(
            clinic_source.DEPENDENCY, "The clinic service answered with data we cannot use."
        ) from exc
    clinic.synced_at = now
    return clinic, True


def _services_kept_at_their_clinic(*, clinic_id: str, service_ids: list[str]) -> set[str]:
    """Of the services the Clinic Service lists under `clinic_id`, those we know under another
    clinic and may not move: a service with slots stays where its slots are (a slot's clinic is
    its service's, a foreign key holds the pair), so it is left out of this sync with an ERROR;
    its own clinic's next sync, which no longer finds it there, deactivates it. A service with
    no slots moves, and the clinic it leaves drops its cached services."""
    elsewhere = dict(
        # Locked as slot creation locks a service (`services._lock_service`): a slot added
        # meanwhile is seen below, not refused by the foreign key at our UPDATE.
        ClinicService.objects.select_for_update()
        .filter(id__in=service_ids)
        .exclude(clinic_id=clinic_id)
        .values_list("id", "clinic_id")
    )
    if not elsewhere:
        return set()
    with_slots = set(
        Slot.objects.filter(service_id__in=elsewhere)
        .order_by()
        .values_list("service_id", flat=True)
        .distinct()
    )
    for service_id, old_clinic_id in elsewhere.items():
        if service_id in with_slots:
            logger.error(
                "service %s is listed under clinic %s by the Clinic Service but has slots at "
                "clinic %s: left at %s (a service with slots cannot change clinic)",
                service_id,
                clinic_id,
                old_clinic_id,
                old_clinic_id,
            )
        else:
            clinic_read_model_changed(clinic_id=old_clinic_id)
            invalidate_slot_search(clinic_id=old_clinic_id)
    return with_slots


def clinic_read_through(*, clinic_id: str) -> Clinic | None:
    """The local clinic, fetched or refreshed first when the Clinic Service is configured and
    the local copy is missing or stale. None when the clinic does not exist."""
    clinic = Clinic.objects.filter(id=clinic_id).first()
    if not clinic_source.clinics_fed_from_outside() or (
        clinic is not None and not clinic_is_stale(clinic)
    ):
        return clinic
    try:
        return clinic_sync_from_service(clinic_id=clinic_id)
    except DependencyUnavailable:
        if clinic is None:
            raise
        logger.info("clinic service unavailable: serving clinic %s from the read-model", clinic_id)
        return clinic


def clinic_service_ensure_synced(*, clinic_id: str, service_id: str) -> None:
    """Before a write that needs a clinic's service (slot create/generate): with the Clinic
    Service configured, make sure the clinic is known and fresh, and ask again once if the
    service is still missing (it may have been added since the last sync)."""
    if not clinic_source.clinics_fed_from_outside():
        return
    known_before = Clinic.objects.filter(id=clinic_id).first()
    clinic = clinic_read_through(clinic_id=clinic_id)
    if clinic is None or ClinicService.objects.filter(id=service_id, clinic_id=clinic_id).exists():
        return
    just_synced = known_before is None or clinic_is_stale(known_before)
    if not just_synced:
        clinic_sync_from_service(clinic_id=clinic_id, refresh=True)


@dataclass(frozen=True)
class RefreshReport:
    refreshed: int = 0
    unknown: int = 0
    failed: int = 0


def clinics_refresh(*, clinic_ids: list[str] | None = None) -> RefreshReport:
    """Re-read the given clinics (default: every clinic the read-model knows) from the Clinic
    Service, skipping cached answers. A clinic the service cannot answer for keeps its rows.
    Does nothing when the local tables are the source."""
    if not clinic_source.clinics_fed_from_outside():
        return RefreshReport()
    ids = clinic_ids or list(Clinic.objects.order_by("id").values_list("id", flat=True))
    refreshed = unknown = failed = 0
    for clinic_id in ids:
        try:
            _, known = _sync(clinic_id=clinic_id, refresh=True)
        except DependencyUnavailable as exc:
            failed += 1
            logger.warning("refresh of clinic %s failed: %s", clinic_id, exc.message)
            continue
        if known:
            refreshed += 1
        else:
            unknown += 1
    return RefreshReport(refreshed=refreshed, unknown=unknown, failed=failed)
