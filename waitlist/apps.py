"""App config of the waiting list: registers its "unit freed" hook with the slot-write gateway."""

from django.apps import AppConfig


class WaitlistConfig(AppConfig):
    name = "waitlist"

    def ready(self) -> None:
        from slots.locking import on_unit_freed

        from .services import waitlist_unit_freed

        on_unit_freed(waitlist_unit_freed)
