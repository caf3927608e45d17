"""Admin for support: the event store, the outbox backlog, and re-publishing a range. Times read
in the zone of the event's clinic, written; an event of no clinic reads UTC, written."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from petpro_booking.core.admin_access import support_principal as support_of
from petpro_booking.core.admin_search import IndexedSearchMixin
from petpro_booking.core.admin_times import clinic_zones, local_time_column
from petpro_booking.core.principal import Principal

from .models import Event
from .selectors import outbox_backlog
from .services import outbox_republish


def support_principal(request: HttpRequest) -> Principal | None:
    return support_of(request.user)


class OutboxStateFilter(admin.SimpleListFilter):
    title = "outbox state"
    parameter_name = "outbox"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Waiting for the relay"),
            ("failed", "Set aside (invalid message)"),
            ("published", "Published"),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "pending":
            return queryset.filter(published_at__isnull=True, failed_at__isnull=True)
        if self.value() == "failed":
            return queryset.filter(published_at__isnull=True, failed_at__isnull=False)
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        return queryset


class RepublishForm(forms.Form):
    from_id = forms.IntegerField(min_value=1, label="From event id (inclusive)")
    to_id = forms.IntegerField(min_value=1, label="To event id (inclusive)")
    failed_only = forms.BooleanField(
        required=False, label="Only events set aside by the relay (invalid messages)"
    )

    def clean(self):
        cleaned = super().clean()
        if (
            cleaned.get("from_id")
            and cleaned.get("to_id")
            and cleaned["from_id"] > cleaned["to_id"]
        ):
            raise forms.ValidationError("The range is empty: 'from' is after 'to'.")
        return cleaned


def _payload_zone(event: Event) -> tuple[str | None, str]:
    """The zone the payload names (booking, hold and waiting-list events carry it), else the
    clinic id to look it up by (slot events carry only that; empty for no clinic)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    zone = payload.get("clinic_timezone")
    if isinstance(zone, str) and zone:
        return zone, ""
    return None, str(payload.get("clinic_id") or "")


def event_zone(event: Event) -> str | None:
    """The zone of the event's clinic; None (UTC, written) for an event of no clinic. The
    change list looks the clinics of its page up at once (`zone_name`); the event's own page
    looks its one up here."""
    zone, clinic_id = _payload_zone(event)
    if zone is not None:
        return zone
    if not hasattr(event, "zone_name"):
        event.zone_name = clinic_zones([clinic_id]).get(clinic_id)  # type: ignore[attr-defined]
    return event.zone_name  # type: ignore[attr-defined]


# The moments of an event, shown through the zone columns below instead.
EVENT_MOMENTS = {
    "created_at": "created_local",
    "published_at": "published_local",
    "failed_at": "failed_local",
}


@admin.register(Event)
class EventAdmin(IndexedSearchMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "aggregate_version",
        "created_local",
        "outbox_state",
        "publish_attempts",
    ]
    list_filter = [OutboxStateFilter, "aggregate_type", "event_type"]
    # Each compared by equality through its own index (core/admin_search.py): an event type
    # is chosen with the filter, not searched (no index serves a search in the type's text).
    exact_search_fields = ("aggregate_id", "event_id")
    readonly_fields = tuple(
        EVENT_MOMENTS.get(field.name, field.name) for field in Event._meta.fields
    )
    fields = readonly_fields
    actions = ["republish_selected"]
    show_full_result_count = False  # the events table grows without bound

    created_local = local_time_column("created_at", "created", zone_of=event_zone)
    published_local = local_time_column("published_at", "published", zone_of=event_zone)
    failed_local = local_time_column("failed_at", "set aside", zone_of=event_zone)

    def get_changelist_instance(self, request: HttpRequest):
        """The zones of the page's clinics looked up once, not once per row."""
        changelist = super().get_changelist_instance(request)
        wanted: list[tuple[Event, str]] = []
        for event in changelist.result_list:
            zone, clinic_id = _payload_zone(event)
            if zone is None:
                wanted.append((event, clinic_id))
        zones = clinic_zones(clinic_id for _, clinic_id in wanted)
        for event, clinic_id in wanted:
            event.zone_name = zones.get(clinic_id)  # type: ignore[attr-defined]
        return changelist

    @admin.display(description="outbox")
    def outbox_state(self, event: Event) -> str:
        if event.published_at is not None:
            return "published"
        if event.failed_at is not None:
            return "set aside"
        return "waiting"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return support_principal(request) is not None

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return support_principal(request) is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # events are history: never edited

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path(
                "republish/",
                self.admin_site.admin_view(self.republish_view),
                name="events_event_republish",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "backlog": outbox_backlog()}
        return super().changelist_view(request, extra_context=extra_context)

    @admin.action(description="Re-publish the selected events")
    def republish_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        principal = support_principal(request)
        if principal is None:
            self.message_user(request, "Only support may re-publish events.", messages.ERROR)
            return
        ids = list(queryset.values_list("id", flat=True))
        count = outbox_republish(actor=principal, event_ids=ids)
        self.message_user(request, f"{count} event(s) queued for publishing again.")

    def republish_view(self, request: HttpRequest) -> HttpResponse:
        principal = support_principal(request)
        if principal is None:
            self.message_user(request, "Only support may re-publish events.", messages.ERROR)
            # The admin's index, not the event list, which refuses them (403) and would swallow
            # the message until their next page.
            return HttpResponseRedirect(reverse("admin:index"))
        form = RepublishForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            count = outbox_republish(
                actor=principal,
                from_id=form.cleaned_data["from_id"],
                to_id=form.cleaned_data["to_id"],
                failed_only=form.cleaned_data["failed_only"],
            )
            self.message_user(
                request,
                f"{count} event(s) queued for publishing again (same message ids; consumers "
                "drop what they already have).",
            )
            return HttpResponseRedirect(reverse("admin:events_event_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Re-publish events",
            "opts": self.model._meta,
            "form": form,
            "backlog": outbox_backlog(),
        }
        return TemplateResponse(request, "admin/events/event/republish.html", context)
