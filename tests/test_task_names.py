"""Task names follow one convention: `<app label>.<what it does>`, and beat names real tasks."""

from __future__ import annotations

import re

from django.conf import settings

from petpro_booking.celery import app

LABELS = {
    "petpro_booking.core": "core",
    "petpro_booking.events": "events",
    "slots": "slots",
    "reservations": "reservations",
    "bookings": "bookings",
    "waitlist": "waitlist",
}


def test_every_task_is_named_app_label_dot_action():
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert ours, "no task registered"
    for name, task in ours.items():
        module = task.__module__
        label = next(lab for prefix, lab in LABELS.items() if module.startswith(prefix))
        assert re.fullmatch(rf"{label}\.[a-z][a-z_]*", name), (name, module)


def test_beat_schedules_only_registered_tasks():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry
