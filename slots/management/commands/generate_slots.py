"""`manage.py generate_slots`: cut a weekly schedule into slots over many weeks (one week per
step, with a progress bar on a terminal and plain lines in a log)."""

from __future__ import annotations

import datetime as dt
import re

from django.core.management.base import BaseCommand, CommandError, CommandParser

from petpro_booking.core.errors import ApplicationError
from petpro_booking.core.principal import SYSTEM
from petpro_booking.core.progress import progress
from slots.services import WeeklyWindow, slot_generate

WINDOW = re.compile(r"^([1-7])(?:-([1-7]))? (\d\d:\d\d)-(\d\d:\d\d)$")


def weekly_windows(specs: list[str]) -> list[WeeklyWindow]:
    """`"1-5 09:00-12:00"` (Monday to Friday) or `"6 10:00-13:00"` (Saturday) -> windows."""
    windows = []
    for spec in specs:
        match = WINDOW.match(spec.strip())
        if match is None:
            raise CommandError(f"--weekly {spec!r}: expected e.g. '1-5 09:00-12:00'")
        first, last, start, end = match.groups()
        for weekday in range(int(first), int(last or first) + 1):
            windows.append(
                WeeklyWindow(
                    weekday=weekday,
                    start=dt.time.fromisoformat(start),
                    end=dt.time.fromisoformat(end),
                )
            )
    return windows


class Command(BaseCommand):
    help = "Generate slots of one clinic's service from a weekly schedule, week by week."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic-id", required=True)
        parser.add_argument("--service-id", required=True)
        parser.add_argument("--from", dest="date_from", required=True, type=dt.date.fromisoformat)
        parser.add_argument("--to", dest="date_to", required=True, type=dt.date.fromisoformat)
        parser.add_argument(
            "--weekly",
            action="append",
            required=True,
            help="weekday(s) and clinic-local hours, e.g. '1-5 09:00-12:00'; repeatable",
        )
        parser.add_argument("--capacity", type=int, default=1)

    def handle(self, *args, **options) -> None:
        date_from, date_to = options["date_from"], options["date_to"]
        if date_to < date_from:
            raise CommandError("--to is before --from")
        weekly = weekly_windows(options["weekly"])
        weeks = [
            (start, min(start + dt.timedelta(days=6), date_to))
            for start in (
                date_from + dt.timedelta(days=7 * n)
                for n in range((date_to - date_from).days // 7 + 1)
            )
        ]
        created = 0
        for start, end in progress(weeks, description="generating slots", stream=self.stdout):
            try:
                created += slot_generate(
                    actor=SYSTEM,
                    clinic_id=options["clinic_id"],
                    service_id=options["service_id"],
                    date_from=start,
                    date_to=end,
                    weekly=weekly,
                    capacity=options["capacity"],
                )
            except ApplicationError as error:
                raise CommandError(f"{error.code}: {error.message} {error.details}") from error
        self.stdout.write(self.style.SUCCESS(f"{created} new slots over {len(weeks)} week(s)."))
