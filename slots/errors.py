"""Stable error codes of the slots app."""

from petpro_booking.core.errors import Conflict, PermissionDeniedError


class CapacityConflict(Conflict):
    code = "capacity_conflict"
    default_message = "The capacity would drop below what is already held or booked."


class SlotUnavailable(Conflict):
    code = "slot_unavailable"
    default_message = "The slot is full or closed."


class NotClinicStaff(PermissionDeniedError):
    default_message = "Only staff of this clinic and support may change its slots."
