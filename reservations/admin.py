"""Admin: a read-only list of holds (staff see their clinics', support all); holds change
only through the API and the expiry job, which keep the slot counters and events in step."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations.users.names import people_names
from petpro_booking.core.admin_access import (
    NoFormsAdmin,
    SupportOnlyAdmin,
    admin_principal,
    visible_clinic_ids,
)
from petpro_booking.core.admin_search import IndexedSearchMixin
from petpro_booking.core.admin_times import local_time_column
from slots.display import local_label

from .models import OwnerLimit, Reservation
from .selectors import reservation_list_admin


def _clinic_zone(reservation: Reservation) -> str:
    return reservation.slot.clinic.timezone


@admin.register(Reservation)
class ReservationAdmin(NoFormsAdmin, IndexedSearchMixin, admin.ModelAdmin):
    list_display = [
        "slot_start",
        "status",
        "clinic_name",
        "service_name",
        "owner_name",
        "pet_name",
        "group_id",
        "expires_local",
        "created_local",
        "id",
    ]
    list_filter = ["status", "slot__clinic", "slot__service", "expires_at", "created_at"]
    # Each compared by equality through its own index (core/admin_search.py).
    exact_search_fields = ("id", "user_id", "pet_id", "group_id")
    # The pet's name is encrypted: searched by its keyed hash (exact name).
    lookup_search_fields = ("pet_name_lookup",)
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    list_select_related = ["slot", "slot__clinic", "slot__service"]
    show_full_result_count = False
    # The hold's page: its moments in the clinic's zone (the keyed hash of the pet's name
    # is for search only).
    readonly_fields = (
        "id",
        "slot",
        "status",
        "user_id",
        "pet_id",
        "pet_name",
        "expires_local",
        "version",
        "created_local",
        "updated_local",
    )
    fields = readonly_fields

    expires_local = local_time_column("expires_at", "expires (clinic time)", zone_of=_clinic_zone)
    created_local = local_time_column("created_at", "created (clinic time)", zone_of=_clinic_zone)
    updated_local = local_time_column("updated_at", "updated (clinic time)", zone_of=_clinic_zone)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reservation]:
        queryset = reservation_list_admin()
        clinic_ids = visible_clinic_ids(request.user)
        if clinic_ids is None:
            return queryset
        return queryset.filter(slot__clinic_id__in=clinic_ids)

    @admin.display(description="slot start (clinic time)", ordering="slot__start_at")
    def slot_start(self, reservation: Reservation) -> str:
        return local_label(reservation.slot.start_at, reservation.slot.clinic.timezone)

    @admin.display(description="service", ordering="slot__service__name")
    def service_name(self, reservation: Reservation) -> str:
        return reservation.slot.service.name

    def get_changelist_instance(self, request: HttpRequest):
        """Each owner of the page looked up once."""
        changelist = super().get_changelist_instance(request)
        names = people_names(hold.user_id for hold in changelist.result_list)
        for hold in changelist.result_list:
            hold.people = names
        return changelist

    @admin.display(description="owner")
    def owner_name(self, reservation: Reservation) -> str:
        names = getattr(reservation, "people", None) or people_names([reservation.user_id])
        return names.owner(reservation.user_id)

    @admin.display(description="clinic", ordering="slot__clinic__name")
    def clinic_name(self, reservation: Reservation) -> str:
        return reservation.slot.clinic.name

    def has_module_permission(self, request: HttpRequest) -> bool:
        return admin_principal(request.user) is not None

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return admin_principal(request.user) is not None


@admin.register(OwnerLimit)
class OwnerLimitAdmin(SupportOnlyAdmin):
    """Support raises (or lowers) the fair-use limits of one owner; empty keeps the default."""

    list_display = [
        "user_id",
        "max_live_holds",
        "max_unpaid_bookings",
        "max_bookings_per_pet_per_day",
        "reason",
        "updated_local",
    ]
    search_fields = ["user_id"]
    # An owner's limits belong to no clinic: UTC, written.
    updated_local = local_time_column("updated_at", "updated", zone_of=lambda limit: None)
