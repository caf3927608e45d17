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
from .payments import (
    LATE_PAYMENT_REASON,
    PAYMENT_DEADLINE_REASON,
    booking_cancel_for_payment_deadline,
    bookings_cancel_unpaid,
    payment_create_for_booking,
    payment_deadline_of,
    payment_reconcile,
    payment_webhook_process,
    payment_webhook_receive,
    payments_reconcile_stale,
)
from .refunds import (
    payment_refund_owed,
    payment_refund_schedule_if_paid,
    payments_refund_owed,
)
from .visits import SlotVisitsCancelled, booking_cancel_slot_visits

__all__ = [
    "BOOKING_AGGREGATE",
    "HOLDS_A_UNIT",
    "LATE_PAYMENT_REASON",
    "PAYMENT_DEADLINE_REASON",
    "RESCHEDULABLE",
    "TRANSITIONS",
    "SlotVisitsCancelled",
    "booking_cancel",
    "booking_cancel_for_payment_deadline",
    "booking_cancel_slot_visits",
    "booking_complete",
    "booking_confirm_reservation",
    "booking_event_append",
    "booking_event_data",
    "booking_mark_no_show",
    "booking_reference_new",
    "booking_reschedule",
    "booking_transition",
    "bookings_cancel_unpaid",
    "payment_create_for_booking",
    "payment_deadline_of",
    "payment_reconcile",
    "payment_refund_owed",
    "payment_refund_schedule_if_paid",
    "payment_webhook_process",
    "payment_webhook_receive",
    "payments_reconcile_stale",
    "payments_refund_owed",
    "transition_allowed",
]
