"""`manage.py export_person USER_ID`: everything we hold about a person as one JSON document
(right of access), for support when the person has no booking to pick in the admin (only holds
or waiting-list entries) or asks through support instead of `GET /api/v1/me/data`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from bookings.personal_data import person_data_export


class Command(BaseCommand):
    help = (
        "Print the person's holds, bookings, payments, history, notifications, waiting-list "
        "entries and fair-use override as one JSON document (the same as GET /api/v1/me/data)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("user_id")

    def handle(self, *args, **options) -> None:
        user_id = options["user_id"].strip()
        if not user_id:
            raise CommandError("give the id of a person")
        document = person_data_export(user_id=user_id)
        self.stdout.write(json.dumps(document, indent=2, ensure_ascii=False))
