"""Owners in their language (issue 18 point 5): every notification template in English and
Indonesian, times in the clinic's zone, amounts in its currency (IDR without decimals, EUR with
two); the owner's language from the User Service, else the clinic's default."""

from __future__ import annotations

import uuid

import pytest

from integrations.messaging.messages import (
    NOTIFICATION_TEMPLATES,
    NOTIFICATION_TEMPLATES_BY_REASON,
    DomainEvent,
    messages_for,
    notification_messages,
)
from integrations.messaging.preferences import notification_language
from integrations.messaging.render import language_for, money
from integrations.messaging.validation import message_errors

from ...factories import LocalUserFactory
from .test_messages import OCCURRED, booking_event

JAKARTA = {
    "clinic_name": "Klinik Hewan Kemang",
    "clinic_timezone": "Asia/Jakarta",
    "clinic_language": "id",
    "service_name": "Vaksinasi",
    "start_at": "2026-12-09T09:00:00+00:00",  # 16:00 WIB, a Wednesday
    "start_local": "2026-12-09T16:00:00+07:00",
    "amount": "150000.00",
    "currency": "IDR",
}
TEMPLATE_OF = {template: event for event, template in NOTIFICATION_TEMPLATES.items()}
REASON_OF = {template: key for key, template in NOTIFICATION_TEMPLATES_BY_REASON.items()}

# What each template must say, per language: (subject words, text words).
WORDS = {
    "en": {
        "booking_confirmed": ("Your visit is booked", "is booked for"),
        "booking_cancelled": ("has been cancelled", "is cancelled"),
        "booking_rescheduled": ("has moved", "moved from"),
        "reservation_expired": ("hold has expired", "the time is free again"),
        "appointment_reminder": ("Reminder", "See you soon"),
        "waitlist_offer": ("A place is free for you", "next on the waiting list"),
        "waitlist_offer_withdrawn": ("no longer free", "keep your place on the waiting list"),
    },
    "id": {
        "booking_confirmed": ("Kunjungan Anda sudah dipesan", "sudah dipesan untuk"),
        "booking_cancelled": ("Kunjungan Anda dibatalkan", "dibatalkan"),
        "booking_rescheduled": ("Jadwal kunjungan Anda berubah", "dipindahkan dari"),
        "reservation_expired": ("telah berakhir", "waktunya tersedia lagi"),
        "appointment_reminder": ("Pengingat", "Sampai jumpa"),
        "waitlist_offer": ("Ada tempat untuk Anda", "berikutnya di daftar tunggu"),
        "waitlist_offer_withdrawn": ("tidak tersedia lagi", "di daftar tunggu tetap"),
    },
}
WHEN = {"en": "Wednesday, 9 December 2026, 4:00 PM WIB", "id": "Rabu, 9 Desember 2026, 16.00 WIB"}


def event_for(template: str, **overrides) -> DomainEvent:
    if template in REASON_OF:  # an offer withdrawn: the waiting-list entry's own event
        event_type, reason = REASON_OF[template]
        event = booking_event(TEMPLATE_OF["waitlist_offer"], **{**JAKARTA, **overrides})
        data = {k: v for k, v in event.data.items() if k not in ("booking_id", "reference")}
        entry_id = str(uuid.uuid4())
        return DomainEvent(
            event_id=event.event_id,
            event_type=event_type,
            aggregate_type="waitlist_entry",
            aggregate_id=entry_id,
            occurred_at=OCCURRED,
            data={**data, "entry_id": entry_id, "reason": reason, "reservation_id": None},
        )
    extra: dict = {"reason": "", "refund_requested": False}
    if template == "booking_rescheduled":
        extra.update(
            previous_slot_id=str(uuid.uuid4()),
            previous_start_at="2026-12-08T09:00:00+00:00",
            previous_start_local="2026-12-08T16:00:00+07:00",
        )
    event = booking_event(TEMPLATE_OF[template], **{**JAKARTA, **extra, **overrides})
    if template == "waitlist_offer":
        data = {k: v for k, v in event.data.items() if k not in ("booking_id", "reference")}
        entry_id = str(uuid.uuid4())
        return DomainEvent(
            event_id=event.event_id,
            event_type=event.event_type,
            aggregate_type="waitlist_entry",
            aggregate_id=entry_id,
            occurred_at=OCCURRED,
            # The offer ends 09:15 UTC = 16:15 in Jakarta (WIB), written in the clinic's zone.
            data={**data, "entry_id": entry_id, "expires_at": "2026-12-09T09:15:00+00:00"},
        )
    if template == "reservation_expired":
        data = {k: v for k, v in event.data.items() if k not in ("booking_id", "reference")}
        return DomainEvent(
            event_id=event.event_id,
            event_type=event.event_type,
            aggregate_type="reservation",
            aggregate_id=data["reservation_id"],
            occurred_at=OCCURRED,
            data={**data, "expires_at": "2026-12-02T10:00:00+00:00"},
        )
    return event


