"""Background jobs of bookings (celery beat, after-commit work): thin, ids in, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

from . import retention, services
from .consistency import consistency_check as consistency_report
from .personal_data import erasures_resume
from .personal_data_archive import person_archive_erase

logger = logging.getLogger(__name__)


@shared_task(name="bookings.payments_reconcile")
def payments_reconcile() -> dict[str, int]:
    """Ask the provider about payments pending too long (a lost webhook still confirms)."""
    return services.payments_reconcile_stale()


@shared_task(name="bookings.payments_cancel_unpaid")
def payments_cancel_unpaid() -> dict[str, int]:
    """Cancel bookings unpaid past PAYMENT_DEADLINE_SECONDS, freeing their slot."""
    return services.bookings_cancel_unpaid()


@shared_task(name="bookings.payments_refund_owed")
def payments_refund_owed() -> dict[str, int]:
    """Refund every payment still owed back (retries what a provider outage postponed)."""
    return services.payments_refund_owed()


@shared_task(name="bookings.payment_refund_owed")
def payment_refund_owed_task(record_id: str) -> str:
    """Refund one payment owed back; scheduled after the commit that owed it."""
    return services.payment_refund_owed(record_id=record_id)


@shared_task(name="bookings.consistency_check")
def consistency_check() -> dict[str, int]:
    """Check every invariant (no repair) and publish the counts as metrics."""
    report = consistency_report()
    if not report.ok:
        logger.error(
            "consistency check: %d violation(s) %s",
            report.violations,
            {name: check.violations for name, check in report.checks.items() if not check.ok},
        )
    return {name: check.violations for name, check in report.checks.items()}


@shared_task(name="bookings.retention_webhooks")
def retention_webhooks() -> int:
    """Delete processed payment webhooks older than RETENTION_WEBHOOKS_DAYS."""
    return retention.processed_webhooks_purge()


@shared_task(name="bookings.retention_history")
def retention_history() -> int:
    """Pseudonymise the history of bookings closed more than RETENTION_HISTORY_YEARS ago."""
    return retention.booking_history_pseudonymise_closed()


@shared_task(name="bookings.erasure_archive", soft_time_limit=3000, time_limit=3300)
def erasure_archive() -> dict[str, int]:
    """Take erased people out of the event archive's day files (nothing to do without
    RETENTION_EVENTS_ARCHIVE_DIR or without an erasure not yet applied to it)."""
    return person_archive_erase()


@shared_task(name="bookings.erasure_resume", soft_time_limit=600, time_limit=660)
def erasure_resume() -> dict[str, int]:
    """Finish the erasures that stopped half-way (ErasureRequest rows past
    ERASURE_RESUME_AFTER_SECONDS)."""
    return erasures_resume()
