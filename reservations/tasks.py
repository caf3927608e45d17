"""Background jobs of holds: the expiry job (celery beat, every 30 s)."""

from celery import shared_task

from .services import reservation_expire_due


@shared_task(name="reservations.reservations_expire_due")
def reservations_expire_due() -> int:
    """Expire due holds in batches; safe to run in several workers at once."""
    return reservation_expire_due()
