"""Admin: each slot's waiting line and the offers made, oldest first (filter by slot); staff
of the slot's clinic and support remove entries with a reason, through the service."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from petpro_booking.core.admin_access import (
    ClinicScopedAdmin,
    admin_principal,
    selection_too_large,
)
from petpro_booking.core.admin_search import IndexedSearchMixin
from petpro_booking.core.admin_times import local_time_column
from petpro_booking.core.errors import ApplicationError
from slots.display import local_label

from . import services
from .models import WaitlistEntry

# An entry's moments, shown through the clinic-time columns below instead.
ENTRY_MOMENTS = {
    "joined_at": "joined_local",
    "offered_at": "offered_local",
    "offer_expires_at": "offer_expires_local",
    "ended_at": "ended_local",
}


def _clinic_zone(entry: WaitlistEntry) -> str:
    return entry.slot.clinic.timezone


class RemoveForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Written into the entry and its WaitlistLeft event.",
    )


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(IndexedSearchMixin, ClinicScopedAdmin):
    clinic_field = "slot__clinic_id"
    list_display = [
        "slot_start",
        "status",
        "user_id",
        "pet_name",
        "joined_local",
        "offered_local",
        "offer_expires_local",
        "reservation",
        "ended_local",
        "end_reason",
    ]
    list_filter = ["status", "slot__clinic", "slot__service"]
    # Each compared by equality through its own index (core/admin_search.py); names are
    # encrypted and not searched.
    exact_search_fields = ("slot__id", "user_id", "pet_id")
    ordering = ["slot__start_at", "joined_at", "id"]  # one slot's line reads oldest first
    list_select_related = ["slot", "slot__clinic"]
    readonly_fields = tuple(
        ENTRY_MOMENTS.get(field.name, field.name) for field in WaitlistEntry._meta.fields
    )
    fields = readonly_fields
    actions = ["remove_entries"]

    joined_local = local_time_column("joined_at", "joined", zone_of=_clinic_zone)
    offered_local = local_time_column("offered_at", "offered", zone_of=_clinic_zone)
    offer_expires_local = local_time_column(
        "offer_expires_at", "offer expires", zone_of=_clinic_zone
    )
    ended_local = local_time_column("ended_at", "ended", zone_of=_clinic_zone)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The entry's page reads its clinic's zone too.
        return super().get_queryset(request).select_related("slot__clinic")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # owners join through the API

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # read-only; the action changes entries

    @admin.display(description="slot start (clinic time)", ordering="slot__start_at")
    def slot_start(self, entry: WaitlistEntry) -> str:
        return local_label(entry.slot.start_at, entry.slot.clinic.timezone)

    @admin.action(description="Remove selected entries from the waiting list (asks for a reason)")
    def remove_entries(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        principal = admin_principal(request.user)
        if principal is None or selection_too_large(self, request, queryset, "entries"):
            return None
        form = RemoveForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for entry in queryset:
                try:
                    services.waitlist_remove(
                        actor=principal, entry_id=entry.id, reason=form.cleaned_data["reason"]
                    )
                except ApplicationError as exc:
                    self.message_user(request, f"{entry.id}: {exc.message}", messages.ERROR)
                else:
                    self.message_user(request, f"{entry.id}: removed.", messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/waitlist/remove_entries.html",
            {
                **self.admin_site.each_context(request),
                "title": "Remove from the waiting list",
                "form": form,
                "entries": list(queryset.select_related("slot__clinic")),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )
