"""Payment endpoints: the owner starts a booking's payment; the Payment Service's signed
webhook tells us how it went (DESIGN.md §7, §8). Thin: one service call each."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from petpro_booking.core.idempotency import idempotent
from petpro_booking.core.openapi import error_responses
from petpro_booking.core.permissions import IsPetOwner, request_principal

from . import services


class PaymentOutput(serializers.Serializer):
    payment_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "pending", "succeeded", "failed"])
    checkout_url = serializers.CharField(help_text="Where the owner completes the payment.")


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
        help_text="What happened: confirmed, failed, refunded, duplicate (a replayed event_id, "
        "nothing changed), already_applied, late_rebooked, late_refunded, ..."
    )


def payment_body(record) -> dict:
    return {
        "payment_id": record.payment_id,
        "status": record.status,
        "checkout_url": record.checkout_url,
    }


class BookingPaymentView(APIView):
    """POST /api/v1/bookings/{id}/payment: the owner starts (or gets again) the payment."""

    permission_classes = [IsPetOwner]

    @extend_schema(
        operation_id="bookings_payment_create",
        tags=["bookings"],
        request=None,
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
        return Response(payment_body(record), status=status.HTTP_201_CREATED)


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
