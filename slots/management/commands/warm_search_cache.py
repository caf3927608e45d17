"""`manage.py warm_search_cache [--all]`: compute the cached week view of every active clinic and
service now (the deploy runs it with --all; the beat job does the changed ones every minute)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from slots.search_warming import search_cache_warm


class Command(BaseCommand):
    help = "Warm the search cache: first page of each active clinic/service for the next 7 days."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            dest="everything",
            help="Every active clinic, not only those whose slots changed since the last run.",
        )

    def handle(self, *args, everything: bool = False, **options) -> None:
        warmed = search_cache_warm(everything=everything)
        self.stdout.write(f"warmed the week view of {warmed} clinic(s)")
