"""`manage.py run_embedded`: the development server plus the embedded clock, a thread that runs
every celery beat job of settings on its schedule (what `make run` starts)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand

from petpro_booking.core.embedded_clock import EmbeddedClock


class Command(RunserverCommand):
    help = "runserver plus the embedded clock (hold expiry, payment deadline, reminders, relay...)."

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-clock", action="store_true", help="serve only; run no periodic job"
        )

    def inner_run(self, *args: Any, **options: Any) -> None:
        # inner_run is the serving process (the autoreloader's child, or the only process with
        # --noreload): the clock lives exactly once, next to the server.
        if not options.get("no_clock"):
            if not settings.CELERY_TASK_ALWAYS_EAGER:
                self.stderr.write(
                    "CELERY_BROKER_URL is set: run `celery beat` and a worker; no embedded clock."
                )
            else:
                EmbeddedClock().start()
        super().inner_run(*args, **options)
