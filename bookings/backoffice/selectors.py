"""Reads of the daily tool: a clinic's schedule, one slot, a booking's story, the finder.

Every read is scoped by the admin user's Principal like the API: a clinic or booking the user
may not see is "not found".
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Q, QuerySet, Subquery

from integrations.messaging.messages import NOTIFYING_EVENT_TYPES, notification_messages
from integrations.messaging.preferences import notification_channels
from integrations.users import pets_matching, user_get, users_matching
from integrations.users.names import PeopleNames, people_names
from petpro_booking.core.errors import ApplicationError, NotFound
from petpro_booking.core.http import uuid_or_not_found
from petpro_booking.core.models import IdempotencyKey
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from petpro_booking.events.relay import domain_event
from slots.display import clinic_zone, local_label, local_moment
from slots.models import Clinic, ClinicService, Slot, SlotStatus

from ..models import Booking, BookingHistory, BookingStatus, PaymentRecord
from ..selectors import booking_get_for, booking_list_for, payments_of

# Bookings that occupy their slot (shown in the schedule); cancelled ones are on the slot page.
ACTIVE_STATUSES = (
    BookingStatus.PENDING_PAYMENT,
    BookingStatus.CONFIRMED,
    BookingStatus.COMPLETED,
    BookingStatus.NO_SHOW,
)
REFERENCE = re.compile(r"^PP-[A-Z0-9]{6}$", re.IGNORECASE)
FIND_LIMIT = 50
# Owners whose names/contacts the finder compares, most recent bookings first.
FIND_OWNERS_MAX = 300


def clinics_for(principal: Principal) -> QuerySet[Clinic]:
    clinics = Clinic.objects.order_by("name", "id")
    if principal.is_support:
        return clinics
    return clinics.filter(id__in=sorted(principal.clinic_ids))


def clinic_for(*, principal: Principal, clinic_id: str) -> Clinic:
    clinic = clinics_for(principal).filter(id=clinic_id).first()
    if clinic is None:
        raise NotFound("No such clinic.")
    return clinic


def names_annotated(bookings: QuerySet[Booking]) -> QuerySet[Booking]:
    """Bookings with `clinic_name` and `service_name` (the read-model's names)."""
    return bookings.annotate(
        clinic_name=Subquery(Clinic.objects.filter(id=OuterRef("clinic_id")).values("name")[:1]),
        service_name=Subquery(
            ClinicService.objects.filter(id=OuterRef("service_id")).values("name")[:1]
        ),
    )


# --- schedule --------------------------------------------------------------------------------


@dataclass
class Visit:
    booking: Booking
    owner: str
    pet: str


@dataclass
class SlotCell:
    slot: Slot
    starts: dt.datetime  # clinic-local
    ends: dt.datetime
    visits: list[Visit] = field(default_factory=list)

    @property
    def state(self) -> str:
        """open / full / closed: what the colour says."""
        if self.slot.status != SlotStatus.OPEN:
            return "closed"
        if self.free == 0:
            return "full"
        return "open"

    @property
    def free(self) -> int:
        return self.slot.available_capacity


@dataclass
class ScheduleDay:
    day: dt.date
    # One row per clinic-local start time; each row has one list of cells per service column.
    rows: list[tuple[dt.time, list[list[SlotCell]]]]
    cells: int
    width: int

    @property
    def columns(self) -> list[list[SlotCell]]:
        """The day's cells per service column (the week view)."""
        columns: list[list[SlotCell]] = [[] for _ in range(self.width)]
        for _, row in self.rows:
            for index, cells in enumerate(row):
                columns[index].extend(cells)
        return columns


@dataclass
class Schedule:
    clinic: Clinic
    services: list[ClinicService]
    days: list[ScheduleDay]
    names_unavailable: bool


def _local_day_bounds(day: dt.date, zone: dt.tzinfo, days: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=days), dt.time.min, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def schedule_for(
    *, principal: Principal, clinic_id: str, first_day: dt.date, days: int
) -> Schedule:
    """The clinic's slots from `first_day` for `days` clinic-local days, one column per
    service, each slot with its visits (owner and pet names). Four queries plus the names."""
    clinic = clinic_for(principal=principal, clinic_id=clinic_id)
    zone = clinic_zone(clinic.timezone)
    start, end = _local_day_bounds(first_day, zone, days)
    services = list(ClinicService.objects.filter(clinic=clinic).order_by("name", "id"))
    slots = list(
        Slot.objects.filter(clinic=clinic, start_at__gte=start, start_at__lt=end).order_by(
            "start_at", "service_id"
        )
    )
    bookings = list(
        Booking.objects.filter(slot__in=[s.id for s in slots], status__in=ACTIVE_STATUSES).order_by(
            "created_at", "id"
        )
    )
    names = people_names(b.user_id for b in bookings)
    visits: dict[uuid.UUID, list[Visit]] = defaultdict(list)
    for booking in bookings:
        visits[booking.slot_id].append(
            Visit(booking, names.owner(booking.user_id), names.pet(booking.user_id, booking.pet_id))
        )
    column = {service.id: index for index, service in enumerate(services)}
    grid: dict[dt.date, dict[dt.time, list[list[SlotCell]]]] = {
        first_day + dt.timedelta(days=offset): {} for offset in range(days)
    }
    for slot in slots:
        starts = local_moment(slot.start_at, clinic.timezone)
        if slot.service_id not in column or starts.date() not in grid:
            continue
        row = grid[starts.date()].setdefault(starts.time(), [[] for _ in services])
        row[column[slot.service_id]].append(
            SlotCell(
                slot=slot,
                starts=starts,
                ends=local_moment(slot.end_at, clinic.timezone),
                visits=visits[slot.id],
            )
        )
    return Schedule(
        clinic=clinic,
        services=services,
        days=[
            ScheduleDay(
                day=day,
                rows=sorted(rows.items()),
                cells=sum(len(cell) for _, row in rows.items() for cell in row),
                width=len(services),
            )
            for day, rows in grid.items()
        ],
        names_unavailable=names.unavailable,
    )


@dataclass
class SlotPage:
    cell: SlotCell
    clinic: Clinic
    service: ClinicService
    bookings: list[Visit]  # every booking of the slot, cancelled ones too
    cancellable: int


def slot_page_for(*, principal: Principal, slot_id: uuid.UUID | str) -> SlotPage:
    key = uuid_or_not_found(slot_id, what="slot")
    slot = Slot.objects.select_related("clinic", "service").filter(id=key).first()
    if slot is None or not principal.can_manage_clinic(slot.clinic_id):
        raise NotFound("No such slot.")
    bookings = list(slot.bookings.order_by("created_at", "id"))
    names = people_names(b.user_id for b in bookings)
    everyone = [Visit(b, names.owner(b.user_id), names.pet(b.user_id, b.pet_id)) for b in bookings]
    zone_name = slot.clinic.timezone
    cell = SlotCell(
        slot=slot,
        starts=local_moment(slot.start_at, zone_name),
        ends=local_moment(slot.end_at, zone_name),
        visits=[v for v in everyone if v.booking.status in ACTIVE_STATUSES],
    )
    cancellable = sum(
        1 for b in bookings if b.status in (BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED)
    )
    return SlotPage(
        cell=cell,
        clinic=slot.clinic,
        service=slot.service,
        bookings=everyone,
        cancellable=cancellable,
    )


# --- one booking's story ---------------------------------------------------------------------


@dataclass
class Notification:
    event: Event
    channel: str
    template: str
    message_id: str
    state: str  # published / waiting for the relay / set aside (failed)


@dataclass
class BookingStory:
    booking: Booking
    clinic: Clinic | None
    service: ClinicService | None
    zone_name: str
    owner: str
    pet: str
    contact: dict[str, str]
    names_unavailable: bool
    history: list[BookingHistory]
    events: list[Event]
    payments: list[PaymentRecord]
    notifications: list[Notification]
    requests: list[IdempotencyKey]


def _relay_state(event: Event) -> str:
    if event.published_at is not None:
        return "published"
    if event.failed_at is not None:
        return "set aside"
    return "waiting for the relay"


def booking_notifications(events: list[Event], *, user_id: str) -> list[Notification]:
    """The notification messages the relay builds for these events (the same builder and the
    same message ids), each with the state of its event in the outbox. Channels are the
    owner's preferences as they are now."""
    channels = notification_channels(user_id=user_id)
    notes = []
    for event in events:
        if event.event_type not in NOTIFYING_EVENT_TYPES:
            continue
        for message in notification_messages(domain_event(event), channels=channels):
            notes.append(
                Notification(
                    event=event,
                    channel=message.body["channel"],
                    template=message.body["template"],
                    message_id=message.message_id,
                    state=_relay_state(event),
                )
            )
    return notes


def booking_story_for(*, principal: Principal, booking_id: uuid.UUID | str) -> BookingStory:
    """Everything about one booking, oldest first: history, events (the booking's and its
    hold's), payment records, notification messages, idempotent requests."""
    booking = booking_get_for(principal=principal, booking_id=booking_id)
    clinic = Clinic.objects.filter(id=booking.clinic_id).first()
    service = ClinicService.objects.filter(id=booking.service_id).first()
    names = people_names([booking.user_id])
    contact: dict[str, Any] = {}
    try:
        profile = user_get(user_id=booking.user_id)
        contact = dict(profile.extra) if profile is not None else {}
    except ApplicationError:  # names.unavailable already says so on the page
        contact = {}
    aggregates = [str(booking.id), str(booking.reservation_id)]
    events = list(Event.objects.filter(aggregate_id__in=aggregates).order_by("created_at", "id"))
    ids = [str(booking.id), str(booking.reservation_id)]
    requests = list(
        IdempotencyKey.objects.filter(
            Q(path__contains=ids[0]) | Q(path__contains=ids[1]) | Q(response_body__id=ids[0])
        ).order_by("created_at", "id")
    )
    return BookingStory(
        booking=booking,
        clinic=clinic,
        service=service,
        zone_name=clinic.timezone if clinic else "UTC",
        owner=names.owner(booking.user_id),
        pet=names.pet(booking.user_id, booking.pet_id),
        contact={k: str(v) for k, v in contact.items() if v},
        names_unavailable=names.unavailable,
        history=_with_actor_names(list(booking.history.order_by("at", "id"))),
        events=events,
        payments=list(payments_of(booking).order_by("created_at", "id")),  # a group's too
        notifications=booking_notifications(events, user_id=booking.user_id),
        requests=requests,
    )


def _with_actor_names(history: list[BookingHistory]) -> list[BookingHistory]:
    """Give each entry an `actor_name`: the admin user's name for `admin:<pk>` actors."""
    admin_pks = {
        entry.actor_id.removeprefix("admin:")
        for entry in history
        if entry.actor_id.startswith("admin:") and entry.actor_id[6:].isdigit()
    }
    users = get_user_model().objects.filter(pk__in=sorted(admin_pks))
    names = {f"admin:{user.pk}": user.get_full_name() or user.get_username() for user in users}
    for entry in history:
        entry.actor_name = names.get(entry.actor_id, "")  # type: ignore[attr-defined]
    return history


# --- finder ----------------------------------------------------------------------------------


@dataclass
class FoundBooking:
    booking: Booking
    clinic: str
    service: str
    owner: str
    pet: str
    starts: str


@dataclass
class FindResult:
    bookings: list[FoundBooking]
    names: PeopleNames
    truncated: bool


def booking_find(*, principal: Principal, text: str = "", day: dt.date | None = None) -> FindResult:
    """Bookings by reference, owner or pet (id, name), owner's phone or email, and/or the
    clinic-local day of the visit; most recent visit first, at most FIND_LIMIT."""
    bookings = booking_list_for(principal=principal).select_related("slot", "slot__clinic")
    if day is not None:
        # A day is local to each clinic: take a window wide enough for every zone, then keep
        # the visits whose local date is that day.
        window = dt.timedelta(hours=14)
        start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) - window
        bookings = bookings.filter(
            slot__start_at__gte=start, slot__start_at__lt=start + dt.timedelta(days=1) + 2 * window
        )
    text = text.strip()
    if text:
        if REFERENCE.match(text):
            # References are written in capitals: an equality the unique index serves, where
            # `iexact` (UPPER(reference) = UPPER(text)) read every booking in scope.
            bookings = bookings.filter(reference=text.upper())
        else:  # not a reference's shape, so no booking's reference
            recent_owners = list(
                dict.fromkeys(
                    bookings.order_by("-created_at").values_list("user_id", flat=True)[:5000]
                )
            )[:FIND_OWNERS_MAX]
            owners = users_matching(text=text, among=recent_owners)
            pets = pets_matching(text=text, owners=recent_owners)
            bookings = bookings.filter(
                Q(user_id=text)
                | Q(pet_id=text)
                | Q(user_id__in=sorted(owners))
                | Q(pet_id__in=sorted(pets))
            )
    rows = list(bookings.order_by("-slot__start_at", "id")[: FIND_LIMIT * 4])
    if day is not None:
        rows = [
            b for b in rows if local_moment(b.slot.start_at, b.slot.clinic.timezone).date() == day
        ]
    truncated = len(rows) > FIND_LIMIT
    rows = rows[:FIND_LIMIT]
    names = people_names(b.user_id for b in rows)
    services = dict(
        ClinicService.objects.filter(id__in={b.service_id for b in rows}).values_list("id", "name")
    )
    return FindResult(
        bookings=[
            FoundBooking(
                booking=b,
                clinic=b.slot.clinic.name,
                service=services.get(b.service_id, b.service_id),
                owner=names.owner(b.user_id),
                pet=names.pet(b.user_id, b.pet_id),
                starts=local_label(b.slot.start_at, b.slot.clinic.timezone),
            )
            for b in rows
        ],
        names=names,
        truncated=truncated,
    )
