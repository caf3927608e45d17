"""Admin: a read-only list of holds (staff see their clinics', support all); holds change
only through the API and the expiry job, which keep the slot counters and events in step."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from petpro_booking.core.admin_search import LookupHashSearchMixin
from slots.admin_access import admin_principal, visible_clinic_ids

from .models import Reservation
from .selectors import reservation_list_admin


@admin.register(Reservation)
class ReservationAdmin(LookupHashSearchMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "status",
        "slot_start",
        "clinic_name",
        "user_id",
        "pet_id",
        "expires_at",
        "created_at",
    ]
    list_filter = ["status", "slot__clinic", "slot__service", "expires_at", "created_at"]
    search_fields = ["=id", "=user_id", "=pet_id"]
    # The pet's name is encrypted: searched by its keyed hash (exact name).
    lookup_search_fields = ("pet_name_lookup",)
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    list_select_related = ["slot", "slot__clinic"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reservation]:
        queryset = reservation_list_admin()
        clinic_ids = visible_clinic_ids(request.user)
        if clinic_ids is None:
            return queryset
        return queryset.filter(slot__clinic_id__in=clinic_ids)

    @admin.display(description="slot start", ordering="slot__start_at")
    def slot_start(self, reservation: Reservation):
        return reservation.slot.start_at

    @admin.display(description="clinic", ordering="slot__clinic__name")
    def clinic_name(self, reservation: Reservation) -> str:
        return reservation.slot.clinic.name

    def has_module_permission(self, request: HttpRequest) -> bool:
        return admin_principal(request.user) is not None

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return admin_principal(request.user) is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
