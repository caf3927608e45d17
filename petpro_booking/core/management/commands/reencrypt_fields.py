"""`manage.py reencrypt_fields`: move every encrypted column to the newest key (after putting a
new key first in FIELD_ENCRYPTION_KEYS) and refresh the lookup hashes."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from petpro_booking.core.model_fields import EncryptedTextField, RowsStillLocked, reencrypt_model


class Command(BaseCommand):
    help = "Re-encrypt every encrypted column under the newest FIELD_ENCRYPTION_KEYS key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, **options) -> None:
        locked = []
        for model in apps.get_models():
            if any(isinstance(f, EncryptedTextField) for f in model._meta.concrete_fields):
                try:
                    count = reencrypt_model(model, batch_size=options["batch_size"])
                except RowsStillLocked as exc:  # the other models still go
                    locked.append(str(exc))
                    continue
                self.stdout.write(f"{model._meta.label}: {count} row(s) re-encrypted")
        if locked:
            raise CommandError(" ".join(locked))
