"""Payment endpoints: the owner starts a booking's payment; the Payment Service's signed
webhook tells us how it went (docs/payments.md). Thin: one service call each."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from petpro_booking.core.idempotency import idempotent
from petpro_booking.core.openapi import LOCATION, error_responses
from petpro_booking.core.permissions import (
    IsAuthenticatedPrincipal,
    IsPetOwner,
    request_principal,
)

from . import selectors, services
from .models import PaymentStatus


class PaymentOutput(serializers.Serializer):
    payment_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=PaymentStatus.choices)
    checkout_url = serializers.CharField(
        allow_null=True,
        help_text="Where the owner completes the payment; null for anyone else who may read "
        "the booking (staff of its clinic, support, services).",
    )


class WebhookEventInput(serializers.Serializer):
    """The Payment Service's event (documentation only: the raw body is what is verified)."""

    event_id = serializers.CharField()
    type = serializers.ChoiceField(
        choices=["payment.succeeded", "payment.failed", "payment.refunded"]
    )
    payment_id = serializers.CharField()
    booking_id = serializers.CharField()
    amount = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=True)
    currency = serializers.CharField()
    occurred_at = serializers.DateTimeField()


class WebhookAck(serializers.Serializer):
    status = serializers.CharField(
        help_text="What happened: confirmed, failed, refunded, refunded_cancelled (a booking "
        "that held its unit was cancelled by the refund), duplicate (a replayed event_id, "
        "nothing changed), already_applied, late_rebooked, late_refunded, ..."
    )


def payment_body(record, *, to_owner: bool = True) -> dict:
    return {
        "payment_id": record.payment_id,
        "status": record.status,
        "checkout_url": record.checkout_url if to_owner else None,
    }


class BookingPaymentView(APIView):
    """POST /api/v1/bookings/{id}/payment: the owner starts (or gets again) the payment."""

    permission_classes = [IsPetOwner]

    def get_permissions(self):  # type: ignore[no-untyped-def]
        # Reading is scoped like the booking itself (owner, clinic staff, support).
        if self.request.method in SAFE_METHODS:
            return [IsAuthenticatedPrincipal()]
        return super().get_permissions()

    @extend_schema(
        operation_id="bookings_payment_retrieve",
        tags=["bookings"],
        responses={200: PaymentOutput, **error_responses(404)},
        description="The booking's latest payment and its status; 404 before any payment. "
        "The checkout link goes to the booking's owner only (null for staff and support).",
    )
    def get(self, request: Request, booking_id) -> Response:
        record, to_owner = selectors.booking_payment_for(
            principal=request_principal(request), booking_id=booking_id
        )
        return Response(payment_body(record, to_owner=to_owner))

    @extend_schema(
        operation_id="bookings_payment_create",
        tags=["bookings"],
        request=None,
        parameters=[LOCATION],
        responses={201: PaymentOutput, **error_responses(404, 409, 422, 503)},
        description="For a `pending_payment` booking of the caller: creates the payment with "
        "the Payment Service, or returns the live one (the same payment on every retry). "
        "409 `invalid_transition` when the booking is not `pending_payment` (or its payment "
        "deadline has passed); 503 `dependency_unavailable` when the Payment Service is down "
        "or slow (answered within 10 s; the booking stays `pending_payment`, retry later).",
    )
    @idempotent
    def post(self, request: Request, booking_id) -> Response:
        record = services.payment_create_for_booking(
            actor=request_principal(request), booking_id=booking_id
        )
        return Response(
            payment_body(record),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("booking-payment", args=[booking_id])},
        )


class PaymentWebhookView(APIView):
    """POST /api/v1/payments/webhook: the Payment Service's signed events."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    public_endpoint = True

    @extend_schema(
        operation_id="payments_webhook",
        tags=["payments"],
        auth=[],
        request=WebhookEventInput,
        parameters=[
            OpenApiParameter(
                "X-Signature",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="`sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>`",
            )
        ],
        responses={
            200: WebhookAck,
            **error_responses(400, 404),
            401: OpenApiResponse(
                response=error_responses(401)[401].response,
                description="invalid_signature: missing or wrong X-Signature; nothing changed",
            ),
        },
        description="Idempotent by `event_id`: a replay is 200 and changes nothing. "
        "`payment.succeeded` confirms the booking (BookingPaid, BookingConfirmed); a success "
        "for a booking the deadline cancelled re-books it when the slot has room, else it is "
        "refunded. `payment.failed` leaves the booking payable until its deadline. 404 for an "
        "unknown `payment_id` (deliver again later).",
    )
    def post(self, request: Request) -> Response:
        # The signature covers the raw bytes: read them, never request.data.
        outcome = services.payment_webhook_receive(
            body=request.body, signature=request.headers.get("X-Signature")
        )
        return Response({"status": outcome}, status=status.HTTP_200_OK)
