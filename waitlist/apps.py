"""App config of the waiting list: registers its "unit freed" hook with the slot-write gateway
and its part of a person's data with the export and erasure (bookings/personal_data.py)."""

from django.apps import AppConfig


class WaitlistConfig(AppConfig):
    name = "waitlist"

    def ready(self) -> None:
        from bookings.personal_data import PersonDataPart, on_person_data
        from slots.locking import on_unit_freed

        from .personal_data import (
            waitlist_aggregates,
            waitlist_erase,
            waitlist_export,
            waitlist_release,
        )
        from .services import waitlist_units_freed

        on_unit_freed(waitlist_units_freed)
        on_person_data(
            PersonDataPart(
                export=waitlist_export,
                release=waitlist_release,
                erase=waitlist_erase,
                aggregates=waitlist_aggregates,
            )
        )
