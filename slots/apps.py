"""App config for slots: tells the admin access rules which clinics a Django user staffs, and
the admin's time display which zone each clinic is in."""

from django.apps import AppConfig


class SlotsConfig(AppConfig):
    name = "slots"
    verbose_name = "Clinics and slots"

    def ready(self) -> None:
        from petpro_booking.core.admin_access import on_staff_clinics
        from petpro_booking.core.admin_times import on_clinic_zones

        from .models import Clinic, ClinicStaff

        on_staff_clinics(
            lambda user_pk: ClinicStaff.objects.filter(user_id=user_pk).values_list(
                "clinic_id", flat=True
            )
        )
        on_clinic_zones(
            lambda clinic_ids: dict(
                Clinic.objects.filter(id__in=clinic_ids).values_list("id", "timezone")
            )
        )
