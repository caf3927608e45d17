"""The messages other services receive from us: one analytics message per domain event and
notification requests per channel (docs/events.md). Pure functions: everything comes from the
event's payload (docs/events.md); only the owner's channel preferences are looked up, by
the caller-supplied `channels_of`, and analytics pseudonyms are keyed from settings."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from petpro_booking.core.crypto import owner_key

from .render import language_for, notification_words

SCHEMA_VERSION = 1
CHANNELS: tuple[str, ...] = ("email", "push", "sms")
ANALYTICS_ROUTING_KEY = "booking.events.analytics"
NOTIFICATION_ROUTING_KEYS: dict[str, str] = {
    channel: f"booking.notification.{channel}" for channel in CHANNELS
}
# Every durable queue we declare, bound to the routing key of the same name.
QUEUE_NAMES: tuple[str, ...] = (*NOTIFICATION_ROUTING_KEYS.values(), ANALYTICS_ROUTING_KEY)

# Event type -> notification template (docs/events.md).
NOTIFICATION_TEMPLATES: dict[str, str] = {
    "BookingConfirmed": "booking_confirmed",
    "BookingCancelled": "booking_cancelled",
    "BookingRescheduled": "booking_rescheduled",
    "ReservationExpired": "reservation_expired",
    "AppointmentReminderDue": "appointment_reminder",
    "WaitlistOffered": "waitlist_offer",
}
# Events whose reason picks their template: (event type, `data.reason`) -> template. Any
# other reason of these events notifies no one (an offer that lapsed: its hold's
# ReservationExpired tells the owner).
NOTIFICATION_TEMPLATES_BY_REASON: dict[tuple[str, str], str] = {
    # Staff closed the slot while the owner's offer was open: the owner keeps their place.
    ("WaitlistOfferExpired", "slot_closed"): "waitlist_offer_withdrawn",
}
# Event types that may notify their owner (the relay looks the owners up before its claim).
NOTIFYING_EVENT_TYPES: frozenset[str] = frozenset(NOTIFICATION_TEMPLATES) | {
    event_type for event_type, _ in NOTIFICATION_TEMPLATES_BY_REASON
}
APPOINTMENT_FIELDS = (
    "clinic_id",
    "clinic_name",
    "clinic_timezone",
    "service_id",
    "service_name",
    "slot_id",
    "start_at",
    "end_at",
    "start_local",
    "pet_id",
    "pet_name",
)
# What each template needs on top of the appointment.
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "booking_confirmed": ("amount", "currency"),
    "booking_cancelled": ("reason", "refund_requested"),
    "booking_rescheduled": ("previous_slot_id", "previous_start_at", "previous_start_local"),
    "reservation_expired": ("reservation_id", "expires_at"),
    "appointment_reminder": (),
    "waitlist_offer": ("reservation_id", "entry_id", "expires_at", "expires_local"),
    "waitlist_offer_withdrawn": ("entry_id",),
}


@dataclass(frozen=True)
class DomainEvent:
    """An event of the store as the message builder sees it (no ORM)."""

    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    occurred_at: dt.datetime
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    """One AMQP message: routing key, properties and the JSON body."""

    kind: str  # "analytics" | "notification" (names the JSON Schema)
    routing_key: str
    message_id: str
    event_type: str
    body: dict[str, Any]
    correlation_id: str | None = None

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


# Never in an analytics message (docs/security.md): the owner travels as `owner_key`, the pet
# as `pet_key` (keyed hashes); names and free text are left out.
ANALYTICS_DROPPED_FIELDS = frozenset({"user_id", "pet_id", "pet_name", "reason", "internal_note"})


def analytics_data(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data as analytics consumers get it: pseudonymous keys for the owner and the
    pet (HMAC with ANALYTICS_PSEUDONYM_KEYS' newest key), no names, no free text."""
    cleaned = {name: value for name, value in data.items() if name not in ANALYTICS_DROPPED_FIELDS}
    if data.get("user_id"):
        cleaned["owner_key"] = owner_key(str(data["user_id"]))
    if data.get("pet_id"):
        cleaned["pet_key"] = owner_key(f"pet:{data['pet_id']}")
    return cleaned


def analytics_actor(actor: Any) -> Any:
    """A pet owner acting is named by their owner key; staff, support and system ids stay."""
    if isinstance(actor, dict) and actor.get("type") == "user" and actor.get("id"):
        return {**actor, "id": owner_key(str(actor["id"]))}
    return actor


def analytics_message(event: DomainEvent) -> OutboundMessage:
    metadata = event.metadata or {}
    body = {
        "message_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": _timestamp(event.occurred_at),
        "schema_version": SCHEMA_VERSION,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "data": analytics_data(event.data),
        "metadata": {
            "trace_id": metadata.get("trace_id"),
            "correlation_id": metadata.get("correlation_id"),
            "actor": analytics_actor(metadata.get("actor")),
        },
    }
    return OutboundMessage(
        kind="analytics",
        routing_key=ANALYTICS_ROUTING_KEY,
        message_id=event.event_id,
        event_type=event.event_type,
        body=body,
        correlation_id=metadata.get("correlation_id"),
    )


