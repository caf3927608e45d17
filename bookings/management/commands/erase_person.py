"""`manage.py erase_person USER_ID --by NAME`: erase a person's data (right to erasure)."""

from __future__ import annotations

import json
import logging

from django.core.management.base import BaseCommand, CommandError

from bookings.personal_data import person_erase
from bookings.personal_data_archive import person_archive_erase
from petpro_booking.core.principal import Principal

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Cancel the person's future bookings, then pseudonymise their bookings, holds, "
        "history, payments, events and idempotency records; publish PersonErased; audit it. "
        "Then rewrite the event archive's files that name them (RETENTION_EVENTS_ARCHIVE_DIR, "
        "when set here; else the hourly job of the worker that has it)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("user_id")
        parser.add_argument(
            "--by", required=True, help="who asks for it (support agent), kept in the audit row"
        )

    def handle(self, *args, **options) -> None:
        user_id = options["user_id"].strip()
        if not user_id or user_id.startswith("erased-"):
            raise CommandError("give the id of a person who has not been erased")
        if len(user_id) > 64:
            raise CommandError("no person has an id longer than 64 characters")
        actor = Principal(sub=f"cli:{options['by']}"[:64], roles=frozenset({"support"}))
        # Progress on stderr: stdout is the JSON result scripts read.
        audit = person_erase(actor=actor, user_id=user_id, progress_to=self.stderr)
        try:
            archive: dict[str, object] = dict(person_archive_erase(progress_to=self.stderr))
        except Exception as exc:  # the erasure is done; the hourly job retries the archive
            logger.exception("erase_person: the event archive pass failed")
            archive = {"error": f"{type(exc).__name__}: {exc}", "retried_by": "erasure_archive"}
        self.stdout.write(
            json.dumps(
                {
                    "audit_id": audit.pk,
                    "pseudonym": audit.pseudonym,
                    "counts": audit.counts,
                    "archive": archive,
                }
            )
        )
