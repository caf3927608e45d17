"""Admin for support and clinic staff: find bookings, and cancel, reschedule, complete or mark
them no-show through the same services as the API (reason asked, history and events written).

Booking fields are read-only here: every change goes through an action, so nothing bypasses
the transition table, the counters or the history. Each action form carries the version of
every booking it shows; a booking changed meanwhile is refused, not overwritten.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from integrations.users.names import PeopleNames, people_names
from petpro_booking.core.admin_access import (
    ClinicScopedAdmin,
    NoFormsAdmin,
    admin_principal,
    selection_too_large,
)
from petpro_booking.core.admin_search import IndexedSearchMixin
from petpro_booking.core.admin_times import local_time_column
from petpro_booking.core.errors import ApplicationError, VersionConflict
from petpro_booking.core.http import uuid_or_none, version_or_none
from petpro_booking.core.principal import Principal
from slots.display import local_label
from slots.models import Slot, SlotStatus

from . import services
from .backoffice.selectors import names_annotated
from .models import Booking, BookingHistory, PaymentRecord
from .personal_data_admin import erase_owner_data, export_owner_data
from .selectors import owner_no_shows


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


HISTORY_FIELDS = ("at", "from_status", "to_status", "actor_type", "actor_id", "reason")
PAYMENT_FIELDS = ("payment_id", "status", "amount", "currency", "idempotency_key", "updated_at")
BOOKING_FIELDS = (
    "reference",
    "status",
    "slot",
    "reservation",
    "clinic_id",
    "service_id",
    "user_id",
    "pet_id",
    "group_id",
    "amount",
    "currency",
    "version",
    "created_at",
    "updated_at",
)


class BookingHistoryInline(ReadOnlyInline):
    model = BookingHistory
    fields = HISTORY_FIELDS
    readonly_fields = HISTORY_FIELDS
    ordering = ["at", "id"]


class PaymentRecordInline(ReadOnlyInline):
    model = PaymentRecord
    show_change_link = True  # its page has the support action "re-check with the provider"
    fields = PAYMENT_FIELDS
    readonly_fields = PAYMENT_FIELDS


class BookingActionForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=1000,
        help_text="Written into the booking's history and its event.",
    )


class SlotChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        free = obj.available_capacity
        return f"{local_label(obj.start_at, obj.clinic.timezone)}, {free} free"


class RescheduleForm(BookingActionForm):
    slot = SlotChoiceField(
        queryset=Slot.objects.none(), help_text="An open slot of the same clinic and service."
    )

    def __init__(self, *args, booking: Booking, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["slot"]
        assert isinstance(field, SlotChoiceField)
        field.queryset = (
            Slot.objects.filter(
                clinic_id=booking.clinic_id,
                service_id=booking.service_id,
                status=SlotStatus.OPEN,
                start_at__gt=timezone.now(),
            )
            .exclude(id=booking.slot_id)
            .select_related("clinic")
            .order_by("start_at")
        )


@admin.register(Booking)
class BookingAdmin(NoFormsAdmin, IndexedSearchMixin, ClinicScopedAdmin):
    # Changes happen only through the actions below (services): NoFormsAdmin.
    list_display = [
        "reference_link",
        "status",
        "slot_start",
        "clinic_name",
        "service_name",
        "owner_name",
        "pet_name",
        "amount",
        "currency",
        "created_local",
    ]
    list_filter = [
        "status",
        "clinic_id",
        ("slot__start_at", admin.DateFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    # Each compared by equality through its own index (core/admin_search.py).
    exact_search_fields = ("reference", "user_id", "pet_id", "clinic_id", "group_id")
    search_normalisers = {"reference": str.upper}
    # By the pet's (encrypted) name through its keyed hash, exact name.
    lookup_search_fields = ("reservation__pet_name_lookup",)
    list_select_related = ["slot", "slot__clinic"]
    date_hierarchy = "slot__start_at"
    inlines = [BookingHistoryInline, PaymentRecordInline]
    actions = [
        "cancel_bookings",
        "reschedule_booking",
        "complete_bookings",
        "no_show_bookings",
        export_owner_data,
        erase_owner_data,
    ]
    readonly_fields = BOOKING_FIELDS
    fields = BOOKING_FIELDS

    # Names, not ids (the ids are on the booking's page); times in the clinic's zone.
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = names_annotated(super().get_queryset(request))
        if self._is_support(request):  # the owner's no-show score, below
            queryset = queryset.annotate(owner_no_show_count=owner_no_shows())
        return queryset

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """A booking's page is its whole story (bookings.backoffice); no edit form. An id that is
        no booking's (not a UUID, or with a `/` the admin's route takes) gets Django's "does not
        exist" answer."""
        booking_id = uuid_or_none(object_id)
        if request.method == "GET" and booking_id is not None:
            return redirect("backoffice:booking", booking_id=str(booking_id))
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Reference", ordering="reference")
    def reference_link(self, booking: Booking) -> str:
        url = reverse("backoffice:booking", args=[booking.pk])
        return format_html('<a href="{}">{}</a>', url, booking.reference)

    @admin.display(description="Starts (clinic time)", ordering="slot__start_at")
    def slot_start(self, booking: Booking) -> str:
        return local_label(booking.slot.start_at, booking.slot.clinic.timezone)

    created_local = local_time_column(
        "created_at", "Booked (clinic time)", zone_of=lambda booking: booking.slot.clinic.timezone
    )

    @admin.display(description="Clinic", ordering="clinic_name")
    def clinic_name(self, booking: Booking) -> str:
        return getattr(booking, "clinic_name", None) or booking.clinic_id

    @admin.display(description="Service", ordering="service_name")
    def service_name(self, booking: Booking) -> str:
        return getattr(booking, "service_name", None) or booking.service_id

    def get_changelist_instance(self, request: HttpRequest):
        """Each owner of the page looked up once, not once per row and column."""
        changelist = super().get_changelist_instance(request)
        names = people_names(booking.user_id for booking in changelist.result_list)
        for booking in changelist.result_list:
            booking.people = names
        return changelist

    @admin.display(description="Owner")
    def owner_name(self, booking: Booking) -> str:
        return _people_of(booking).owner(booking.user_id)

    @admin.display(description="Pet")
    def pet_name(self, booking: Booking) -> str:
        return _people_of(booking).pet(booking.user_id, booking.pet_id)

    # --- the owner's no-show score (support only: it counts visits at every clinic) ---------

    def get_list_display(self, request: HttpRequest):
        shown = list(super().get_list_display(request))
        if self._is_support(request):
            shown.insert(shown.index("owner_name") + 1, "owner_no_show_score")
        return shown

    @admin.display(description="Owner's no-shows", ordering="owner_no_show_count")
    def owner_no_show_score(self, booking: Booking) -> int:
        """Visits this owner missed, at any clinic (bookings marked no-show)."""
        return getattr(booking, "owner_no_show_count", 0)

    @staticmethod
    def _is_support(request: HttpRequest) -> bool:
        principal = admin_principal(request.user)
        return principal is not None and principal.is_support

    # --- cancel the visits of one slot (linked from the slot admin and the schedule) -------

    def get_urls(self):
        return [
            path(
                "cancel-slot-visits/<uuid:slot_id>/",
                self.admin_site.admin_view(self.cancel_slot_visits_view),
                name="bookings_booking_cancel_slot_visits",
            ),
            *super().get_urls(),
        ]

    def cancel_slot_visits_view(self, request: HttpRequest, slot_id) -> HttpResponse:
        """Staff action "cancel the visits of this slot": asks for a reason, then
        `booking_cancel_slot_visits` closes the slot and cancels each live booking."""
        principal = self._principal(request)
        slot = get_object_or_404(Slot.objects.select_related("clinic", "service"), pk=slot_id)
        if not principal.can_manage_clinic(slot.clinic_id):
            raise PermissionDenied
        bookings = list(
            Booking.objects.filter(slot=slot, status__in=services.HOLDS_A_UNIT).order_by(
                "created_at", "id"
            )
        )
        form = BookingActionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                outcome = services.booking_cancel_slot_visits(
                    actor=principal, slot_id=slot.pk, reason=form.cleaned_data["reason"]
                )
            except ApplicationError as exc:
                self.message_user(request, f"Nothing cancelled: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Slot {slot} closed; {len(outcome.cancelled)} visits cancelled "
                    f"(owners notified, paid ones refunded); {len(outcome.released)} holds "
                    "released.",
                    messages.SUCCESS,
                )
                for booking, refusal in outcome.failed:
                    self.message_user(
                        request,
                        f"{booking.reference}: not cancelled, {refusal.message}",
                        messages.ERROR,
                    )
            return HttpResponseRedirect(reverse("admin:slots_slot_change", args=[slot.pk]))
        return TemplateResponse(
            request,
            "admin/bookings/cancel_slot_visits.html",
            {
                **self.admin_site.each_context(request),
                "title": "Cancel the visits of this slot",
                "slot": slot,
                "bookings": bookings,
                "form": form,
                "opts": self.model._meta,
            },
        )

    # --- actions ---------------------------------------------------------------------------

    def _principal(self, request: HttpRequest) -> Principal:
        principal = admin_principal(request.user)
        if principal is None:
            raise PermissionDenied
        return principal

    def _run(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        action: str,
        title: str,
        change: Callable[..., Booking],
        done: str,
    ) -> HttpResponse | None:
        """Ask for a reason (showing the bookings and the versions they had), then call the
        service for each booking with the version the user saw."""
        principal = self._principal(request)
        if selection_too_large(self, request, queryset, "bookings"):
            return None
        bookings = list(queryset.select_related("slot__clinic").order_by("slot__start_at", "id"))
        if "apply" in request.POST:
            form = BookingActionForm(request.POST)
            if form.is_valid():
                for booking in bookings:
                    self._apply(
                        request,
                        booking,
                        lambda b: change(
                            actor=principal,
                            booking_id=b.pk,
                            reason=form.cleaned_data["reason"],
                            expected_version=_seen_version(request, b),
                        ),
                        done,
                    )
                return None
        else:
            form = BookingActionForm()
        return self._form_page(request, bookings, form, action=action, title=title)

    def _apply(
        self,
        request: HttpRequest,
        booking: Booking,
        change: Callable[[Booking], Booking],
        done: str,
    ) -> None:
        try:
            changed = change(booking)
        except VersionConflict:
            self.message_user(
                request,
                f"{booking.reference}: not changed, it was changed by someone else since you "
                "opened this form. Reload and try again.",
                messages.ERROR,
            )
        except ApplicationError as exc:
            detail = f" {exc.details}" if exc.details else ""
            self.message_user(
                request, f"{booking.reference}: not changed, {exc.message}{detail}", messages.ERROR
            )
        else:
            self.message_user(request, f"{changed.reference}: {done}.", messages.SUCCESS)

    def _form_page(
        self,
        request: HttpRequest,
        bookings: list[Booking],
        form: forms.Form,
        *,
        action: str,
        title: str,
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/bookings/booking_action.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "form": form,
                "bookings": bookings,
                "action": action,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Cancel selected bookings (asks for a reason)")
    def cancel_bookings(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._run(
            request,
            queryset,
            action="cancel_bookings",
            title="Cancel bookings",
            change=services.booking_cancel,
            done="cancelled, its place is free again",
        )

    @admin.action(description="Mark selected bookings completed (asks for a reason)")
    def complete_bookings(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._run(
            request,
            queryset,
            action="complete_bookings",
            title="Mark bookings completed",
            change=services.booking_complete,
            done="marked completed",
        )

    @admin.action(description="Mark selected bookings no-show (asks for a reason)")
    def no_show_bookings(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._run(
            request,
            queryset,
            action="no_show_bookings",
            title="Mark bookings no-show",
            change=services.booking_mark_no_show,
            done="marked no-show",
        )

    @admin.action(description="Reschedule one booking to another slot (asks for a reason)")
    def reschedule_booking(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        principal = self._principal(request)
        bookings = list(queryset.select_related("slot")[:2])
        if len(bookings) != 1:
            self.message_user(request, "Select exactly one booking to reschedule.", messages.ERROR)
            return None
        booking = bookings[0]
        if booking.status not in services.RESCHEDULABLE:
            self.message_user(
                request,
                f"{booking.reference}: a {booking.get_status_display().lower()} booking cannot "
                "be rescheduled.",
                messages.ERROR,
            )
            return None
        if "apply" in request.POST:
            form = RescheduleForm(request.POST, booking=booking)
            if form.is_valid():
                self._apply(
                    request,
                    booking,
                    lambda b: services.booking_reschedule(
                        actor=principal,
                        booking_id=b.pk,
                        slot_id=form.cleaned_data["slot"].pk,
                        reason=form.cleaned_data["reason"],
                        expected_version=_seen_version(request, b),
                    ),
                    "rescheduled",
                )
                return None
        else:
            form = RescheduleForm(booking=booking)
        return self._form_page(
            request, [booking], form, action="reschedule_booking", title="Reschedule booking"
        )


def _people_of(booking: Booking) -> PeopleNames:
    return getattr(booking, "people", None) or people_names([booking.user_id])


def _seen_version(request: HttpRequest, booking: Booking) -> int | None:
    """The version shown on the action form for this booking (refuses stale changes)."""
    return version_or_none(request.POST.get(f"version_{booking.pk}"))


from . import payment_admin  # noqa: E402, F401  (registers PaymentRecordAdmin)
