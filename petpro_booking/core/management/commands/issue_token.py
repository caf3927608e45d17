"""`manage.py issue_token --sub ID --role ROLE [--clinic ID]`: print a bearer token."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from petpro_booking.core.auth import issue_token
from petpro_booking.core.principal import ROLES


class Command(BaseCommand):
    help = "Print a JWT for the API signed with JWT_SIGNING_KEY (local use and tests)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sub", required=True, help="user id (the token's subject)")
        parser.add_argument(
            "--role", action="append", required=True, choices=sorted(ROLES), help="repeatable"
        )
        parser.add_argument("--clinic", action="append", default=[], help="clinic id (staff)")
        parser.add_argument("--hours", type=float, default=12.0, help="lifetime in hours")

    def handle(self, *args, **options) -> None:
        if options["hours"] <= 0:
            raise CommandError("--hours must be positive")
        if "clinic_staff" in options["role"] and not options["clinic"]:
            raise CommandError("clinic staff need at least one --clinic")
        token = issue_token(
            sub=options["sub"],
            roles=options["role"],
            clinic_ids=options["clinic"],
            lifetime=dt.timedelta(hours=options["hours"]),
        )
        self.stdout.write(token)
