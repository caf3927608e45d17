"""Thin views of the waiting list (pet owners) and of a slot's "why can't I book this?"."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from petpro_booking.core.idempotency import IdempotencyKeyInUse, idempotent
from petpro_booking.core.openapi import (
    LOCATION,
    UUID_PATH_PATTERN,
    conflict_response,
    error_responses,
)
from petpro_booking.core.pagination import PagePagination
from petpro_booking.core.permissions import (
    IsAuthenticatedPrincipal,
    IsPetOwner,
    request_principal,
)
from slots.locking import SlotBusy
from slots.rules import HOLD_REFUSAL_CODES

from . import selectors, services
from .serializers import (
    AvailabilityOutput,
    AvailabilityQuery,
    WaitlistEntryOutput,
    WaitlistJoinInput,
    entry_body,
)


class WaitlistViewSet(viewsets.ViewSet):
    """A pet owner's places in the waiting lists of full slots; anyone else's are 404."""

    permission_classes = [IsPetOwner]
    lookup_value_regex = UUID_PATH_PATTERN
    pagination_class = PagePagination

    @extend_schema(
        responses={200: WaitlistEntryOutput(many=True)},
        description="The caller's entries, newest first, with their place in line.",
    )
    def list(self, request: Request) -> Response:
        paginator = PagePagination()
        entries = selectors.waitlist_list_for(actor=request_principal(request))
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response([entry_body(e) for e in page or []])

    @extend_schema(
        request=WaitlistJoinInput,
        parameters=[LOCATION],
        responses={
            201: WaitlistEntryOutput,
            **error_responses(400, 403, 404, 422, 503),
            409: conflict_response(
                "WaitlistRefused",
                [
                    *HOLD_REFUSAL_CODES,
                    "slot_available",
                    "already_waiting",
                    "already_booked",
                    "limit_exceeded",
                    SlotBusy.code,
                    IdempotencyKeyInUse.code,
                ],
                "Not put in line; the code says why (docs/bookings.md, Waiting list).",
            ),
        },
        description="Get in line for a full slot with one of your pets. The booking rules of "
        "a hold apply (same codes). When a unit frees up, the first in line gets a real hold "
        "on it for WAITLIST_OFFER_SECONDS (15 min by default), notified as `waitlist_offer`; "
        "confirm it with POST /reservations/{reservation_id}/confirm. 409 `slot_available` "
        "when the slot has room (hold it instead).",
    )
    @idempotent
    def create(self, request: Request) -> Response:
        body = WaitlistJoinInput(data=request.data)
        body.is_valid(raise_exception=True)
        entry = services.waitlist_join(actor=request_principal(request), **body.validated_data)
        entry = selectors.waitlist_get_for(actor=request_principal(request), entry_id=entry.id)
        return Response(
            entry_body(entry),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("waitlist-detail", args=[entry.id])},
        )

    @extend_schema(responses={200: WaitlistEntryOutput, **error_responses(404)})
    def retrieve(self, request: Request, pk: str) -> Response:
        entry = selectors.waitlist_get_for(actor=request_principal(request), entry_id=pk)
        return Response(entry_body(entry))

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Left the line (or had already left it)."),
            **error_responses(404, 409),
        },
        description="Leave the line. With a live offer, its hold is released and goes to the "
        "next in line; an offer already confirmed is 409 `reservation_not_held`.",
    )
    def destroy(self, request: Request, pk: str) -> Response:
        services.waitlist_leave(actor=request_principal(request), entry_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SlotAvailabilityView(APIView):
    """GET /slots/{id}/availability: may the caller hold this slot now, and if not, why."""

    permission_classes = [IsAuthenticatedPrincipal]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "pet_id", str, description="Also check this pet (yours, species accepted)."
            )
        ],
        responses={200: AvailabilityOutput, **error_responses(404, 503)},
        description="`bookable` (true exactly when a hold now would be made) and every "
        "reason it is not, each a code and a sentence: `slot_full` (details: booked, held, "
        "when the earliest hold expires; a hold past its expiry counts free only beyond the "
        "owners waiting for the slot, who get it first), `slot_closed` (when the clinic "
        "closed it), `too_late_to_book`, `beyond_booking_horizon`, `slot_started`, "
        "`clinic_inactive`, `service_inactive`, `invalid_pet`, `species_not_accepted`, "
        "`limit_exceeded` (your live-hold limit: live holds plus waiting entries). `notes` "
        "say what you already have there (`already_booked`, `already_held`): information "
        "that refuses no hold. Also the caller's place on the slot's waiting list and up to "
        "5 bookable slots of the same service and clinic. Read from the current rows and the "
        "event store, never cached.",
    )
    def get(self, request: Request, slot_id: str) -> Response:
        query = AvailabilityQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        answer = selectors.slot_availability(
            actor=request_principal(request),
            slot_id=slot_id,
            pet_id=query.validated_data.get("pet_id"),
        )
        return Response(answer)
