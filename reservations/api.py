"""Thin viewset for holds: POST to hold a slot, GET to read it, DELETE to release it.
(POST /reservations/{id}/confirm lives with bookings: bookings -> reservations.)"""

from __future__ import annotations

from collections.abc import Mapping

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
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
from petpro_booking.core.permissions import IsPetOwner, request_principal
from slots.locking import SlotBusy
from slots.rules import HOLD_REFUSAL_CODES

from . import selectors, services
from .errors import LimitExceeded
from .serializers import (
    ReservationCreateInput,
    ReservationCreateRequest,
    ReservationGroupCreateInput,
    ReservationGroupOutput,
    ReservationOutput,
    reservation_body,
    reservation_group_body,
)

HOLD_OR_GROUP = PolymorphicProxySerializer(
    component_name="HoldOrGroup",
    serializers=[ReservationOutput, ReservationGroupOutput],
    resource_type_field_name=None,
)


class ReservationViewSet(viewsets.ViewSet):
    """A pet owner's holds; anyone else's are 404."""

    permission_classes = [IsPetOwner]
    lookup_value_regex = UUID_PATH_PATTERN

    pagination_class = PagePagination  # documents the list as paginated

    @extend_schema(
        responses={200: ReservationOutput(many=True)},
        description="The caller's live holds (held, not yet expired), soonest expiry first.",
    )
    def list(self, request: Request) -> Response:
        paginator = PagePagination()
        holds = selectors.reservation_list_live_for(actor=request_principal(request))
        page = paginator.paginate_queryset(holds, request, view=self)
        return paginator.get_paginated_response([reservation_body(r) for r in page or []])

    @extend_schema(
        request=ReservationCreateRequest,
        parameters=[LOCATION],
        responses={
            201: HOLD_OR_GROUP,
            **error_responses(400, 403, 404, 422, 503),
            409: conflict_response(
                "HoldRefused",
                [*HOLD_REFUSAL_CODES, SlotBusy.code, LimitExceeded.code, IdempotencyKeyInUse.code],
                "The hold is refused; the code says why (docs/bookings.md, Booking rules).",
            ),
        },
        description="Hold one unit of the slot for RESERVATION_TTL_SECONDS (10 min by default) "
        "for one of your pets. 400 `invalid_pet` when the pet is not yours or the service does "
        "not accept its species; 404 when the slot does not exist. 409 with its own code for "
        "each rule: `clinic_inactive`, `service_inactive`, `slot_started`, `too_late_to_book` "
        "(inside the service's `min_notice_minutes`), `beyond_booking_horizon` (the slot's "
        "clinic-local date is more than `booking_horizon_days` ahead), `slot_unavailable` (full "
        "or closed); `details.reason` repeats the rule. 409 `slot_busy` when the slot's lock "
        "was not obtained in time (retry). Confirm it with POST /reservations/{id}/confirm.\n\n"
        "Several pets (issue 15): `pet_ids` (1 to 4 distinct pets of yours) instead of "
        "`pet_id` holds one unit per pet, all or nothing, with one `group_id` and one expiry; "
        "the answer is the group (`ReservationGroupOutput`, `Location` "
        "/reservations/groups/{group_id}). Each pet is checked (400 `invalid_pet`, "
        "`details.pet_ids` names the pet); both `pet_id` and `pet_ids`, a repeated pet or "
        "more than 4 are 400 `validation_error`; a slot without room for every pet is 409 "
        "`slot_unavailable` and nothing is held. Confirming any hold of the group confirms "
        "them all.",
    )
    @idempotent
    def create(self, request: Request) -> Response:
        if isinstance(request.data, Mapping) and "pet_ids" in request.data:
            return self._create_group(request)
        body = ReservationCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        reservation = services.reservation_create(
            actor=request_principal(request), **body.validated_data
        )
        return Response(
            reservation_body(reservation),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("reservation-detail", args=[reservation.id])},
        )

    def _create_group(self, request: Request) -> Response:
        body = ReservationGroupCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        holds = services.reservation_create_group(
            actor=request_principal(request), **body.validated_data
        )
        return Response(
            reservation_group_body(holds),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("reservation-group", args=[holds[0].group_id])},
        )

    @extend_schema(responses={200: ReservationOutput, **error_responses(404)})
    def retrieve(self, request: Request, pk: str) -> Response:
        reservation = selectors.reservation_get_for(
            actor=request_principal(request), reservation_id=pk
        )
        return Response(reservation_body(reservation))

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Released (or already released or expired)."),
            **error_responses(404, 409),
        },
        description="Give the hold back. Releasing a hold that is already released or expired "
        "changes nothing; a confirmed one is 409 `reservation_not_held` (cancel the booking).",
    )
    def destroy(self, request: Request, pk: str) -> Response:
        services.reservation_release(actor=request_principal(request), reservation_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReservationGroupView(APIView):
    """GET/DELETE /api/v1/reservations/groups/{group_id}: the owner's group of holds (several
    pets on one slot); another owner's group is 404."""

    permission_classes = [IsPetOwner]

    @extend_schema(
        operation_id="reservations_groups_retrieve",
        tags=["reservations"],
        responses={200: ReservationGroupOutput, **error_responses(404)},
        description="The group's holds, one per pet, and the group's status.",
    )
    def get(self, request: Request, group_id: str) -> Response:
        holds = selectors.reservation_group_for(actor=request_principal(request), group_id=group_id)
        return Response(reservation_group_body(holds))

    @extend_schema(
        operation_id="reservations_groups_destroy",
        tags=["reservations"],
        responses={
            204: OpenApiResponse(description="Every held hold of the group released."),
            **error_responses(404, 409),
        },
        description="Give back every hold of the group that is still held, in one change. "
        "Holds already released, expired or confirmed stay as they are (a confirmed group is "
        "bookings now: cancel those). DELETE /reservations/{id} releases one pet's hold only.",
    )
    def delete(self, request: Request, group_id: str) -> Response:
        services.reservation_group_release(actor=request_principal(request), group_id=group_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
