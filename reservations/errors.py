"""Stable error codes of holds: part of the API, never renamed (docs/holds.md)."""

from petpro_booking.core.errors import Conflict, ValidationFailed


class InvalidPet(ValidationFailed):
    code = "invalid_pet"
    default_message = "This pet is not yours, or the service does not accept its species."


class ReservationExpired(Conflict):
    code = "reservation_expired"
    default_message = "The hold has expired; hold the slot again."


class ReservationNotHeld(Conflict):
    code = "reservation_not_held"
    default_message = "The reservation is not held any more."


class LimitExceeded(Conflict):
    """A fair-use limit (docs/security.md#fair-use): details name the limit and its maximum."""

    code = "limit_exceeded"
    default_message = "A fair-use limit is reached."
