"""Admin for clinic staff: their clinics' slots, generation from a weekly schedule."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import JSONField, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from petpro_booking.core.admin_access import (
    ClinicScopedAdmin,
    admin_principal,
    selection_too_large,
    visible_clinic_ids,
)
from petpro_booking.core.admin_times import local_time_column
from petpro_booking.core.clock import SERVICE_YEARS, in_service_years, wall_clock_instant
from petpro_booking.core.errors import ApplicationError
from petpro_booking.core.parsers import UntrustedJSONFormField

from . import clinic_sync, services
from .display import clinic_zone, local_label
from .invalidation import clinic_read_model_changed
from .models import CAPACITY_MAX, Clinic, ClinicService, ClinicStaff, Slot, SlotStatus

# Services one "Generate slots" run takes: each may make up to SLOT_GENERATE_MAX_SLOTS slots
# (3,000 in about 1.4 s here), so ten stay well inside the web worker's timeout.
GENERATE_MAX_SERVICES = 10


class ClinicServiceOwned:
    """With CLINIC_SERVICE_URL set the Clinic Service owns clinics and services: read-only here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        if settings.CLINIC_SERVICE_URL:
            return False
        return super().has_add_permission(request)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if settings.CLINIC_SERVICE_URL:
            return False
        return super().has_change_permission(request, obj)  # type: ignore[misc]


class ClinicForm(forms.ModelForm):
    class Meta:
        model = Clinic
        fields = ["id", "name", "timezone", "language", "active", "version"]

    def clean_id(self):
        """A new id the API can name (`/api/v1/clinics/<id>`: no `/`) and a person can type: no
        control characters (the form strips spaces around it). A clinic already stored under
        another id keeps it."""
        value = self.cleaned_data["id"]
        if value == self.instance.pk and not self.instance._state.adding:
            return value
        if "/" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValidationError("No '/' and no control characters in the id.")
        return value

    def clean_timezone(self):
        """An IANA zone, or the field's error (the save refused it: a 500 before)."""
        name = self.cleaned_data["timezone"]
        if not clinic_sync.time_zone_known(name):
            raise ValidationError("Not an IANA time zone, e.g. Europe/Berlin.")
        return name


