"""Every write of the slots app: create, generate, update, close (one transaction each)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Model
from django.utils import timezone
from django.utils.translation import gettext

from petpro_booking.core.clock import SERVICE_YEARS, in_service_years, wall_clock_instant
from petpro_booking.core.db import RowInserter, insert_when, prepared_cursor
from petpro_booking.core.errors import NotFound, ValidationFailed, VersionConflict
from petpro_booking.core.http import uuid_or_not_found
from petpro_booking.core.principal import Principal
from petpro_booking.events.services import event_append, events_append

from .clinic_sync import clinic_service_ensure_synced, clinic_sync_due
from .errors import CapacityConflict, NotClinicStaff, SlotUnavailable
from .invalidation import clinic_read_model_changed, invalidate_slot_search
from .locking import SlotRef, slot_write, units_freed
from .models import CAPACITY_MAX, ClinicService, Slot, SlotStatus
from .rules import SLOT_CLOSED, BookingRules, buffered_window, rules_of

SLOT_AGGREGATE = "slot"


def slot_event_data(slot: Slot) -> dict[str, Any]:
    """What consumers of slot events need, without querying our tables."""
    return {
        "slot_id": str(slot.id),
        "clinic_id": slot.clinic_id,
        "service_id": slot.service_id,
        "start_at": slot.start_at.isoformat(),
        "end_at": slot.end_at.isoformat(),
        "capacity": slot.capacity,
        "booked_count": slot.booked_count,
        "held_count": slot.held_count,
        "status": slot.status,
        "version": slot.version,
    }


def _require_manager(actor: Principal, clinic_id: str) -> None:
    if not actor.can_manage_clinic(clinic_id):
        raise NotClinicStaff()


def _not_offered() -> ValidationFailed:
    return ValidationFailed(
        "This clinic offers no such service.",
        details={"service_id": ["Not a service of this clinic."]},
    )


def _service_of(*, clinic_id: str, service_id: str) -> ClinicService:
    """The clinic's service a slot is made for. One read when the read-model knows it at a
    clinic synced recently (or when the local tables are the source); otherwise the clinic
    is synced from the Clinic Service first and the service read again."""

    def read() -> ClinicService | None:
        return (
            ClinicService.objects.select_related("clinic")
            .filter(id=service_id, clinic_id=clinic_id)
            .first()
        )

    service = read()
    if clinic_sync_due(service.clinic if service else None):
        clinic_service_ensure_synced(clinic_id=clinic_id, service_id=service_id)
        service = read()
    if service is None:
        raise _not_offered()
    return service


def _capacity_check(capacity: int) -> None:
    if not 1 <= capacity <= CAPACITY_MAX:
        raise ValidationFailed(details={"capacity": [f"Between 1 and {CAPACITY_MAX}."]})


def _years_check(**values: dt.date) -> None:
    """Times and dates of the years the service keeps (the admin's forms reach the services
    without the API's fields; a date past 9998 overflowed the day arithmetic)."""
    for name, value in values.items():
        if not in_service_years(value):
            low, high = SERVICE_YEARS
            raise ValidationFailed(details={name: [f"Between the years {low} and {high}."]})


def slot_create(
    *,
    actor: Principal,
    clinic_id: str,
    service_id: str,
    start_at: dt.datetime,
    end_at: dt.datetime,
    capacity: int = 1,
) -> Slot:
    _require_manager(actor, clinic_id)
    _years_check(start_at=start_at, end_at=end_at)
    if end_at <= start_at:
        raise ValidationFailed(details={"end_at": ["Must be after start_at."]})
    _capacity_check(capacity)
    _service_of(clinic_id=clinic_id, service_id=service_id)
    try:
        with transaction.atomic():
            rules = rules_of(_lock_service(clinic_id=clinic_id, service_id=service_id))
            _buffer_check(service_id=service_id, start_at=start_at, end_at=end_at, rules=rules)
            slot = Slot.objects.create(
                clinic_id=clinic_id,
                service_id=service_id,
                start_at=start_at,
                end_at=end_at,
                capacity=capacity,
            )
            _slots_created([slot], actor=actor)
            invalidate_slot_search(clinic_id=clinic_id)
    except IntegrityError:
        raise _same_start() from None
    return slot


def _same_start() -> ValidationFailed:
    return ValidationFailed(
        "A slot of this service already starts at that time.",
        details={"start_at": ["A slot of this service already starts at that time."]},
    )


def _buffer_check(
    *, service_id: str, start_at: dt.datetime, end_at: dt.datetime, rules: BookingRules
) -> None:
    """The 400 of a new slot whose buffered time overlaps a neighbour's (`_buffer_clashes`)."""
    clash = _buffer_clashes(service_id=service_id, windows=[(start_at, end_at)], rules=rules)
    if clash:
        neighbour = clash[start_at]
        raise ValidationFailed(
            gettext(
                "This slot overlaps a neighbouring slot of the service or its buffer time "
                "(%(before)s min before, %(after)s min after each slot)."
            )
            % {"before": rules.buffer_before_minutes, "after": rules.buffer_after_minutes},
            details={
                "start_at": [
                    f"Too close to the slot starting {neighbour.isoformat()}: keep "
                    f"{rules.buffer_before_minutes} min before and "
                    f"{rules.buffer_after_minutes} min after each slot free."
                ]
            },
        )


def slot_create_check(
    *, clinic_id: str, service_id: str, start_at: dt.datetime, end_at: dt.datetime
) -> None:
    """What `slot_create` would refuse with a 400, checked before it is asked (the admin's
    add form shows it on the form): a service the clinic does not offer, a slot of the service
    already starting then, one too close to a neighbour for the buffers. Reads only; the
    create checks again under the service's lock."""
    service = _service_of(clinic_id=clinic_id, service_id=service_id)
    if Slot.objects.filter(service_id=service_id, start_at=start_at).exists():
        raise _same_start()
    _buffer_check(service_id=service_id, start_at=start_at, end_at=end_at, rules=rules_of(service))


def _slots_created(slots: list[Slot], *, actor: Principal) -> None:
    """One `SlotCreated` per new slot, all in one INSERT: a new slot's first event is its
    version 1, so no version is read (a schedule of 1,440 slots wrote 2,880 statements)."""
    events_append(
        aggregate_type=SLOT_AGGREGATE,
        event_type="SlotCreated",
        items=[(slot.id, slot_event_data(slot)) for slot in slots],
        versions=[1] * len(slots),
        actor=actor,
    )


@dataclass(frozen=True)
class WeeklyWindow:
    weekday: int  # 1 = Monday ... 7 = Sunday (ISO)
    start: dt.time
    end: dt.time


def _lock_service(*, clinic_id: str, service_id: str) -> ClinicService:
    """Slot creation of one service, one at a time: the buffer check sees every neighbour.
    Checked again under the lock: a service that moved to another clinic since `_service_of`
    (the Clinic Service's sync, which takes the same lock) takes no slot here."""
    service = ClinicService.objects.select_for_update().filter(id=service_id).first()
    if service is None or service.clinic_id != clinic_id:
        raise _not_offered()
    return service


def _buffer_clashes(
    *,
    service_id: str,
    windows: list[tuple[dt.datetime, dt.datetime]],
    rules: BookingRules,
) -> dict[dt.datetime, dt.datetime]:
    """The starts of the `windows` (start, end) whose buffered time overlaps that of an
    existing slot of the service, each with the start of the first such neighbour. Only with
    buffers set: without them slots may touch or overlap, as before."""
    if not windows or not _has_buffers(rules):
        return {}
    reach = dt.timedelta(minutes=rules.buffer_before_minutes + rules.buffer_after_minutes)
    neighbours = list(
        Slot.objects.filter(
            service_id=service_id,
            start_at__lt=max(end for _, end in windows) + reach,
            end_at__gt=min(start for start, _ in windows) - reach,
        )
        .order_by("start_at")
        .values_list("start_at", "end_at")
    )
    clashes: dict[dt.datetime, dt.datetime] = {}
    for start, end in windows:
        for other_start, other_end in neighbours:
            if other_start == start:
                continue  # the same start is the unique constraint's case, said elsewhere
            if _buffered_overlap((start, end), (other_start, other_end), rules):
                clashes[start] = other_start
                break
    return clashes


def _has_buffers(rules: BookingRules) -> bool:
    return bool(rules.buffer_before_minutes or rules.buffer_after_minutes)


def _buffered_overlap(
    one: tuple[dt.datetime, dt.datetime],
    other: tuple[dt.datetime, dt.datetime],
    rules: BookingRules,
) -> bool:
    """Whether two slots' buffered times overlap (touching is allowed): the one test of
    manual creation and generation, on instants."""
    mine = buffered_window(start_at=one[0], end_at=one[1], rules=rules)
    theirs = buffered_window(start_at=other[0], end_at=other[1], rules=rules)
    return mine[0] < theirs[1] and theirs[0] < mine[1]


def _window_instant(day: dt.date, time: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The instant the clinic's clock first shows `time` on `day` (the first occurrence of a
    time it shows twice); a time it skips (spring forward) is the instant it jumps over it."""
    wall = dt.datetime.combine(day, time)
    for _ in range(24 * 60):  # a skipped span is at most an hour or two
        instant = wall_clock_instant(wall, zone)
        if instant is not None:
            return instant
        wall += dt.timedelta(minutes=1)
    raise ValueError(f"{day} {time} never shows in {zone}")  # pragma: no cover


def _local_starts(
    *,
    day: dt.date,
    window: WeeklyWindow,
    duration: dt.timedelta,
    zone: ZoneInfo,
    gap: dt.timedelta = dt.timedelta(0),
) -> list[dt.datetime]:
    """Slot starts of one window on one local day, as aware UTC datetimes.

    The window opens and closes at wall-clock times in the clinic's zone, so 09:00 stays
    09:00 across DST (`_window_instant`: a time the clocks skip is the instant they jump over
    it, one they show twice its first occurrence); inside it slots follow each other in
    elapsed time, `duration + gap` apart, so a slot across a clock change lasts its duration
    and keeps its buffers to the next one.
    """
    starts: list[dt.datetime] = []
    cursor = _window_instant(day, window.start, zone)
    window_end = _window_instant(day, window.end, zone)
    while cursor + duration <= window_end:
        starts.append(cursor)
        cursor += duration + gap
    return starts


def _clear_of_each_other(
    starts: list[dt.datetime], *, duration: dt.timedelta, rules: BookingRules
) -> list[dt.datetime]:
    """The new starts (sorted) kept when each must keep the buffers to the ones kept before it
    (two weekly windows of a day may overlap): earliest first, a start too close to the one
    kept last is skipped. All have the same duration, so the last kept is the only one a
    later start can reach. Without buffers every start is kept, as manual creation allows."""
    if not _has_buffers(rules):
        return starts
    kept: list[dt.datetime] = []
    for start in starts:
        if kept and _buffered_overlap(
            (start, start + duration), (kept[-1], kept[-1] + duration), rules
        ):
            continue
        kept.append(start)
    return kept


def slot_generate(
    *,
    actor: Principal,
    clinic_id: str,
    service_id: str,
    date_from: dt.date,
    date_to: dt.date,
    weekly: list[WeeklyWindow],
    capacity: int = 1,
) -> int:
    """Create the slots of a weekly schedule (clinic-local dates, inclusive). Returns how many
    were created. Skipped, as manual creation would refuse them: a start an existing slot of
    the service has, and, with buffers set, a start whose buffered time overlaps an existing
    slot's or a new one's kept before it (earlier start first)."""
    _require_manager(actor, clinic_id)
    _years_check(date_from=date_from, date_to=date_to)
    if date_to < date_from:
        raise ValidationFailed(details={"date_to": ["Must not be before date_from."]})
    if (date_to - date_from).days + 1 > settings.SLOT_GENERATE_MAX_DAYS:
        raise ValidationFailed(
            details={"date_to": [f"At most {settings.SLOT_GENERATE_MAX_DAYS} days at once."]}
        )
    _capacity_check(capacity)
    for index, window in enumerate(weekly):
        if window.end <= window.start:
            raise ValidationFailed(details={"weekly": {str(index): ["end must be after start."]}})
    service = _service_of(clinic_id=clinic_id, service_id=service_id)
    zone = ZoneInfo(service.clinic.timezone)
    duration = dt.timedelta(minutes=service.duration_minutes)
    rules = rules_of(service)
    # Consecutive slots keep the buffers between them: after this one, before the next.
    gap = dt.timedelta(minutes=rules.buffer_after_minutes + rules.buffer_before_minutes)

    wanted: list[dt.datetime] = []
    day = date_from
    while day <= date_to:
        for window in weekly:
            if window.weekday == day.isoweekday():
                wanted.extend(
                    _local_starts(day=day, window=window, duration=duration, zone=zone, gap=gap)
                )
        if len(wanted) > settings.SLOT_GENERATE_MAX_SLOTS:
            # One call must not write (and emit events for) an unbounded number of rows.
            raise ValidationFailed(
                details={
                    "weekly": [
                        f"At most {settings.SLOT_GENERATE_MAX_SLOTS} slots at once; "
                        "split the period or use longer windows."
                    ]
                }
            )
        day += dt.timedelta(days=1)
    if not wanted:
        return 0

    with transaction.atomic():
        _lock_service(clinic_id=clinic_id, service_id=service_id)
        existing = set(
            Slot.objects.filter(
                clinic_id=clinic_id, service_id=service_id, start_at__in=wanted
            ).values_list("start_at", flat=True)
        )
        # A start kept already is skipped; one too close to another existing slot too; then
        # the new ones keep their buffers to each other.
        fresh = sorted(set(wanted) - existing)
        near = _buffer_clashes(
            service_id=service_id,
            windows=[(start, start + duration) for start in fresh],
            rules=rules,
        )
        new_slots = [
            Slot(
                id=uuid.uuid4(),
                clinic_id=clinic_id,
                service_id=service_id,
                start_at=start,
                end_at=start + duration,
                capacity=capacity,
            )
            for start in _clear_of_each_other(
                [start for start in fresh if start not in near], duration=duration, rules=rules
            )
        ]
        # A concurrent generator may insert the same start first: skip, don't fail.
        Slot.objects.bulk_create(new_slots, ignore_conflicts=True, batch_size=500)
        created = list(Slot.objects.filter(id__in=[s.id for s in new_slots]))
        if created:
            _slots_created(created, actor=actor)
            invalidate_slot_search(clinic_id=clinic_id)
    return len(created)


def slot_update(
    *,
    actor: Principal,
    slot_id: uuid.UUID | str,
    expected_version: int | None = None,
    capacity: int | None = None,
    status: str | None = None,
) -> Slot:
    """Change capacity and/or status. `expected_version` (If-Match) makes a stale edit a 412;
    capacity below booked + held is a 409.

    Through the slot-write gateway (`slot_write`: the slot's Redis lock, one SERIALIZABLE
    transaction, the row locked), as every write that can change a slot's counters: a raised
    capacity or a reopened slot gives the waiting list its turn (`units_freed`), whose offers
    take units in this transaction. 409 `slot_busy` when the slot stays busy."""
    if capacity is not None:
        _capacity_check(capacity)
    if status is not None and status not in SlotStatus.values:
        raise ValidationFailed(details={"status": [f"One of {', '.join(SlotStatus.values)}."]})
    seen = (
        Slot.objects.filter(id=uuid_or_not_found(slot_id, what="slot"))
        .values_list("id", "clinic_id", "service_id")
        .first()
    )
    if seen is None:
        raise NotFound("No such slot.")
    _require_manager(actor, seen[1])

    def decide(slot: Slot) -> Slot:
        if expected_version is not None and slot.version != expected_version:
            raise VersionConflict(details={"current_version": slot.version})
        if capacity is not None and capacity < slot.booked_count + slot.held_count:
            raise CapacityConflict(
                details={
                    "taken": slot.booked_count + slot.held_count,
                    "requested_capacity": capacity,
                }
            )
        changes: dict[str, Any] = {}
        if capacity is not None and capacity != slot.capacity:
            changes["capacity"] = capacity
        if status is not None and status != slot.status:
            changes["status"] = status
        if not changes:
            return slot
        previous_capacity = slot.capacity
        Slot.objects.filter(id=slot.id).update(
            version=F("version") + 1, event_version=F("event_version") + 1, **changes
        )
        slot.refresh_from_db()
        event_append(
            aggregate_type=SLOT_AGGREGATE,
            aggregate_id=slot.id,
            event_type="SlotUpdated",
            data={**slot_event_data(slot), "changed": sorted(changes)},
            actor=actor,
            aggregate_version=slot.event_version,
        )
        invalidate_slot_search(clinic_id=slot.clinic_id)
        raised = "capacity" in changes and changes["capacity"] > previous_capacity
        if raised or changes.get("status") == SlotStatus.OPEN:
            units_freed(slot.id)  # more room, or room again: the waiting list's turn
        return slot

    return slot_write(SlotRef(*seen), name="slot_update", decide=decide)


def slot_close(
    *, actor: Principal, slot_id: uuid.UUID | str, expected_version: int | None = None
) -> Slot:
    """Close a slot to new holds; existing holds and bookings stay."""
    return slot_update(
        actor=actor, slot_id=slot_id, expected_version=expected_version, status=SlotStatus.CLOSED
    )


def clinic_service_save(*, actor: Principal, service: ClinicService) -> ClinicService:
    """Save a service edited in the admin (embedded mode: its rules, name, price...); its
    clinic's cached searches go, as the rules decide what is bookable. A service changes
    clinic only while it has no slots (a slot's clinic is its service's: a foreign key holds
    the pair), and only by someone who manages both clinics."""
    _require_manager(actor, service.clinic_id)
    with transaction.atomic():
        before = (
            ClinicService.objects.select_for_update()  # as slot creation locks it
            .filter(pk=service.pk)
            .values_list("clinic_id", flat=True)
            .first()
        )
        moved_from = before if before is not None and before != service.clinic_id else None
        if moved_from is not None:
            _require_manager(actor, moved_from)
            if Slot.objects.filter(service_id=service.pk).exists():
                raise ValidationFailed(
                    "A service with slots cannot move to another clinic.",
                    details={"clinic": ["This service has slots at its clinic: it stays there."]},
                )
        service.save()
        for clinic_id in filter(None, (service.clinic_id, moved_from)):
            invalidate_slot_search(clinic_id=clinic_id)
            clinic_read_model_changed(clinic_id=clinic_id)
    return service


# --- Capacity counters (the database guard against double booking) ---------------------------
# One conditional statement each, never read-modify-write in Python: the WHERE clause is the
# availability check, the row lock of the UPDATE serialises contenders, and the CHECK
# constraints refuse a count below zero or above capacity even if a caller were wrong. Call them
# inside the caller's transaction, after locking the slot row (slot first, then reservations:
# the order every writer of holds and the expiry job follow). Each bumps the slot's version and
# drops the cached searches of its clinic after commit.

# `count` units of an open slot become held, all or none (one unit: a single hold). Positional
# placeholders (count, now, slot id, count): the gate of `insert_when`, which inserts the holds
# and their events in the same statement.
_TAKE_HOLDS_SQL = """
    UPDATE slots SET held_count = held_count + %s, version = version + 1, updated_at = %s
    WHERE id = %s AND status = 'open' AND booked_count + held_count + %s <= capacity
    RETURNING clinic_id
"""
_TAKE_BOOKINGS_SQL = """
    UPDATE slots SET booked_count = booked_count + %(count)s, version = version + 1,
        updated_at = %(now)s
    WHERE id = %(slot_id)s AND status = 'open' AND booked_count + held_count + %(count)s <= capacity
    RETURNING clinic_id
"""
_TAKE_BOOKING_SQL = """
    UPDATE slots SET booked_count = booked_count + 1, version = version + 1, updated_at = %(now)s
    WHERE id = %(slot_id)s AND status = 'open' AND booked_count + held_count < capacity
    RETURNING clinic_id
"""
_RETURN_HOLD_SQL = """
    UPDATE slots SET held_count = held_count - %(count)s, version = version + 1,
        updated_at = %(now)s
    WHERE id = %(slot_id)s RETURNING clinic_id
"""
# Positional placeholders (count, count, now, slot id): the gate of `insert_when`, which
# inserts the bookings and their history rows in the same statement. Only on an open slot: a
# hold left on a closed slot (staff closed it, or cancelled its visits) books nothing.
_CONVERT_HOLDS_SQL = """
    UPDATE slots SET held_count = held_count - %s, booked_count = booked_count + %s,
        version = version + 1, updated_at = %s
    WHERE id = %s AND status = 'open' RETURNING clinic_id
"""
_RETURN_BOOKING_SQL = """
    UPDATE slots SET booked_count = booked_count - 1, version = version + 1, updated_at = %(now)s
    WHERE id = %(slot_id)s RETURNING clinic_id
"""


def _slot_counter_update(sql: str, *, slot_id: uuid.UUID | str, count: int = 1) -> bool:
    # The hex form is a valid uuid literal in PostgreSQL and how SQLite stores UUIDField.
    params: dict[str, Any] = {
        "now": timezone.now(),
        "slot_id": uuid.UUID(str(slot_id)).hex,
        "count": count,
    }
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    invalidate_slot_search(clinic_id=row[0])
    return True


def slot_take_hold(
    *,
    slot_id: uuid.UUID | str,
    count: int = 1,
    rows: list[tuple[RowInserter[Any], Model]] | None = None,
    commit: bool = False,
) -> bool:
    """`count` units of an open slot become held, all or none; False when the slot has not
    that many free units or is closed. `rows` (the holds and their events, built by the caller)
    are inserted by the same statement when the units are taken, and only then: a hold's write
    is one statement (`core.db.insert_when`); `commit=True`, as the first statement of a
    SERIALIZABLE slot write, also commits it in the same round trip."""
    slot_key = uuid.UUID(str(slot_id)).hex
    gated = insert_when(
        _TAKE_HOLDS_SQL, [count, timezone.now(), slot_key, count], rows or [], commit=commit
    )
    if gated is None:
        return False
    invalidate_slot_search(clinic_id=gated[0])
    return True


def slot_return_hold(*, slot_id: uuid.UUID | str, count: int = 1) -> None:
    """`count` held units go back (release or expiry of holds)."""
    if count and _slot_counter_update(_RETURN_HOLD_SQL, slot_id=slot_id, count=count):
        units_freed(slot_id)


def slot_return_holds(*, held_by_slot: dict[uuid.UUID, int], clinic_ids: set[str]) -> None:
    """Many slots' held units go back at once (the expiry job): one UPDATE per distinct count
    instead of one per slot. The caller has locked these slot rows."""
    by_count: dict[int, list[uuid.UUID]] = {}
    for slot_id, count in held_by_slot.items():
        by_count.setdefault(count, []).append(slot_id)
    now = timezone.now()
    for count, slot_ids in by_count.items():
        Slot.objects.filter(id__in=slot_ids).update(
            held_count=F("held_count") - count, version=F("version") + 1, updated_at=now
        )
    for clinic_id in clinic_ids:
        invalidate_slot_search(clinic_id=clinic_id)
    units_freed(*sorted(held_by_slot))


def slot_convert_hold(
    *,
    slot_id: uuid.UUID | str,
    count: int = 1,
    rows: list[tuple[RowInserter[Any], Model]] | None = None,
) -> None:
    """`count` held units become booked (holds confirmed into bookings); the total is
    unchanged. `rows` (the bookings and their history rows, built by the caller) are inserted
    by the same statement (`core.db.insert_when`), only if it converted them. The caller has
    locked the slot row (it cannot have gone). A closed slot converts nothing: 409
    `slot_unavailable` with `details.reason` `slot_closed`, and the caller's transaction,
    which raises it, rolls back (the hold stays held until it expires or is released)."""
    slot_key = uuid.UUID(str(slot_id)).hex
    gated = insert_when(_CONVERT_HOLDS_SQL, [count, count, timezone.now(), slot_key], rows or [])
    if gated is None:
        raise SlotUnavailable(details={"slot_id": str(slot_id), "reason": SLOT_CLOSED})
    invalidate_slot_search(clinic_id=gated[0])


def slot_take_booking(*, slot_id: uuid.UUID | str, count: int = 1) -> bool:
    """`count` units of an open slot become booked without a hold (reschedule onto this
    slot), all or none; False when the slot has not that many free units or is closed."""
    if count == 1:
        return _slot_counter_update(_TAKE_BOOKING_SQL, slot_id=slot_id)
    return _slot_counter_update(_TAKE_BOOKINGS_SQL, slot_id=slot_id, count=count)


def slot_return_booking(*, slot_id: uuid.UUID | str) -> None:
    """A booked unit goes back (cancel, reschedule away from this slot)."""
    if _slot_counter_update(_RETURN_BOOKING_SQL, slot_id=slot_id):
        units_freed(slot_id)


def slot_counters_correct(
    *, slot: Slot, booked_count: int, held_count: int, actor: Principal, reason: str
) -> None:
    """Set a slot's counters to the rows they count (the consistency repair). The caller holds
    the slot's lock and row lock and has recounted in this transaction; the change is recorded
    as a `SlotUpdated` event with the values before it (the slot's history)."""
    previous = {"booked_count": slot.booked_count, "held_count": slot.held_count}
    Slot.objects.filter(id=slot.id).update(
        booked_count=booked_count,
        held_count=held_count,
        version=F("version") + 1,
        event_version=F("event_version") + 1,
        updated_at=timezone.now(),
    )
    slot.refresh_from_db()
    event_append(
        aggregate_type=SLOT_AGGREGATE,
        aggregate_id=slot.id,
        event_type="SlotUpdated",
        data={
            **slot_event_data(slot),
            "changed": ["booked_count", "held_count"],
            "previous": previous,
            "reason": reason,
        },
        actor=actor,
        aggregate_version=slot.event_version,
    )
    invalidate_slot_search(clinic_id=slot.clinic_id)
    if booked_count + held_count < previous["booked_count"] + previous["held_count"]:
        units_freed(slot.id)  # the repair gave units back: the waiting list's turn