def _local_time(utc_iso: Any, zone_name: Any) -> str | None:
    """The clinic-local ISO time for a UTC ISO time, for payloads that lack it."""
    if not isinstance(utc_iso, str) or not isinstance(zone_name, str):
        return None
    try:
        return dt.datetime.fromisoformat(utc_iso).astimezone(ZoneInfo(zone_name)).isoformat()
    except (ValueError, ZoneInfoNotFoundError):
        return None


def notification_data(template: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What the template needs, taken from the event payload. Missing fields stay missing so
    the JSON Schema, not this function, decides whether the message may go out."""
    wanted = APPOINTMENT_FIELDS + TEMPLATE_FIELDS[template]
    data = {name: payload[name] for name in wanted if payload.get(name) is not None}
    zone = payload.get("clinic_timezone")
    for local_name, utc_name in (
        ("start_local", "start_at"),
        ("previous_start_local", "previous_start_at"),
        ("expires_local", "expires_at"),
    ):
        if local_name in wanted and local_name not in data:
            local = _local_time(payload.get(utc_name), zone)
            if local is not None:
                data[local_name] = local
    return data


# Who made the change, as an owner may see it (issue 12): the actor's role, the vocabulary of
# the booking history shown to owners, never an id (a staff member's id is internal).
ACTOR_ROLES: tuple[str, ...] = ("user", "staff", "support", "system")


def notification_actor(metadata: dict[str, Any] | None) -> dict[str, str]:
    """`{"type": "staff"}` from the event's `metadata.actor`; an event without one (or with a
    role we do not know) was the service's own doing: `system`."""
    actor = (metadata or {}).get("actor")
    role = actor.get("type") if isinstance(actor, dict) else None
    return {"type": role if role in ACTOR_ROLES else "system"}


def notification_message_id(*, event_id: str, template: str, channel: str) -> str:
    """Unique per message and the same on every re-delivery of the same event."""
    return str(uuid.uuid5(uuid.UUID(event_id), f"{template}:{channel}"))


def notification_template(event_type: str, data: dict[str, Any]) -> str | None:
    """The template an event is notified with (docs/events.md), None: it notifies no one."""
    by_reason = NOTIFICATION_TEMPLATES_BY_REASON.get((event_type, data.get("reason") or ""))
    return by_reason or NOTIFICATION_TEMPLATES.get(event_type)


def notification_messages(
    event: DomainEvent, *, channels: Sequence[str], owner_language: str | None = None
) -> list[OutboundMessage]:
    template = notification_template(event.event_type, event.data)
    if template is None:
        return []
    payload = event.data
    data = notification_data(template, payload)
    language = language_for(
        owner_language=owner_language, clinic_language=payload.get("clinic_language")
    )
    subject, text = notification_words(
        template, data, reference=payload.get("reference"), language=language
    )
    occurred_at = _timestamp(event.occurred_at)
    actor = notification_actor(event.metadata)
    messages = []
    for channel in CHANNELS:
        if channel not in channels:
            continue
        message_id = notification_message_id(
            event_id=event.event_id, template=template, channel=channel
        )
        body = {
            "message_id": message_id,
            "channel": channel,
            "template": template,
            "occurred_at": occurred_at,
            "schema_version": SCHEMA_VERSION,
            "recipient": {"user_id": payload.get("user_id")},
            "booking_id": payload.get("booking_id"),
            "reference": payload.get("reference"),
            "language": language,
            "actor": actor,
            "subject": subject,
            "text": text,
            "data": data,
        }
        messages.append(
            OutboundMessage(
                kind="notification",
                routing_key=NOTIFICATION_ROUTING_KEYS[channel],
                message_id=message_id,
                event_type=event.event_type,
                body=body,
                correlation_id=(event.metadata or {}).get("correlation_id"),
            )
        )
    return messages


def messages_for(
    event: DomainEvent,
    *,
    channels_of: Callable[[str], Sequence[str]],
    language_of: Callable[[str], str | None] | None = None,
) -> list[OutboundMessage]:
    """Every message one event produces: analytics first, then its notifications (in the
    owner's language from `language_of`, else the clinic's)."""
    messages = [analytics_message(event)]
    if notification_template(event.event_type, event.data) is not None:
        user_id = event.data.get("user_id")
        channels = channels_of(str(user_id)) if user_id else CHANNELS
        owner_language = language_of(str(user_id)) if user_id and language_of else None
        messages.extend(
            notification_messages(event, channels=channels, owner_language=owner_language)
        )
    return messages