@pytest.mark.parametrize("language", ["en", "id"])
@pytest.mark.parametrize("template", sorted({*TEMPLATE_OF, *REASON_OF}))
def test_every_template_in_both_languages(template, language):
    event = event_for(template)
    (message,) = notification_messages(event, channels=("email",), owner_language=language)
    body = message.body
    assert message_errors(message) == []
    assert body["template"] == template  # the template's name never changes
    assert body["language"] == language
    subject_words, text_words = WORDS[language][template]
    assert subject_words in body["subject"]
    assert text_words in body["text"]
    assert "Kemang" in body["text"]
    assert "Vaksinasi" in body["subject"]
    assert WHEN[language] in body["text"]  # the clinic's zone, the language's way of writing it
    other = "id" if language == "en" else "en"
    assert WORDS[other][template][1] not in body["text"]
    if template == "booking_rescheduled":
        previous = {"en": "Tuesday, 8 December 2026, 4:00 PM WIB", "id": "Selasa, 8 Desember 2026"}
        assert previous[language] in body["text"]
    if template == "waitlist_offer":
        until = {"en": "4:15 PM WIB", "id": "16.15 WIB"}
        assert until[language] in body["text"]
        assert body["data"]["expires_local"] == "2026-12-09T16:15:00+07:00"
    if template not in ("reservation_expired", "waitlist_offer", "waitlist_offer_withdrawn"):
        assert "PP-7K3F9Q" in body["text"]


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "Amount: IDR 150,000."), ("id", "Jumlah: IDR 150.000.")],
)
def test_idr_amounts_have_no_decimals(language, expected):
    (message,) = notification_messages(
        event_for("booking_confirmed"), channels=("email",), owner_language=language
    )
    assert expected in message.body["text"]


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "Amount: EUR 45.00."), ("id", "Jumlah: EUR 45,00.")],
)
def test_eur_amounts_have_two_decimals(language, expected):
    event = event_for("booking_confirmed", amount="45", currency="EUR")
    (message,) = notification_messages(event, channels=("email",), owner_language=language)
    assert expected in message.body["text"]


def test_cancellation_names_the_reason_and_the_refund_in_the_owners_language():
    event = event_for("booking_cancelled", reason="Dokter sakit", refund_requested=True)
    (message,) = notification_messages(event, channels=("sms",), owner_language="id")
    assert "Alasan: Dokter sakit." in message.body["text"]
    assert "Pembayaran Anda akan dikembalikan." in message.body["text"]


def test_money_formats_by_currency_and_language():
    from django.utils import translation

    with translation.override("en"):
        assert money("1234567.5", "IDR") == "IDR 1,234,568"
        assert money("1234.5", "EUR") == "EUR 1,234.50"
    with translation.override("id"):
        assert money("1234.5", "EUR") == "EUR 1.234,50"


@pytest.mark.parametrize(
    ("owner", "clinic", "expected"),
    [
        ("id", "en", "id"),  # the owner's choice wins
        ("en-GB", "id", "en"),
        ("id_ID", None, "id"),
        (None, "id", "id"),  # no choice: the clinic's default
        ("", "id", "id"),
        ("fr", "id", "id"),  # a language we do not write: the clinic's
        (None, None, "en"),
    ],
)
def test_language_choice(owner, clinic, expected):
    assert language_for(owner_language=owner, clinic_language=clinic) == expected


@pytest.mark.django_db
def test_the_owners_preference_from_the_user_service_chooses_the_language():
    LocalUserFactory(id="owner-1", channels=["email"], locale="en")
    event = event_for("booking_confirmed")  # a clinic whose default is Indonesian
    built = messages_for(
        event,
        channels_of=lambda user_id: ("email",),
        language_of=lambda u: notification_language(user_id=u),
    )
    assert built[1].body["language"] == "en"
    LocalUserFactory(id="owner-2", channels=["email"], locale="")
    event = event_for("booking_confirmed", user_id="owner-2")
    built = messages_for(
        event,
        channels_of=lambda user_id: ("email",),
        language_of=lambda u: notification_language(user_id=u),
    )
    assert built[1].body["language"] == "id"  # no choice: the clinic's
    assert notification_language(user_id="nobody") is None


def test_user_service_preferences_language_is_read():
    from integrations.users.client import _parse_user

    assert _parse_user({"id": "u", "preferences": {"language": "id"}})["locale"] == "id"
    assert _parse_user({"id": "u", "preferences": {}})["locale"] == ""
