"""Joins the two 0004s of i13 (cancel reason, event version) and i14 (payment deadline)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0004_i13_booking_cancel_reason_event_version"),
        ("bookings", "0004_i14_payment_deadline"),
    ]

    operations: list[migrations.operations.base.Operation] = []
