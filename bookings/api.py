"""Thin viewsets for bookings and for confirming a hold into one: parse, call one service or
selector, render (the OpenAPI schema documents each)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from petpro_booking.core.http import etag_for, if_match_version
from petpro_booking.core.idempotency import idempotent
from petpro_booking.core.openapi import IF_MATCH, LOCATION, UUID_PATH_PATTERN, error_responses
from petpro_booking.core.pagination import PagePagination
from petpro_booking.core.permissions import IsPetOwner, request_principal

from . import selectors, services
from .serializers import (
    BookingCancelInput,
    BookingCloseInput,
    BookingListQuery,
    BookingOutput,
    BookingRescheduleInput,
    HistoryItemOutput,
    booking_body,
)


def _booking_response(booking, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(
        booking_body(booking), status=status_code, headers={"ETag": etag_for(booking.version)}
    )


class BookingViewSet(viewsets.ViewSet):
    """Owners see their own bookings, staff their clinics', support all; others' are 404."""

    lookup_value_regex = UUID_PATH_PATTERN
    pagination_class = PagePagination  # documents the list and history as paginated

    @extend_schema(
        parameters=[BookingListQuery],
        responses={200: BookingOutput(many=True)},
        description="Bookings visible to the caller, newest first.",
    )
    def list(self, request: Request) -> Response:
        query = BookingListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        bookings = selectors.booking_list_for(
            principal=request_principal(request),
            status=query.validated_data.get("status"),
            clinic_id=query.validated_data.get("clinic_id"),
            reference=query.validated_data.get("reference"),
        )
        paginator = PagePagination()
        page = paginator.paginate_queryset(bookings, request, view=self)
        return paginator.get_paginated_response([booking_body(b) for b in page or []])

    @extend_schema(responses={200: BookingOutput, **error_responses(404)})
    def retrieve(self, request: Request, pk: str) -> Response:
        return _booking_response(
            selectors.booking_get_for(principal=request_principal(request), booking_id=pk)
        )

    @extend_schema(
        request=BookingCancelInput,
        parameters=[IF_MATCH],
        responses={200: BookingOutput, **error_responses(400, 404, 409, 412, 422)},
        description="Owners until `cancellation_window_hours` before the start (else 409 "
        "`outside_cancellation_window`); staff of the clinic and support always, with a "
        "`reason`. The unit goes back to the slot. 409 `invalid_transition` when already "
        "cancelled, completed or no-show. A booking of a pet group: `scope` `booking` (default) "
        "cancels this pet only, `group` every booking of the group still cancellable, in one "
        "change (the answer is the named booking). A paid group's one payment is refunded "
        "whole when no booking of the group uses it any more; a pet cancelled alone before "
        "that has its share recorded as owed in its history (docs/bookings.md).",
    )
    @idempotent
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        body = BookingCancelInput(data=request.data)
        body.is_valid(raise_exception=True)
        booking = services.booking_cancel(
            actor=request_principal(request),
            booking_id=pk,
            reason=body.validated_data["reason"],
            expected_version=if_match_version(request),
            internal_note=body.validated_data["internal_note"],
            scope=body.validated_data["scope"],
        )
        return _booking_response(booking)

    @extend_schema(
        request=BookingRescheduleInput,
        parameters=[IF_MATCH],
        responses={200: BookingOutput, **error_responses(400, 404, 409, 412, 422)},
        description="Move to another slot of the same clinic and service, keeping status and "
        "payment. Same rights as cancel. 409 `slot_unavailable` when the new slot is full or "
        "closed, `slot_started` when it has started, `slot_busy` when its lock is not obtained "
        "in time (retry). An owner's move also meets the booking rules of a hold "
        "(`too_late_to_book`, `beyond_booking_horizon`, `clinic_inactive`, `service_inactive`) "
        "and the pet's bookings per day (`limit_exceeded`). A booking of a pet "
        "group: `scope` `booking` (default) moves this pet alone (it stays in its group for "
        "payment and group changes), `group` moves every reschedulable booking of the group "
        "onto the slot together, all or nothing (409 `slot_unavailable` when it lacks a unit "
        "for each).",
    )
    @idempotent
    @action(detail=True, methods=["post"])
    def reschedule(self, request: Request, pk: str) -> Response:
        body = BookingRescheduleInput(data=request.data)
        body.is_valid(raise_exception=True)
        booking = services.booking_reschedule(
            actor=request_principal(request),
            booking_id=pk,
            slot_id=body.validated_data["slot_id"],
            reason=body.validated_data["reason"],
            expected_version=if_match_version(request),
            scope=body.validated_data["scope"],
        )
        return _booking_response(booking)

    @extend_schema(
        request=BookingCloseInput,
        parameters=[IF_MATCH],
        responses={200: BookingOutput, **error_responses(403, 404, 409, 412, 422)},
        description="Staff of the clinic and support: a confirmed booking was attended.",
    )
    @idempotent
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str) -> Response:
        body = BookingCloseInput(data=request.data)
        body.is_valid(raise_exception=True)
        booking = services.booking_complete(
            actor=request_principal(request),
            booking_id=pk,
            reason=body.validated_data["reason"],
            expected_version=if_match_version(request),
        )
        return _booking_response(booking)

    @extend_schema(
        request=BookingCloseInput,
        parameters=[IF_MATCH],
        responses={200: BookingOutput, **error_responses(403, 404, 409, 412, 422)},
        description="Staff of the clinic and support: a confirmed booking was missed.",
    )
    @idempotent
    @action(detail=True, methods=["post"], url_path="no-show")
    def no_show(self, request: Request, pk: str) -> Response:
        body = BookingCloseInput(data=request.data)
        body.is_valid(raise_exception=True)
        booking = services.booking_mark_no_show(
            actor=request_principal(request),
            booking_id=pk,
            reason=body.validated_data["reason"],
            expected_version=if_match_version(request),
        )
        return _booking_response(booking)

    @extend_schema(
        responses={200: HistoryItemOutput(many=True), **error_responses(404)},
        description="The booking's events (PascalCase types), oldest first.",
    )
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str) -> Response:
        principal = request_principal(request)
        events, whole = selectors.booking_events(principal=principal, booking_id=pk)
        paginator = PagePagination()
        page = paginator.paginate_queryset(events, request, view=self)
        items = [
            selectors.history_item(event, viewer=principal, whole=whole) for event in page or []
        ]
        return paginator.get_paginated_response(HistoryItemOutput(items, many=True).data)


class ReservationConfirmView(APIView):
    """POST /api/v1/reservations/{id}/confirm: the hold's owner turns it into a booking."""

    permission_classes = [IsPetOwner]

    @extend_schema(
        request=None,
        parameters=[LOCATION],
        responses={201: BookingOutput, **error_responses(404, 409, 422)},
        description="201 with the booking (`pending_payment` when the service needs payment, "
        "else `confirmed`) and its `Location`. A hold of a pet group confirms the whole group "
        "at once, all or nothing (one hold expired: 409 `reservation_expired`, nothing "
        "booked); the answer is this hold's booking with `group_id` and `group_bookings`. "
        "409 `reservation_expired` past the hold's "
        "expiry, `reservation_not_held` when released or expired, `invalid_transition` when "
        "already confirmed (its `details` name the booking: `booking_id`, `reference`), "
        "`slot_unavailable` with `details.reason` `slot_closed` when staff closed the slot "
        "since the hold was made (nothing booked; the hold stays until it expires).",
    )
    @idempotent
    def post(self, request: Request, reservation_id) -> Response:
        booking = services.booking_confirm_reservation(
            actor=request_principal(request), reservation_id=reservation_id
        )
        response = _booking_response(booking, status.HTTP_201_CREATED)
        response["Location"] = reverse("booking-detail", args=[booking.id])
        return response
