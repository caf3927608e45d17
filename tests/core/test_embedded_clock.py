"""The embedded clock runs the beat schedule of settings, in a thread of the serving process
(tests/test_embedded_smoke.py sees it cancel an unpaid booking in a real embedded server)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from petpro_booking.core.embedded_clock import EmbeddedClock, Job, jobs_from_settings
from petpro_booking.core.models import IdempotencyKey


def test_the_jobs_are_the_beat_schedule_of_settings(settings):
    jobs = {job.name: (job.task, job.interval) for job in jobs_from_settings()}
    assert jobs == {
        name: (entry["task"], float(entry["schedule"]))
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    }
    assert {"expire-holds", "cancel-unpaid-bookings", "reconcile-payments", "relay-outbox"} <= set(
        jobs
    )


def test_a_crontab_schedule_is_refused_not_silently_skipped():
    from celery.schedules import crontab

    with pytest.raises(ValueError, match="interval"):
        jobs_from_settings({"x": {"task": "t", "schedule": crontab()}})


@pytest.mark.django_db(transaction=True)
def test_the_clock_runs_a_job_on_its_interval_and_survives_a_failing_one():
    old = IdempotencyKey.objects.create(
        principal="owner-1", key="k", method="POST", path="/x", request_hash="h"
    )
    IdempotencyKey.objects.filter(id=old.id).update(
        created_at=timezone.now() - dt.timedelta(days=2)
    )
    now = time.monotonic()
    clock = EmbeddedClock(
        [
            Job(name="broken", task="no.such.task", interval=0.05, due=now),
            Job(
                name="purge",
                task="core.idempotency_keys_purge",
                interval=0.05,
                due=now,
            ),
        ]
    ).start()
    try:
        deadline = time.monotonic() + 5
        while IdempotencyKey.objects.filter(id=old.id).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        clock.stop()
    assert not IdempotencyKey.objects.filter(id=old.id).exists()
