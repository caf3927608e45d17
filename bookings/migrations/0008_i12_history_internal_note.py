# Issue 12: a staff-only internal note, kept apart from the owner-facing reason (encrypted, like
# the reason since issue 17).

from django.db import migrations

import petpro_booking.core.model_fields


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0007_i13_booking_cancel_reason_event_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="bookinghistory",
            name="internal_note",
            field=petpro_booking.core.model_fields.EncryptedTextField(
                blank=True, default="", db_default=""
            ),
        ),
    ]
