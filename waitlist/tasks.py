"""Background job of the waiting list: the sweep (celery beat, every minute)."""

from celery import shared_task

from .services import waitlist_sweep


@shared_task(name="waitlist.waitlist_sweep")
def waitlist_sweep_task() -> dict[str, int]:
    """End entries of started slots, mark confirmed offers, offer units nobody was given."""
    return waitlist_sweep()