@admin.register(Clinic)
class ClinicAdmin(ClinicServiceOwned, ClinicScopedAdmin):
    form = ClinicForm
    clinic_field = "id"
    list_display = ["name", "id", "timezone", "active"]
    search_fields = ["name", "id"]
    # Set by the Clinic Service sync, never typed: shown in the clinic's zone, zone written.
    exclude = ["synced_at"]
    readonly_fields = ["synced_local"]
    synced_local = local_time_column(
        "synced_at", "synced from the Clinic Service", zone_of=lambda clinic: clinic.timezone
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Support adds clinics, unless the Clinic Service owns them (ClinicServiceOwned)."""
        principal = admin_principal(request.user)
        return (
            super().has_add_permission(request) and principal is not None and principal.is_support
        )

    def save_model(self, request, obj, form, change) -> None:
        clinic_sync.clinic_upsert(
            clinic_id=obj.id, name=obj.name, timezone=obj.timezone, active=obj.active
        )


def _service_years_only(value):
    """A form's date or time of the years the service keeps, else the field's error."""
    if value is not None and not in_service_years(value):
        low, high = SERVICE_YEARS
        raise ValidationError(f"Give a date between the years {low} and {high}.")
    return value


class GenerateSlotsForm(forms.Form):
    WEEKDAYS = [
        (1, "Monday"),
        (2, "Tuesday"),
        (3, "Wednesday"),
        (4, "Thursday"),
        (5, "Friday"),
        (6, "Saturday"),
        (7, "Sunday"),
    ]
    date_from = forms.DateField(help_text="clinic-local date, inclusive (YYYY-MM-DD)")
    date_to = forms.DateField(help_text="clinic-local date, inclusive (YYYY-MM-DD)")
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple
    )
    start = forms.TimeField(help_text="HH:MM, clinic-local")
    end = forms.TimeField(help_text="HH:MM, clinic-local")
    capacity = forms.IntegerField(min_value=1, max_value=CAPACITY_MAX, initial=1)

    def clean_date_from(self):
        return _service_years_only(self.cleaned_data["date_from"])

    def clean_date_to(self):
        return _service_years_only(self.cleaned_data["date_to"])

    def __init__(self, *args, zones: list[str], **kwargs) -> None:
        """`zones`: the time zones of the selected services' clinics, written on the form."""
        super().__init__(*args, **kwargs)
        for name in ("start", "end"):
            # Help text is rendered as HTML: the zone names, stored strings, are escaped.
            self.fields[name].help_text = escape(f"HH:MM, clinic time ({', '.join(zones)})")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("start") and cleaned.get("end") and cleaned["end"] <= cleaned["start"]:
            raise ValidationError({"end": "Must be after start."})
        return cleaned


@admin.register(ClinicService)
class ClinicServiceAdmin(ClinicServiceOwned, ClinicScopedAdmin):
    list_display = [
        "name",
        "clinic",
        "duration_minutes",
        "price",
        "currency",
        "requires_payment",
        "min_notice_minutes",
        "booking_horizon_days",
    ]
    list_filter = ["clinic", "requires_payment"]
    search_fields = ["name", "id"]
    actions = ["generate_slots"]
    formfield_overrides = {JSONField: {"form_class": UntrustedJSONFormField}}
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "clinic",
                    "name",
                    "duration_minutes",
                    "price",
                    "currency",
                    "species",
                    "requires_payment",
                    "cancellation_window_hours",
                    "active",
                ]
            },
        ),
        (
            "Booking rules (empty: the BOOKING_* setting applies)",
            {
                "fields": [
                    "min_notice_minutes",
                    "booking_horizon_days",
                    "buffer_before_minutes",
                    "buffer_after_minutes",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.slots.exists():
            readonly.append("clinic")  # its slots are at its clinic (services.clinic_service_save)
        return readonly

    def save_model(self, request, obj, form, change) -> None:
        principal = admin_principal(request.user)
        if principal is None:
            raise PermissionDenied
        try:
            services.clinic_service_save(actor=principal, service=obj)
        except ApplicationError as exc:
            # Lost a race after the form was shown (a slot added meanwhile): say so.
            self.message_user(request, f"Not saved: {exc.message}", messages.ERROR)

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        clinic_read_model_changed(clinic_id=obj.clinic_id)

    @admin.action(description="Generate slots from a weekly schedule")
    def generate_slots(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        principal = admin_principal(request.user)
        if principal is None:
            raise PermissionDenied
        if selection_too_large(self, request, queryset, "services", GENERATE_MAX_SERVICES):
            return None
        zones = sorted(set(queryset.values_list("clinic__timezone", flat=True)))
        if "apply" in request.POST:
            form = GenerateSlotsForm(request.POST, zones=zones)
            if form.is_valid():
                data = form.cleaned_data
                weekly = [
                    services.WeeklyWindow(weekday=day, start=data["start"], end=data["end"])
                    for day in data["weekdays"]
                ]
                for service in queryset:
                    try:
                        created = services.slot_generate(
                            actor=principal,
                            clinic_id=service.clinic_id,
                            service_id=service.id,
                            date_from=data["date_from"],
                            date_to=data["date_to"],
                            weekly=weekly,
                            capacity=data["capacity"],
                        )
                    except ApplicationError as exc:
                        self.message_user(
                            request, f"{service}: {exc.message} {exc.details}", messages.ERROR
                        )
                        continue
                    self.message_user(request, f"{service}: {created} slots created.")
                return None
        else:
            form = GenerateSlotsForm(zones=zones)
        return TemplateResponse(
            request,
            "admin/slots/generate_slots.html",
            {
                **self.admin_site.each_context(request),
                "title": "Generate slots from a weekly schedule",
                "form": form,
                "services": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )


class ClinicWallClockField(forms.SplitDateTimeField):
    """A date and a time as the clinic's wall clock shows them, left naive: Django would read
    them in the server's zone (UTC), but only the form knows the clinic (chosen with them)."""

    widget = AdminSplitDateTime

    def compress(self, data_list):
        if not data_list:
            return None
        if data_list[0] in self.empty_values:
            raise ValidationError(self.error_messages["invalid_date"], code="invalid_date")
        if data_list[1] in self.empty_values:
            raise ValidationError(self.error_messages["invalid_time"], code="invalid_time")
        return dt.datetime.combine(*data_list)


class ClinicWithZoneChoiceField(forms.ModelChoiceField):
    """A clinic offered with the zone its times are typed in: `Jakarta Pets (Asia/Jakarta)`."""

    def label_from_instance(self, obj) -> str:
        return f"{obj.name} ({obj.timezone})"


class SlotForm(forms.ModelForm):
    """Carries the version the user opened; a stale save is refused.

    A new slot's start and end are typed in the chosen clinic's time zone, written next to
    them: `clean` turns them into instants. A time the clocks skip that day is an error on its
    field; a time they show twice (when they go back) is its first occurrence, as when slots
    are generated from a weekly schedule.
    """

    seen_version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    start_at = ClinicWallClockField(label="Starts")
    end_at = ClinicWallClockField(label="Ends")
    capacity = forms.IntegerField(min_value=1, max_value=CAPACITY_MAX, initial=1)

    def clean_start_at(self):
        return _service_years_only(self.cleaned_data.get("start_at"))

    def clean_end_at(self):
        return _service_years_only(self.cleaned_data.get("end_at"))

    class Meta:
        model = Slot
        fields = ["clinic", "service", "start_at", "end_at", "capacity", "status"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["seen_version"].initial = self.instance.version
        clinic_field = self.fields.get("clinic")
        if isinstance(clinic_field, forms.ModelChoiceField) and "start_at" in self.fields:
            self._name_the_zones(clinic_field)

    def _name_the_zones(self, clinic_field: forms.ModelChoiceField) -> None:
        """The start and end say which zone they are read in."""
        clinics = clinic_field.queryset if clinic_field.queryset is not None else Clinic.objects
        zones = sorted(set(clinics.values_list("timezone", flat=True)))
        if len(zones) == 1:
            where = f"Clinic time ({zones[0]})"
        else:
            where = "Clinic time: in the chosen clinic's time zone, written after its name"
        for name in ("start_at", "end_at"):
            self.fields[name].help_text = escape(where)  # rendered as HTML

    def clean(self):
        cleaned = super().clean()
        if "start_at" in self.fields:
            self._read_in_clinic_time(cleaned)
        if self.instance.pk:
            current = Slot.objects.filter(pk=self.instance.pk).values_list("version", flat=True)
            seen = cleaned.get("seen_version")
            if seen is not None and current and current[0] != seen:
                raise ValidationError(
                    "This slot changed since you opened it (someone held, booked or edited "
                    "it). Reload the page and apply your change again."
                )
            capacity = cleaned.get("capacity")
            taken = self.instance.booked_count + self.instance.held_count
            if capacity is not None and capacity < taken:
                raise ValidationError({"capacity": f"{taken} places are held or booked."})
        if self.instance._state.adding and not self.errors:  # (a new slot has its pk already)
            self._check_new_slot(cleaned)
        return cleaned

    # The services' names of a refused slot's fields, and the form's.
    _FIELD_OF = {"clinic_id": "clinic", "service_id": "service"}

    def _check_new_slot(self, cleaned: dict) -> None:
        """What the slot service would refuse (a neighbour's buffer, the same start, a service
        the clinic does not offer) is an error of this form, shown with the form again: the
        admin then neither logs an addition nor says it saved one."""
        clinic, service = cleaned.get("clinic"), cleaned.get("service")
        start, end = cleaned.get("start_at"), cleaned.get("end_at")
        if clinic is None or service is None or start is None or end is None:
            return
        try:
            services.slot_create_check(
                clinic_id=clinic.pk, service_id=service.pk, start_at=start, end_at=end
            )
        except ApplicationError as exc:
            placed = False
            for name, problems in exc.details.items():
                field = self._FIELD_OF.get(name, name)
                if field in self.fields and isinstance(problems, list):
                    self.add_error(field, problems)
                    placed = True
            if not placed:
                self.add_error(None, exc.message)

    def _read_in_clinic_time(self, cleaned: dict) -> None:
        """The wall-clock start and end become instants in the chosen clinic's zone."""
        clinic = cleaned.get("clinic")
        for name in ("start_at", "end_at"):
            wall = cleaned.get(name)
            if wall is None:
                continue
            if clinic is None:
                self.add_error(name, "Choose the clinic: this time is read in its time zone.")
                continue
            instant = wall_clock_instant(wall, clinic_zone(clinic.timezone))
            if instant is None:
                self.add_error(
                    name,
                    f"{wall:%Y-%m-%d %H:%M} does not exist in {clinic.timezone}: the clocks "
                    "go forward over it that day (daylight saving time). Choose a time "
                    "before or after the change.",
                )
                continue
            cleaned[name] = instant
        start, end = cleaned.get("start_at"), cleaned.get("end_at")
        if start is not None and end is not None and end <= start and "end_at" not in self.errors:
            self.add_error("end_at", "Must be after the start.")


@admin.register(Slot)
class SlotAdmin(ClinicScopedAdmin):
    form = SlotForm
    list_display = [
        "starts_local",
        "clinic",
        "service_name",
        "capacity",
        "booked_count",
        "held_count",
        "available",
        "status",
        "version",
    ]
    list_filter = ["clinic", "service", "status", ("start_at", admin.DateFieldListFilter)]
    date_hierarchy = "start_at"
    list_select_related = ["clinic", "service"]
    actions = ["close_slots", "cancel_slot_visits"]

    @admin.display(description="Starts (clinic time)", ordering="start_at")
    def starts_local(self, slot: Slot) -> str:
        return local_label(slot.start_at, slot.clinic.timezone)

    @admin.display(description="Service", ordering="service__name")
    def service_name(self, slot: Slot) -> str:
        return slot.service.name

    @admin.display(description="Available")
    def available(self, slot: Slot) -> int:
        return slot.available_capacity

    # An existing slot's start and end are fixed (only capacity and status change): its page
    # shows them in the clinic's zone, the zone written.
    start_local = local_time_column(
        "start_at", "Starts (clinic time)", zone_of=lambda slot: slot.clinic.timezone
    )
    end_local = local_time_column(
        "end_at", "Ends (clinic time)", zone_of=lambda slot: slot.clinic.timezone
    )

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """The page renders in the clinic's zone: an existing slot's, or on the add form the
        one zone of the clinics this user may choose (the admin's "Now" then gives the
        clinic's wall-clock time).

        Not in the admin's one transaction around a save (Django's own changeform_view): the
        save goes through the slot services, whose slot-write gateway opens a durable
        SERIALIZABLE transaction of its own, which cannot nest in another."""
        zone_name = self._page_zone(request, object_id)
        if zone_name is None:
            return self._changeform_view(request, object_id, form_url, extra_context)
        with timezone.override(clinic_zone(zone_name)):
            response = self._changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()
        return response

    def _page_zone(self, request: HttpRequest, object_id: str | None) -> str | None:
        if object_id:
            slot = self.get_object(request, object_id)
            return slot.clinic.timezone if slot is not None else None
        clinic_ids = visible_clinic_ids(request.user)
        clinics = Clinic.objects.order_by()
        if clinic_ids is not None:
            clinics = clinics.filter(id__in=clinic_ids)
        zones = set(clinics.values_list("timezone", flat=True).distinct()[:2])
        return zones.pop() if len(zones) == 1 else None

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "clinic":
            kwargs["form_class"] = ClinicWithZoneChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        readonly = ["booked_count", "held_count", "version"]  # the id is not editable at all
        if obj is not None:  # only capacity and status change after creation
            readonly += ["clinic", "service", "start_at", "end_at", "start_local", "end_local"]
        return readonly

    def get_fields(self, request: HttpRequest, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None:
            return fields
        return [name for name in fields if name not in ("start_at", "end_at")]  # UTC, unnamed

    def save_model(self, request, obj, form, change) -> None:
        principal = admin_principal(request.user)
        if principal is None:
            raise PermissionDenied
        try:
            if change:
                updated = services.slot_update(
                    actor=principal,
                    slot_id=obj.pk,
                    expected_version=form.cleaned_data.get("seen_version"),
                    capacity=form.cleaned_data["capacity"],
                    status=form.cleaned_data["status"],
                )
            else:
                updated = services.slot_create(
                    actor=principal,
                    clinic_id=obj.clinic_id,
                    service_id=obj.service_id,
                    start_at=obj.start_at,
                    end_at=obj.end_at,
                    capacity=obj.capacity,
                )
        except ApplicationError as exc:
            # Lost a race after form validation (a neighbour added meanwhile, the slot busy):
            # say so, and neither log nor announce a save (`log_*`, `response_*` below).
            self.message_user(request, f"Not saved: {exc.message}", messages.ERROR)
            obj._not_saved = True
            return
        obj.pk, obj.version = updated.pk, updated.version

    def log_addition(self, request, obj, message):
        if getattr(obj, "_not_saved", False):
            return None
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        if getattr(obj, "_not_saved", False):
            return None
        return super().log_change(request, obj, message)

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(obj, "_not_saved", False):  # back to the empty form, the error above it
            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if getattr(obj, "_not_saved", False):  # back to the slot as it is now
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    @admin.action(description="Close selected slots to new holds")
    def close_slots(self, request: HttpRequest, queryset: QuerySet) -> None:
        principal = admin_principal(request.user)
        if principal is None:
            raise PermissionDenied
        open_slots = queryset.filter(status=SlotStatus.OPEN)
        if selection_too_large(self, request, open_slots, "open slots"):
            return
        closed, busy = 0, []
        for slot in open_slots:
            try:
                services.slot_close(actor=principal, slot_id=slot.pk)
            except ApplicationError as exc:  # e.g. a hold being written on it: try it again
                busy.append(f"{slot}: {exc.message}")
                continue
            closed += 1
        self.message_user(request, f"{closed} slots closed.")
        if busy:
            self.message_user(
                request, f"Not closed, try again: {'; '.join(busy[:10])}", messages.ERROR
            )

    @admin.action(description="Cancel the visits of the selected slot (asks for a reason)")
    def cancel_slot_visits(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Opens the bookings admin's page for it (the bookings app owns cancelling)."""
        slots = list(queryset[:2])
        if len(slots) != 1:
            self.message_user(request, "Select exactly one slot.", messages.ERROR)
            return None
        return HttpResponseRedirect(
            reverse("admin:bookings_booking_cancel_slot_visits", args=[slots[0].pk])
        )


@admin.register(ClinicStaff)
class ClinicStaffAdmin(admin.ModelAdmin):
    list_display = ["user", "clinic"]
    list_filter = ["clinic"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser
