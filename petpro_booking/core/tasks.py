"""Periodic housekeeping of the core: purge idempotency keys past their 24 h."""

from celery import shared_task

from .idempotency import idempotency_keys_purge as purge


@shared_task(name="core.idempotency_keys_purge")
def idempotency_keys_purge() -> int:
    return purge()
