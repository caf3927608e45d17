"""`manage.py check_consistency [--repair]`: the invariants as JSON on stdout; exit code 0 when
every one holds, 1 when any is broken (after the repair, with --repair)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from bookings.consistency import consistency_check


class Command(BaseCommand):
    help = (
        "Check slot counters and capacity, one booking per reservation, booking history and "
        "events, payments, the outbox's age and overdue holds. Prints JSON; exits 1 on any "
        "violation. --repair corrects slot counters only (through the slot locks, recorded "
        "as SlotUpdated events and in the log) and refuses everything else."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Set wrong slot counters to the rows they count; nothing else is changed.",
        )

    def handle(self, *args, repair: bool = False, **options) -> None:
        # Progress on stderr: stdout is the JSON report scripts read.
        report = consistency_check(repair=repair, progress_to=self.stderr)
        self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
        if not report.ok:
            broken = sorted(name for name, check in report.checks.items() if not check.ok)
            raise CommandError(
                f"{report.violations} violation(s) in: {', '.join(broken)}", returncode=1
            )
