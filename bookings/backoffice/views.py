"""Admin pages of the daily tool: each view parses the request, calls one selector or the
services the API uses (with the admin user's Principal), and renders a template."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from petpro_booking.core.clock import in_service_years
from petpro_booking.core.errors import ApplicationError, NotFound, VersionConflict
from petpro_booking.core.http import version_or_none
from petpro_booking.core.principal import Principal
from slots import services as slot_services
from slots.display import local_moment

from .. import services

# admin_principal through the bookings admin: one import to follow when the admin base moves.
from ..admin import BookingActionForm, RescheduleForm, admin_principal
from ..models import Booking
from ..payment_admin import RECHECK_OUTCOMES
from . import selectors

VIEWS = {"day": 1, "week": 7}


def _principal(request: HttpRequest) -> Principal:
    principal = admin_principal(request.user)
    if principal is None:
        raise PermissionDenied
    return principal


def _page(request: HttpRequest, template: str, title: str, **context) -> TemplateResponse:
    return TemplateResponse(
        request,
        f"admin/backoffice/{template}",
        {**admin.site.each_context(request), "title": title, **context},
    )


def _parse_day(raw: str | None) -> dt.date | None:
    """A day of the years the service keeps (`in_service_years`), or None: a day past 9998
    overflowed the week and day arithmetic (a 500)."""
    try:
        day = dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    return day if day is not None and in_service_years(day) else None


def _failed(request: HttpRequest, label: str, exc: ApplicationError) -> None:
    if isinstance(exc, VersionConflict):
        text = f"{label}: not changed, it changed since you opened the page. Look again."
    else:
        detail = f" {exc.details}" if exc.details else ""
        text = f"{label}: not changed, {exc.message}{detail}"
    messages.error(request, text)


# --- schedule --------------------------------------------------------------------------------


def schedule_home(request: HttpRequest) -> HttpResponse:
    """Staff of one clinic go straight to it; support (or staff of several) choose."""
    clinics = list(selectors.clinics_for(_principal(request)))
    if len(clinics) == 1:
        return redirect("backoffice:schedule", clinic_id=clinics[0].id)
    return _page(request, "clinics.html", "Schedule: choose a clinic", clinics=clinics)


def schedule(request: HttpRequest, clinic_id: str) -> HttpResponse:
    principal = _principal(request)
    try:
        clinic = selectors.clinic_for(principal=principal, clinic_id=clinic_id)
    except NotFound:
        raise Http404("No such clinic.") from None
    view = request.GET.get("view") or "day"
    if view not in VIEWS:
        view = "day"
    today = local_moment(timezone.now(), clinic.timezone).date()
    day = _parse_day(request.GET.get("date")) or today
    first_day = day - dt.timedelta(days=day.weekday()) if view == "week" else day
    step = dt.timedelta(days=VIEWS[view])
    schedule = selectors.schedule_for(
        principal=principal, clinic_id=clinic.id, first_day=first_day, days=VIEWS[view]
    )
    title = f"{clinic.name}: {'week of ' if view == 'week' else ''}{first_day:%A %d %B %Y}"
    return _page(
        request,
        "schedule.html",
        title,
        schedule=schedule,
        view=view,
        day=day,
        today=today,
        previous=first_day - step,
        next=first_day + step,
        other_clinics=len(selectors.clinics_for(principal)) > 1,
    )


# --- one slot --------------------------------------------------------------------------------


class CancelVisitsForm(BookingActionForm):
    """The reason every cancelled visit of the slot gets in its history and message."""


@require_http_methods(["GET", "POST"])
def slot_page(request: HttpRequest, slot_id: str) -> HttpResponse:
    principal = _principal(request)
    try:
        page = selectors.slot_page_for(principal=principal, slot_id=slot_id)
    except NotFound:
        raise Http404("No such slot.") from None
    slot = page.cell.slot
    label = f"{page.service.name} {page.cell.starts:%Y-%m-%d %H:%M}"
    cancel_form = CancelVisitsForm()
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "close":
            try:
                slot_services.slot_close(
                    actor=principal,
                    slot_id=slot.id,
                    expected_version=version_or_none(request.POST.get("version")),
                )
            except ApplicationError as exc:
                _failed(request, label, exc)
            else:
                messages.success(request, f"{label}: closed to new bookings.")
            return HttpResponseRedirect(request.path)
        if action == "cancel_visits":
            cancel_form = CancelVisitsForm(request.POST)
            if cancel_form.is_valid():
                _cancel_visits(request, principal, slot.id, cancel_form.cleaned_data["reason"])
                return HttpResponseRedirect(request.path)
        else:
            return HttpResponse("Unknown action.", status=400)
    return _page(
        request,
        "slot.html",
        f"{label} ({page.clinic.timezone}) at {page.clinic.name}",
        page=page,
        cancel_form=cancel_form,
    )


def _cancel_visits(request: HttpRequest, principal: Principal, slot_id, reason: str) -> None:
    """`booking_cancel_slot_visits`: close the slot, release its live holds, cancel each visit
    that still holds a place through `booking_cancel` (history, event and so the owner's
    message, refund of a paid booking)."""
    try:
        outcome = services.booking_cancel_slot_visits(
            actor=principal, slot_id=slot_id, reason=reason
        )
    except ApplicationError as exc:
        _failed(request, "The slot's visits", exc)
        return
    for booking, error in outcome.failed:
        _failed(request, booking.reference, error)
    messages.success(
        request,
        f"Slot closed; {len(outcome.cancelled)} visits cancelled, their owners are told why; "
        f"{len(outcome.released)} holds released.",
    )


# --- a booking's story -----------------------------------------------------------------------

CHANGES: dict[str, tuple[Callable[..., Booking], str]] = {
    "cancel": (services.booking_cancel, "cancelled, its place is free again"),
    "complete": (services.booking_complete, "marked completed"),
    "no_show": (services.booking_mark_no_show, "marked no-show"),
}


@require_http_methods(["GET", "POST"])
def booking_page(request: HttpRequest, booking_id: str) -> HttpResponse:
    principal = _principal(request)
    try:
        story = selectors.booking_story_for(principal=principal, booking_id=booking_id)
    except NotFound:
        raise Http404("No such booking.") from None
    booking = story.booking
    reason_form: forms.Form = BookingActionForm()
    reschedule_form = RescheduleForm(booking=booking)
    if request.method == "POST":
        action = request.POST.get("action", "")
        seen = version_or_none(request.POST.get("version"))
        if action in CHANGES:
            reason_form = BookingActionForm(request.POST)
            if reason_form.is_valid():
                change, done = CHANGES[action]
                try:
                    change(
                        actor=principal,
                        booking_id=booking.pk,
                        reason=reason_form.cleaned_data["reason"],
                        expected_version=seen,
                    )
                except ApplicationError as exc:
                    _failed(request, booking.reference, exc)
                else:
                    messages.success(request, f"{booking.reference}: {done}.")
                return HttpResponseRedirect(request.path)
        elif action == "reschedule":
            reschedule_form = RescheduleForm(request.POST, booking=booking)
            if reschedule_form.is_valid():
                try:
                    services.booking_reschedule(
                        actor=principal,
                        booking_id=booking.pk,
                        slot_id=reschedule_form.cleaned_data["slot"].pk,
                        reason=reschedule_form.cleaned_data["reason"],
                        expected_version=seen,
                    )
                except ApplicationError as exc:
                    _failed(request, booking.reference, exc)
                else:
                    messages.success(request, f"{booking.reference}: rescheduled.")
                return HttpResponseRedirect(request.path)
        elif action == "recheck" and principal.is_support:
            _recheck(request, story, request.POST.get("record", ""))
            return HttpResponseRedirect(request.path)
        else:
            return HttpResponse("Unknown action.", status=400)
    return _page(
        request,
        "booking.html",
        f"Booking {booking.reference}",
        story=story,
        reason_form=reason_form,
        reschedule_form=reschedule_form,
        can_recheck=principal.is_support,
        can_reschedule=booking.status in services.RESCHEDULABLE,
        admin_url=reverse("admin:bookings_booking_changelist") + f"?q={booking.reference}",
    )


def _recheck(request: HttpRequest, story: selectors.BookingStory, record_id: str) -> None:
    record = next((p for p in story.payments if str(p.pk) == record_id), None)
    if record is None:
        messages.error(request, "No such payment record of this booking.")
        return
    label = f"{story.booking.reference} / {record.payment_id or record.idempotency_key}"
    try:
        outcome = services.payment_reconcile(record_id=record.pk)
    except ApplicationError as exc:
        messages.error(request, f"{label}: {exc.message}")
        return
    messages.success(request, f"{label}: {RECHECK_OUTCOMES.get(outcome, outcome)}.")


# --- finder ----------------------------------------------------------------------------------


def booking_find(request: HttpRequest) -> HttpResponse:
    principal = _principal(request)
    text = request.GET.get("q", "")[:200]
    day = _parse_day(request.GET.get("date"))
    asked = bool(text.strip()) or day is not None
    result = selectors.booking_find(principal=principal, text=text, day=day) if asked else None
    return _page(
        request,
        "find.html",
        "Find a booking",
        result=result,
        q=text,
        date=request.GET.get("date", ""),
        bad_date=bool(request.GET.get("date")) and day is None,
    )
