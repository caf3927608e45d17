"""Bookings, payment records, booking history; cancel, reschedule, complete."""
