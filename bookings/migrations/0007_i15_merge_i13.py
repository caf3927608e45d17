"""Joins i13's 0004 (cancel reason, event version) with main's line (i17's personal data,
i14's payment deadline): one leaf."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0004_i13_booking_cancel_reason_event_version"),
        ("bookings", "0006_i14_payment_deadline"),
    ]

    operations: list[migrations.operations.base.Operation] = []
