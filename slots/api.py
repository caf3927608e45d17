"""Thin viewsets for clinics and slots: parse, call one service or selector, render."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from integrations.users import pet_get
from petpro_booking.core.errors import PermissionDeniedError, ValidationFailed
from petpro_booking.core.http import etag_for, if_match_version
from petpro_booking.core.idempotency import idempotent
from petpro_booking.core.openapi import IF_MATCH, LOCATION, UUID_PATH_PATTERN, error_responses
from petpro_booking.core.pagination import PagePagination
from petpro_booking.core.permissions import ReadOnlyOrStaff, request_principal

from . import selectors, services
from .serializers import (
    ClinicOutput,
    ClinicServiceOutput,
    SlotCreateInput,
    SlotGenerateInput,
    SlotGenerateOutput,
    SlotOutput,
    SlotSearchQuery,
    SlotUpdateInput,
)


class ClinicViewSet(viewsets.ViewSet):
    # Opaque ids of the Clinic Service, at most 64 characters; a NUL byte (which PostgreSQL
    # cannot store) or anything longer matches no route and is a 404.
    lookup_value_regex = r"[^/\x00]{1,64}"
    pagination_class = PagePagination

    @extend_schema(responses={200: ClinicOutput(many=True)})
    def list(self, request: Request) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(selectors.clinic_list(), request, view=self)
        return paginator.get_paginated_response(ClinicOutput(page, many=True).data)

    @extend_schema(responses={200: ClinicOutput, **error_responses(503)})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ClinicOutput(selectors.clinic_get(clinic_id=pk)).data)

    @extend_schema(
        responses={200: ClinicServiceOutput(many=True), **error_responses(503)},
        description="The clinic's services, paginated like every list.",
    )
    @action(detail=True, methods=["get"])
    def services(self, request: Request, pk: str) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(
            selectors.clinic_service_list(clinic_id=pk), request, view=self
        )
        return paginator.get_paginated_response(ClinicServiceOutput(page, many=True).data)


def _slot_response(slot_id, status_code: int = status.HTTP_200_OK) -> Response:
    body = selectors.slot_detail(slot_id=slot_id)
    return Response(body, status=status_code, headers={"ETag": etag_for(body["version"])})


class _CountedPage:
    """One page the selector already read, shaped so DRF's paginator builds the links: it
    knows the total and hands back the page's rows for the page's slice."""

    def __init__(self, *, count: int, rows: list[dict[str, Any]]) -> None:
        self._count, self._rows = count, rows

    def count(self) -> int:  # Django's Paginator asks for count() first
        return self._count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self._rows


def _search_filters(request: Request, query: dict[str, Any]) -> dict[str, Any]:
    """The selector's filters: a pet becomes its species; the full list is for staff."""
    filters = {k: v for k, v in query.items() if v is not None and k != "pet_id"}
    if query.get("pet_id"):
        principal = request_principal(request)
        pet = pet_get(user_id=principal.sub, pet_id=query["pet_id"])
        if pet is None:
            raise ValidationFailed(
                "This pet is not one of yours.",
                code="invalid_pet",
                details={"pet_id": ["Not your pet."]},
            )
        filters["species"] = pet.species
    if filters.get("species"):
        filters["species"] = filters["species"].lower()
    if filters.pop("include_unbookable", False):
        principal = request_principal(request)
        clinic_id = filters.get("clinic_id")
        if not (principal.is_support or (clinic_id and principal.can_manage_clinic(clinic_id))):
            raise PermissionDeniedError(
                "Unbookable slots are listed for support, and for staff with their clinic_id."
            )
        filters["include_unbookable"] = True
    return filters


