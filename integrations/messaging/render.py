"""The owner-facing words of a notification, in English or Indonesian (Django i18n: the
catalogue is `locale/id/LC_MESSAGES/django.po`): a subject and a text per template, times in
the clinic's time zone, amounts in the booking's currency (IDR without decimals, EUR with two).

Language: the owner's choice in the User Service (`preferences.language`), else the clinic's
default language, else English. The template name stays in the message, so a Notification
Service with its own wording can ignore these.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import formats, translation
from django.utils.translation import gettext, gettext_lazy, pgettext_lazy

from petpro_booking.core.clock import clinic_zone

LANGUAGES = ("en", "id")
DEFAULT_LANGUAGE = "en"
# ISO 4217 minor units; anything not listed has two.
CURRENCY_DECIMALS = {"IDR": 0, "JPY": 0, "KRW": 0, "VND": 0}

_ = gettext_lazy
SUBJECTS = {
    "booking_confirmed": _("Your visit is booked: %(service)s for %(pet)s"),
    "booking_cancelled": _("Your visit has been cancelled: %(service)s for %(pet)s"),
    "booking_rescheduled": _("Your visit has moved: %(service)s for %(pet)s"),
    "reservation_expired": _("Your hold has expired: %(service)s for %(pet)s"),
    "appointment_reminder": _("Reminder: %(service)s for %(pet)s tomorrow"),
    "waitlist_offer": _("A place is free for you: %(service)s for %(pet)s"),
    "waitlist_offer_withdrawn": _(
        "The place we offered is no longer free: %(service)s for %(pet)s"
    ),
}
TEXTS = {
    "booking_confirmed": _(
        "%(pet)s is booked for %(service)s at %(clinic)s on %(start)s. Reference %(reference)s."
    ),
    "booking_cancelled": _(
        "The visit of %(pet)s for %(service)s at %(clinic)s on %(start)s is cancelled. "
        "Reference %(reference)s."
    ),
    "booking_rescheduled": _(
        "The visit of %(pet)s for %(service)s at %(clinic)s moved from %(previous_start)s to "
        "%(start)s. Reference %(reference)s."
    ),
    "reservation_expired": _(
        "Your hold for %(pet)s (%(service)s at %(clinic)s on %(start)s) has expired; the time "
        "is free again. Hold it again if you still want it."
    ),
    "appointment_reminder": _(
        "See you soon: %(pet)s has %(service)s at %(clinic)s on %(start)s. Reference %(reference)s."
    ),
    "waitlist_offer": _(
        "You are next on the waiting list: %(service)s at %(clinic)s on %(start)s is held for "
        "%(pet)s until %(expires)s. Confirm it before then, or it goes to the next in line."
    ),
    "waitlist_offer_withdrawn": _(
        "The clinic has closed %(service)s at %(clinic)s on %(start)s, so the place we offered "
        "%(pet)s can no longer be confirmed. You keep your place on the waiting list: if the "
        "clinic opens the time again, it is offered to you first."
    ),
}
AMOUNT_LINE = _("Amount: %(amount)s.")
REASON_LINE = _("Reason: %(reason)s.")
REFUND_LINE = _("Your payment will be refunded.")
# Date and time as people of each language write them; month and weekday names come from
# Django's own translations.
DATETIME_FORMAT = pgettext_lazy("notification date and time", "l, j F Y, g:i A T")


def language_for(*, owner_language: str | None, clinic_language: str | None) -> str:
    """The owner's choice if we have it in that language, else the clinic's, else English."""
    for choice in (owner_language, clinic_language):
        code = (choice or "").strip().lower().replace("_", "-").split("-")[0]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def local_datetime(value: Any, zone_name: Any) -> str:
    """`Wednesday, 9 December 2026, 9:00 AM WIB` / `Rabu, 9 Desember 2026, 09.00 WIB`."""
    if not isinstance(value, str):
        return ""
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    local = instant.astimezone(clinic_zone(str(zone_name or "UTC")))
    return formats.date_format(local, str(DATETIME_FORMAT), use_l10n=True)


def money(amount: Any, currency: Any) -> str:
    """`IDR 150.000` (id) / `IDR 150,000` (en); `EUR 45,00` (id) / `EUR 45.00` (en)."""
    code = str(currency or "").upper()
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return f"{code} {amount}".strip()
    places = CURRENCY_DECIMALS.get(code, 2)
    number = formats.number_format(
        value.quantize(Decimal(1).scaleb(-places)),
        decimal_pos=places,
        use_l10n=True,
        force_grouping=True,
    )
    return f"{code} {number}".strip()


def notification_words(template: str, data: dict[str, Any], *, reference: Any, language: str):
    """`(subject, text)` of one notification in `language`."""
    zone = data.get("clinic_timezone")
    with translation.override(language):
        values = {
            "pet": data.get("pet_name") or gettext("your pet"),
            "service": data.get("service_name") or "",
            "clinic": data.get("clinic_name") or "",
            "start": local_datetime(data.get("start_at"), zone),
            "previous_start": local_datetime(data.get("previous_start_at"), zone),
            "expires": local_datetime(data.get("expires_at"), zone),
            "reference": reference or "",
        }
        subject = str(SUBJECTS[template]) % values
        lines = [str(TEXTS[template]) % values]
        if template == "booking_confirmed" and data.get("amount") not in (None, ""):
            lines.append(str(AMOUNT_LINE) % {"amount": money(data["amount"], data.get("currency"))})
        if template == "booking_cancelled":
            if data.get("reason"):
                lines.append(str(REASON_LINE) % {"reason": data["reason"]})
            if data.get("refund_requested"):
                lines.append(str(REFUND_LINE))
        return subject, " ".join(lines)
