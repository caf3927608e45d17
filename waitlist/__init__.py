"""The waiting list: owners in line for a full slot; a freed unit becomes a hold offered to
the first of them (docs/bookings.md, Waiting list)."""
