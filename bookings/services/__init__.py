"""Every write of the bookings app; import from here, not from the modules.

`history` is the status machine and the record of every change (transition table, history rows,
booking events); `lifecycle` the changes people make (confirm, cancel, reschedule, complete,
no-show); `payments` what the Payment Service tells us and the payment deadline; `refunds`
paying back what is owed. Imports go one way: payments → lifecycle → refunds → history.
"""

from .history import (
    BOOKING_AGGREGATE,
    HOLDS_A_UNIT,
    RESCHEDULABLE,
    TRANSITIONS,
    BookingEvent,
    booking_event_data,
    booking_events_append,
    booking_history_note,
    booking_transition,
    transition_allowed,
)
from .lifecycle import (
    booking_cancel,
    booking_complete,
    booking_confirm_reservation,
    booking_mark_no_show,
    booking_reference_new,
    booking_reschedule,
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
    "BookingEvent",
    "SlotVisitsCancelled",
    "booking_cancel",
    "booking_cancel_for_payment_deadline",
    "booking_cancel_slot_visits",
    "booking_complete",
    "booking_confirm_reservation",
    "booking_event_data",
    "booking_events_append",
    "booking_history_note",
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
