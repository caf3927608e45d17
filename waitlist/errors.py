"""Stable error codes of the waiting list."""

from petpro_booking.core.errors import Conflict


class SlotHasRoom(Conflict):
    code = "slot_available"
    default_message = "This slot has room: hold it instead of joining its waiting list."


class AlreadyWaiting(Conflict):
    code = "already_waiting"
    default_message = "You are already on this slot's waiting list."


class AlreadyBooked(Conflict):
    code = "already_booked"
    default_message = "You already hold or booked this slot."
