"""`manage.py expire_holds`: run the hold expiry job by hand (the same code as the beat job)."""

from django.core.management.base import BaseCommand

from reservations.services import EXPIRY_BATCH_SIZE, reservation_expire_due


class Command(BaseCommand):
    help = "Expire held reservations past their expiry and give their units back."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=EXPIRY_BATCH_SIZE)

    def handle(self, *args, batch_size: int, **options) -> None:
        expired = reservation_expire_due(batch_size=batch_size)
        self.stdout.write(f"Expired {expired} hold(s).")
