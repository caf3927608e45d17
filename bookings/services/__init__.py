"""Every write of the bookings app; import from here, not from the modules.

`lifecycle` holds the status machine (`booking_transition`) and the changes people make;
payment-driven changes live in their own module next to it.
"""

from .lifecycle import (
    BOOKING_AGGREGATE,
    HOLDS_A_UNIT,
    RESCHEDULABLE,
    TRANSITIONS,
    booking_cancel,
    booking_complete,
    booking_confirm_reservation,
    booking_event_append,
    booking_event_data,
    booking_mark_no_show,
    booking_reference_new,
    booking_reschedule,
    booking_transition,
    transition_allowed,
)

__all__ = [
    "BOOKING_AGGREGATE",
    "HOLDS_A_UNIT",
    "RESCHEDULABLE",
    "TRANSITIONS",
    "booking_cancel",
    "booking_complete",
    "booking_confirm_reservation",
    "booking_event_append",
    "booking_event_data",
    "booking_mark_no_show",
    "booking_reference_new",
    "booking_reschedule",
    "booking_transition",
    "transition_allowed",
]
