"""`manage.py refresh_clinics [--clinic ID ...]`: re-read clinics and their services from the
Clinic Service into the read-model (all known clinics by default; given ids are fetched even
if new). Exits 1 if any clinic could not be refreshed."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from slots.clinic_sync import clinics_refresh


class Command(BaseCommand):
    help = "Refresh clinics and their services from the Clinic Service (CLINIC_SERVICE_URL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--clinic",
            action="append",
            dest="clinic_ids",
            metavar="ID",
            help="Only this clinic (repeatable); fetched even if the read-model lacks it.",
        )

    def handle(self, *args, clinic_ids: list[str] | None = None, **options) -> None:
        if not settings.CLINIC_SERVICE_URL:
            self.stdout.write(
                "CLINIC_SERVICE_URL is not set: the local tables are the source; nothing to do."
            )
            return
        report = clinics_refresh(clinic_ids=clinic_ids)
        self.stdout.write(
            f"refreshed {report.refreshed}, unknown to the Clinic Service {report.unknown}, "
            f"failed {report.failed}"
        )
        if report.failed:
            raise CommandError(f"{report.failed} clinic(s) could not be refreshed; see the log.")
