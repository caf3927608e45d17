"""GET /api/v1/me/data: an owner's own data, one JSON document (right of access)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from petpro_booking.core.permissions import IsPetOwner, request_principal

from .personal_data import person_data_export


class MyDataView(APIView):
    permission_classes = [IsPetOwner]

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        description="Everything the Booking Service holds about the caller: profile (embedded "
        "mode), holds, bookings, payments, history and notifications sent, each with the ids "
        "of the events that recorded it.",
    )
    def get(self, request: Request) -> Response:
        principal = request_principal(request)
        return Response(person_data_export(user_id=principal.sub))
