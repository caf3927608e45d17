"""Thin viewsets for clinics and slots: parse, call one service or selector, render."""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from petpro_booking.core.clock import local_fields
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
    lookup_value_regex = r"[^/]+"
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


def _slot_response(slot, status_code: int = status.HTTP_200_OK) -> Response:
    body = SlotOutput(
        {
            "id": slot.id,
            "clinic_id": slot.clinic_id,
            "service_id": slot.service_id,
            "start_at": slot.start_at,
            "end_at": slot.end_at,
            "capacity": slot.capacity,
            "available_capacity": slot.available_capacity,
            "status": slot.status,
            "version": slot.version,
            **local_fields(
                start_at=slot.start_at,
                end_at=slot.end_at,
                zone_name=slot.clinic.timezone,
                clinic_name=slot.clinic.name,
                service_name=slot.service.name,
            ),
        }
    ).data
    return Response(body, status=status_code, headers={"ETag": etag_for(slot.version)})


class SlotViewSet(viewsets.ViewSet):
    permission_classes = [ReadOnlyOrStaff]
    lookup_value_regex = UUID_PATH_PATTERN
    pagination_class = PagePagination

    @extend_schema(
        parameters=[SlotSearchQuery],
        responses={200: SlotOutput(many=True)},
        description="Slots with `available_capacity`, oldest start first; cached for 5 minutes "
        "and invalidated whenever a slot of that clinic changes.",
    )
    def list(self, request: Request) -> Response:
        query = SlotSearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        page, page_size = params.pop("page"), params.pop("page_size")
        filters = {k: v for k, v in params.items() if v is not None}
        result = selectors.slot_search_page(filters=filters, page=page, page_size=page_size)
        url = request.build_absolute_uri()
        last_page = max(1, -(-result["count"] // page_size))
        next_url = replace_query_param(url, "page", page + 1) if page < last_page else None
        previous_url = None
        if page > 1:
            previous_url = (
                remove_query_param(url, "page")
                if page == 2
                else replace_query_param(url, "page", page - 1)
            )
        return Response(
            {
                "count": result["count"],
                "next": next_url,
                "previous": previous_url,
                "results": result["results"],
            }
        )

    @extend_schema(responses={200: SlotOutput})
    def retrieve(self, request: Request, pk: str) -> Response:
        return _slot_response(selectors.slot_get(slot_id=pk))

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
        response = _slot_response(slot, status.HTTP_201_CREATED)
        response["Location"] = reverse("slot-detail", args=[slot.id])
        return response

    @extend_schema(
        request=SlotUpdateInput,
        parameters=[IF_MATCH],
        responses={200: SlotOutput, **error_responses(400, 403, 404, 409, 412)},
        description="Change capacity or status. 412 when If-Match is stale; 409 "
        "`capacity_conflict` when capacity would drop below what is held or booked.",
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
        return _slot_response(slot)

    @extend_schema(
        request=SlotGenerateInput,
        parameters=[LOCATION],
        responses={201: SlotGenerateOutput, **error_responses(400, 403, 409, 422, 503)},
        description="Cut the weekly windows (clinic-local times) into slots of the service's "
        "duration for every date in the range; existing slots are skipped. `Location` is the "
        "search for the clinic's and service's slots.",
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