class SlotViewSet(viewsets.ViewSet):
    permission_classes = [ReadOnlyOrStaff]
    lookup_value_regex = UUID_PATH_PATTERN
    pagination_class = PagePagination

    @extend_schema(
        parameters=[SlotSearchQuery],
        responses={200: SlotOutput(many=True), **error_responses(400, 403, 404, 503)},
        description="Slots a hold could get now, oldest start first, with `available_capacity` "
        "(expired holds count free even before the expiry job runs). By default slots nobody "
        "can book now are left out (closed, inactive clinic or service, started, inside the "
        "service's notice, beyond its horizon); full ones stay with `available_capacity` 0. "
        "`pet_id` or `species` keeps the slots that pet could book. Cached up to 5 minutes, "
        "invalidated within 0.5 s whenever a slot, service or clinic changes and never served "
        "past the instant it would change on its own (a hold expiring, a slot entering its "
        "notice or horizon). A page past the last is 404.",
    )
    def list(self, request: Request) -> Response:
        query = SlotSearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        page, page_size = params.pop("page"), params.pop("page_size")
        result = selectors.slot_search_page(
            filters=_search_filters(request, params), page=page, page_size=page_size
        )
        paginator = PagePagination()
        page_of = cast(Any, _CountedPage(count=result["count"], rows=result["results"]))
        rows: list[dict[str, Any]] = (
            paginator.paginate_checked(page_of, request, self, page=page, page_size=page_size) or []
        )
        return paginator.get_paginated_response(rows)

    @extend_schema(responses={200: SlotOutput})
    def retrieve(self, request: Request, pk: str) -> Response:
        return _slot_response(pk)

    @extend_schema(
        request=SlotCreateInput,
        parameters=[LOCATION],
        responses={201: SlotOutput, **error_responses(400, 403, 409, 422, 503)},
        description="Staff of the clinic or support. `capacity` defaults to 1.",
    )
    @idempotent
    def create(self, request: Request) -> Response:
        body = SlotCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        slot = services.slot_create(actor=request_principal(request), **body.validated_data)
        response = _slot_response(slot.id, status.HTTP_201_CREATED)
        response["Location"] = reverse("slot-detail", args=[slot.id])
        return response

    @extend_schema(
        request=SlotUpdateInput,
        parameters=[IF_MATCH],
        responses={200: SlotOutput, **error_responses(400, 403, 404, 409, 412)},
        description="Change capacity or status. 412 when If-Match is stale; 409 "
        "`capacity_conflict` when capacity would drop below what is held or booked; 409 "
        "`slot_busy` (with Retry-After) when a hold or booking is being written on the slot "
        "past the lock wait.",
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        body = SlotUpdateInput(data=request.data)
        body.is_valid(raise_exception=True)
        slot = services.slot_update(
            actor=request_principal(request),
            slot_id=pk,
            expected_version=if_match_version(request),
            **body.validated_data,
        )
        return _slot_response(slot.id)

    @extend_schema(
        request=SlotGenerateInput,
        parameters=[LOCATION],
        responses={201: SlotGenerateOutput, **error_responses(400, 403, 409, 422, 503)},
        description="Cut the weekly windows (clinic-local times) into slots of the service's "
        "duration for every date in the range, one after another in elapsed time with the "
        "service's buffers between them. Skipped, as `POST /slots` would refuse them: a start "
        "an existing slot of the service has, and one whose buffered time overlaps an existing "
        "slot's or a new one's kept before it. `created` counts the slots made. `Location` is "
        "the search for the clinic's and service's slots.",
    )
    @idempotent
    @action(detail=False, methods=["post"])
    def generate(self, request: Request) -> Response:
        body = SlotGenerateInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        created = services.slot_generate(
            actor=request_principal(request),
            clinic_id=data["clinic_id"],
            service_id=data["service_id"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            capacity=data["capacity"],
            weekly=[services.WeeklyWindow(**w) for w in data["weekly"]],
        )
        query = urlencode({"clinic_id": data["clinic_id"], "service_id": data["service_id"]})
        search = f"{reverse('slot-list')}?{query}"
        return Response(
            {"created": created}, status=status.HTTP_201_CREATED, headers={"Location": search}
        )
