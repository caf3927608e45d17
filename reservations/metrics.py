"""Gauges of holds, set at every scrape (registered with core's metrics export in apps.py)."""

from __future__ import annotations

from django.db.models import Min
from django.utils import timezone
from prometheus_client import Gauge

from .models import Reservation, ReservationStatus

EXPIRY_LAG = Gauge(
    "petpro_expiry_lag_seconds",
    "How long the oldest still-held reservation is past its expires_at (0 when none is).",
    multiprocess_mode="livemostrecent",
)


def refresh_expiry_lag() -> None:
    """One aggregate over the partial index of held holds."""
    now = timezone.now()
    overdue = Reservation.objects.filter(
        status=ReservationStatus.HELD, expires_at__lt=now
    ).aggregate(oldest=Min("expires_at"))["oldest"]
    EXPIRY_LAG.set((now - overdue).total_seconds() if overdue else 0)
