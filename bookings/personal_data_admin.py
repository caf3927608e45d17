"""Support admin actions on bookings for the owner's personal data: export it as one JSON
document, erase it (after a confirmation page). Support only; they call the same functions as
the API and `manage.py erase_person`."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from petpro_booking.core.admin_access import (
    NoFormsAdmin,
    SupportOnlyAdmin,
    admin_principal,
    selection_too_large,
)
from petpro_booking.core.admin_times import local_time_column
from petpro_booking.core.errors import ApplicationError

from .models import ErasureRequest
from .personal_data import person_data_export, person_erase


class ErasureConfirmForm(forms.Form):
    confirm = forms.BooleanField(
        label="Erase these owners' personal data",
        help_text="Cancels their future bookings, then pseudonymises everything else. "
        "It cannot be undone.",
    )


def _support(request: HttpRequest):
    principal = admin_principal(request.user)
    if principal is None or not principal.is_support:
        raise PermissionDenied
    return principal


# Owners one export or erasure run takes: an erasure cancels, pseudonymises and forgets each
# owner in several transactions, so a "select all" stays well inside the web worker's timeout.
PERSONAL_DATA_MAX_OWNERS = 20


def _owners(queryset: QuerySet) -> list[str]:
    return sorted(set(queryset.values_list("user_id", flat=True)))


def _too_many_owners(modeladmin, request: HttpRequest, queryset: QuerySet) -> bool:
    owners = queryset.order_by().values("user_id").distinct()
    return selection_too_large(modeladmin, request, owners, "owners", PERSONAL_DATA_MAX_OWNERS)


@admin.action(description="Export the owners' personal data (JSON, support)")
def export_owner_data(modeladmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    _support(request)
    if _too_many_owners(modeladmin, request, queryset):
        return None
    document = {"owners": [person_data_export(user_id=u) for u in _owners(queryset)]}
    response = HttpResponse(
        json.dumps(document, indent=2, ensure_ascii=False), content_type="application/json"
    )
    response["Content-Disposition"] = 'attachment; filename="personal-data.json"'
    return response


@admin.action(description="Erase the owners' personal data (support, asks to confirm)")
def erase_owner_data(modeladmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    principal = _support(request)
    if _too_many_owners(modeladmin, request, queryset):
        return None
    if "apply" in request.POST:
        form = ErasureConfirmForm(request.POST)
        if form.is_valid():
            for user_id in _owners(queryset):
                if user_id.startswith("erased-"):
                    continue
                try:
                    audit = person_erase(actor=principal, user_id=user_id)
                except ApplicationError as exc:
                    # A booking or hold of theirs changed meanwhile, or its slot was busy: what
                    # was cancelled stays cancelled; the request stays, and the erasure_resume
                    # job (or erasing again) finishes the rest.
                    minutes = -(-settings.ERASURE_RESUME_AFTER_SECONDS // 60) + 5
                    modeladmin.message_user(
                        request,
                        f"Owner {user_id} not erased yet: {exc.message} "
                        f"It is finished automatically within about {minutes} minutes, "
                        "or run the erasure again for them.",
                        messages.ERROR,
                    )
                    continue
                modeladmin.message_user(
                    request,
                    f"Owner erased (audit {audit.pk}, now {audit.pseudonym}).",
                    messages.SUCCESS,
                )
            return None
    else:
        form = ErasureConfirmForm()
    bookings = list(queryset.select_related("slot").order_by("slot__start_at", "id"))
    return modeladmin._form_page(
        request, bookings, form, action="erase_owner_data", title="Erase personal data"
    )


@admin.register(ErasureRequest)
class ErasureRequestAdmin(NoFormsAdmin, SupportOnlyAdmin):  # written by the erasure only
    """Erasures asked for and not finished (support, read-only): the `erasure_resume` job
    finishes them; the attempts that stopped and the last error code say why one is here."""

    list_display = ["user_id", "requested_by_id", "requested_local", "attempts", "last_error"]
    search_fields = ["user_id"]
    # A person belongs to no clinic: UTC, written.
    requested_local = local_time_column("requested_at", "requested", zone_of=lambda asked: None)
