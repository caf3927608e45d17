"""HTTP client of the Clinic Service: a clinic and the services it offers.

`GET /api/v1/clinics/{id}` -> `{"id", "name", "timezone", "active"}`;
`GET /api/v1/clinics/{id}/services` -> `[{"id", "name", "duration_minutes", "price",
"currency", "species", "requires_payment", "cancellation_window_hours"}]`.
Returns plain dataclasses (integrations never touch an app's tables: slots.clinic_sync puts
them into the read-model). Call it through `gateway`, which picks this or the local adapter.
Answers are cached CLINIC_CACHE_SECONDS (30 min); see
integrations.service_http for retries, breaker and stale answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache

from petpro_booking.core.breaker import WindowedCircuitBreaker
from petpro_booking.core.health import register_check

from ..service_http import ServiceReader

DEPENDENCY = "clinic service"
FED_FROM_OUTSIDE = True  # the adapter flag the gateway reports (gateway.py)

reader = ServiceReader(
    dependency=DEPENDENCY,
    url_setting="CLINIC_SERVICE_URL",
    breaker=WindowedCircuitBreaker("clinic-service"),
)
register_check("clinic_service", reader.health)


@dataclass(frozen=True)
class ClinicInfo:
    id: str
    name: str
    timezone: str
    active: bool
    language: str = "en"


@dataclass(frozen=True)
class ServiceInfo:
    id: str
    name: str
    duration_minutes: int
    price: Decimal
    currency: str
    species: tuple[str, ...]
    requires_payment: bool
    cancellation_window_hours: int
    # Booking rules, when the Clinic Service sends them (None: keep ours).
    rules: tuple[tuple[str, int], ...] = ()


RULE_FIELDS = (
    "min_notice_minutes",
    "booking_horizon_days",
    "buffer_before_minutes",
    "buffer_after_minutes",
)


# What the read-model's columns hold (slots.models): an answer outside them is a bad answer
# (refused like a missing field), not a DataError that stops every later clinic's refresh.
INT_MAX = 2_147_483_647
PRICE_LIMIT = Decimal("100000000")  # DecimalField(max_digits=10, decimal_places=2)


def _text(value: Any, *, what: str, most: int) -> str:
    text = str(value)
    if not 0 < len(text) <= most or "\x00" in text:
        raise ValueError(f"{what}: empty, longer than {most} characters, or with a NUL")
    return text


def _whole(value: Any, *, what: str, least: int = 0) -> int:
    number = int(value)
    if not least <= number <= INT_MAX:
        raise ValueError(f"{what}: {number} outside {least}..{INT_MAX}")
    return number


def _parse_rules(service: dict[str, Any]) -> list[tuple[str, int]]:
    """The booking rules the service sends, each a whole number >= 0; absent ones are left out."""
    return [
        (name, _whole(service[name], what=f"service {service.get('id')!r}: {name}"))
        for name in RULE_FIELDS
        if service.get(name) is not None
    ]


def _clinic_key(clinic_id: str) -> str:
    return f"svc:{{clinic:{clinic_id}}}:info"


def _services_key(clinic_id: str) -> str:
    return f"svc:{{clinic:{clinic_id}}}:services"


def invalidate_clinic(clinic_id: str) -> None:
    """Forget cached Clinic Service answers about this clinic (call when it changed)."""
    cache.delete_many([_clinic_key(str(clinic_id)), _services_key(str(clinic_id))])


def _parse_clinic(body: Any) -> dict[str, Any]:
    language = body.get("default_language") or body.get("language") or "en"
    return {
        "id": _text(body["id"], what="clinic id", most=64),
        "name": _text(body["name"], what="clinic name", most=200),
        "timezone": _text(body["timezone"], what="clinic timezone", most=64),
        "active": bool(body.get("active", True)),
        "language": _text(language, what="clinic language", most=10),
    }


def _parse_services(body: Any) -> list[dict[str, Any]]:
    rows = []
    for service in body:
        what = f"service {service.get('id')!r}"
        duration = _whole(service["duration_minutes"], what=f"{what}: duration", least=1)
        price = Decimal(str(service["price"]))
        window = _whole(service.get("cancellation_window_hours", 24), what=f"{what}: window")
        if not price.is_finite() or not 0 <= price < PRICE_LIMIT:
            raise ValueError(f"{what}: price outside 0..{PRICE_LIMIT}")
        currency = str(service["currency"]).upper()
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise ValueError(f"{what}: currency {currency!r} is not a three-letter code")
        species = service.get("species") or []
        if not isinstance(species, list) or not all(isinstance(s, str) for s in species):
            raise ValueError(f"service {service.get('id')!r}: species is not a list of names")
        rows.append(
            {
                "id": _text(service["id"], what="service id", most=64),
                "name": _text(service["name"], what=f"{what}: name", most=200),
                "duration_minutes": duration,
                "price": str(price),
                "currency": currency,
                "species": [s.lower() for s in species],
                "requires_payment": bool(service.get("requires_payment", False)),
                "cancellation_window_hours": window,
                "rules": _parse_rules(service),
            }
        )
    return rows


def clinic_get(
    *, clinic_id: str, refresh: bool = False, allow_stale: bool = True
) -> ClinicInfo | None:
    """The clinic, None if the Clinic Service does not know it. Raises DependencyUnavailable
    when the service cannot answer and nothing (or, without `allow_stale`, nothing fresh) is
    cached."""
    row = reader.fetch(
        f"/api/v1/clinics/{quote(str(clinic_id), safe='')}",
        cache_key=_clinic_key(str(clinic_id)),
        fresh_seconds=settings.CLINIC_CACHE_SECONDS,
        parse=_parse_clinic,
        refresh=refresh,
        allow_stale=allow_stale,
    ).body
    return ClinicInfo(**row) if row is not None else None


def clinic_services(
    *, clinic_id: str, refresh: bool = False, allow_stale: bool = True
) -> list[ServiceInfo] | None:
    """The services the clinic offers, None if the Clinic Service does not know the clinic."""
    rows = reader.fetch(
        f"/api/v1/clinics/{quote(str(clinic_id), safe='')}/services",
        cache_key=_services_key(str(clinic_id)),
        fresh_seconds=settings.CLINIC_CACHE_SECONDS,
        parse=_parse_services,
        refresh=refresh,
        allow_stale=allow_stale,
    ).body
    if rows is None:
        return None
    return [
        ServiceInfo(
            id=row["id"],
            name=row["name"],
            duration_minutes=row["duration_minutes"],
            price=Decimal(row["price"]),
            currency=row["currency"],
            species=tuple(row["species"]),
            requires_payment=row["requires_payment"],
            cancellation_window_hours=row["cancellation_window_hours"],
            rules=tuple((name, value) for name, value in row.get("rules", ())),
        )
        for row in rows
    ]
