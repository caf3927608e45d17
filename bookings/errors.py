"""Stable error codes of the bookings app: part of the API, never renamed (docs/bookings.md)."""

from petpro_booking.core.errors import ApplicationError, Conflict, PermissionDeniedError


class InvalidTransition(Conflict):
    code = "invalid_transition"
    default_message = "A booking in this status cannot make that move."


class OutsideCancellationWindow(Conflict):
    code = "outside_cancellation_window"
    default_message = (
        "It is too close to the appointment to change it online; please contact the clinic."
    )


class NotBookingManager(PermissionDeniedError):
    default_message = "Only staff of this clinic and support may do this."


class InvalidSignature(ApplicationError):
    """The Payment Service webhook's X-Signature is missing or is not the HMAC of its body."""

    status_code = 401
    code = "invalid_signature"
    default_message = "The webhook signature is missing or does not match its body."
