"""App config for slots: tells the admin access rules which clinics a Django user staffs."""

from django.apps import AppConfig


class SlotsConfig(AppConfig):
    name = "slots"
    verbose_name = "Clinics and slots"

    def ready(self) -> None:
        from petpro_booking.core.admin_access import on_staff_clinics

        from .models import ClinicStaff

        on_staff_clinics(
            lambda user_pk: ClinicStaff.objects.filter(user_id=user_pk).values_list(
                "clinic_id", flat=True
            )
        )
