"""The invariants the service promises, checked against the tables (manage.py check_consistency,
the `bookings.consistency_check` beat job, and the last step of a restore).

It lives in bookings, the top app, because it reads every app's tables (slots, reservations,
bookings, payments, events); it imports downward only (the direction in docs/architecture.md).
Every check is one set-wise query, and all of them read one snapshot (REPEATABLE READ, read
only), so a hold taken between two queries never shows up as a false mismatch.

`--repair` fixes the slot counters only, one slot at a time, through the slot-write gateway
(`slots.locking.slot_write`: the slot lock, a SERIALIZABLE transaction, the row lock) with a
recount under the row lock; the change is a `SlotUpdated` event (the slot's history) and a
WARNING log line. Everything else is reported, never
"fixed" by a machine: a wrong status, a missing payment or a gap in the event stream needs a
person who knows what happened.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from petpro_booking.core import metrics
from petpro_booking.core.principal import SYSTEM
from petpro_booking.core.progress import progress
from reservations.models import GROUP_MAX_PETS, ReservationStatus
from slots.locking import slot_write
from slots.models import Slot
from slots.services import slot_counters_correct

from .models import BookingStatus
from .services import HOLDS_A_UNIT

logger = logging.getLogger(__name__)

# How many offending rows each check lists in its report (the count is always complete).
SAMPLE_SIZE = 20
REPAIR_REASON = "consistency_repair"
LIVE_BOOKING_STATUSES = (
    BookingStatus.CONFIRMED.value,
    BookingStatus.COMPLETED.value,
    BookingStatus.NO_SHOW.value,
)


@dataclass
class CheckResult:
    name: str
    description: str
    violations: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violations == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "description": self.description,
            "violations": self.violations,
            "samples": self.samples,
        }


@dataclass
class Report:
    checked_at: dt.datetime
    checks: dict[str, CheckResult]
    repaired: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def violations(self) -> int:
        return sum(check.violations for check in self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(),
            "violations": self.violations,
            "checks": {name: check.as_dict() for name, check in self.checks.items()},
            "repaired": self.repaired,
            "refused": self.refused,
        }


def _rows(sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _result(name: str, description: str, rows: list[dict[str, Any]]) -> CheckResult:
    return CheckResult(
        name=name,
        description=description,
        violations=len(rows),
        samples=[{k: _plain(v) for k, v in row.items()} for row in rows[:SAMPLE_SIZE]],
    )


# Every slot with the rows its counters count: bookings that hold a unit, live holds (a hold
# past its expiry still counts until it is expired: it is held in the table).
_SLOT_COUNTS_SQL = """
    SELECT s.id AS slot_id, s.clinic_id, s.service_id, s.capacity,
           s.booked_count, s.held_count,
           COALESCE(b.n, 0) AS booked_rows, COALESCE(r.n, 0) AS held_rows
    FROM slots s
    LEFT JOIN (SELECT slot_id, count(*) AS n FROM bookings
               WHERE status = ANY(%(unit_statuses)s) GROUP BY slot_id) b ON b.slot_id = s.id
    LEFT JOIN (SELECT slot_id, count(*) AS n FROM reservations
               WHERE status = %(held)s GROUP BY slot_id) r ON r.slot_id = s.id
"""


def _slot_count_params() -> dict[str, Any]:
    return {
        "unit_statuses": sorted(str(status) for status in HOLDS_A_UNIT),
        "held": ReservationStatus.HELD.value,
    }


def check_slot_counters() -> CheckResult:
    rows = _rows(
        f"{_SLOT_COUNTS_SQL} WHERE s.booked_count <> COALESCE(b.n, 0) "
        "OR s.held_count <> COALESCE(r.n, 0) ORDER BY s.id",
        _slot_count_params(),
    )
    return _result(
        "slot_counters",
        "every slot's booked_count and held_count equal the bookings and live holds they count",
        rows,
    )


def check_slot_capacity() -> CheckResult:
    rows = _rows(
        f"{_SLOT_COUNTS_SQL} WHERE s.booked_count < 0 OR s.held_count < 0 "
        "OR s.booked_count + s.held_count > s.capacity "
        "OR COALESCE(b.n, 0) + COALESCE(r.n, 0) > s.capacity ORDER BY s.id",
        _slot_count_params(),
    )
    return _result(
        "slot_capacity",
        "no slot's counters, nor the rows they count, exceed its capacity",
        rows,
    )


def check_reservation_bookings() -> CheckResult:
    rows = _rows(
        "SELECT reservation_id, count(*) AS bookings FROM bookings "
        "GROUP BY reservation_id HAVING count(*) > 1 ORDER BY reservation_id"
    )
    return _result("reservation_bookings", "each reservation has at most one booking", rows)


def check_booking_history() -> CheckResult:
    rows = _rows(
        """
        SELECT b.id AS booking_id, b.reference, b.status, h.to_status AS last_history_status
        FROM bookings b
        LEFT JOIN LATERAL (
            SELECT to_status FROM booking_history
            WHERE booking_id = b.id ORDER BY at DESC, id DESC LIMIT 1
        ) h ON true
        WHERE h.to_status IS DISTINCT FROM b.status
        ORDER BY b.id
        """
    )
    return _result(
        "booking_history",
        "every booking's status equals the last to_status of its history",
        rows,
    )


def check_booking_events() -> CheckResult:
    """Bookings created within the event store's retention only: retention removes published
    events older than RETENTION_EVENTS_DAYS, so an older booking's first events are gone on
    purpose (every booking past ~13 months was a violation the check reported forever)."""
    since = timezone.now() - dt.timedelta(days=settings.RETENTION_EVENTS_DAYS)
    rows = _rows(
        """
        SELECT b.id AS booking_id, b.reference, count(e.id) AS events,
               min(e.aggregate_version) AS first_version,
               max(e.aggregate_version) AS last_version
        FROM bookings b
        LEFT JOIN events e ON e.aggregate_id = b.id::text AND e.aggregate_type = 'booking'
        WHERE b.created_at >= %(since)s
        GROUP BY b.id, b.reference
        HAVING count(e.id) = 0 OR min(e.aggregate_version) <> 1
            OR max(e.aggregate_version) <> count(e.id)
        ORDER BY b.id
        """,
        {"since": since},
    )
    return _result(
        "booking_events",
        "every booking of the event store's retention has its events, versions 1..n without a gap",
        rows,
    )


def check_payments() -> CheckResult:
    unpaid_confirmed = _rows(
        """
        SELECT 'confirmed_without_payment' AS problem, b.id AS booking_id, b.reference,
               NULL::uuid AS payment_record_id
        FROM bookings b
        WHERE b.status = %(confirmed)s
          AND EXISTS (SELECT 1 FROM booking_history h
                      WHERE h.booking_id = b.id AND h.to_status = %(pending)s)
          AND NOT EXISTS (SELECT 1 FROM payment_records p
                          WHERE (p.booking_id = b.id OR p.group_id = b.group_id)
                            AND p.status = %(succeeded)s)
        ORDER BY b.id
        """,
        {
            "confirmed": BookingStatus.CONFIRMED.value,
            "pending": BookingStatus.PENDING_PAYMENT.value,
            "succeeded": "succeeded",
        },
    )
    orphan_payments = _rows(
        """
        SELECT 'payment_without_booking_or_refund' AS problem, b.id AS booking_id,
               b.reference, p.id AS payment_record_id
        FROM payment_records p JOIN bookings b ON b.id = p.booking_id
        WHERE p.status = %(succeeded)s AND p.refund_requested_at IS NULL
          AND ((p.group_id IS NULL AND b.status <> ALL(%(live)s))
               OR (p.group_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM bookings g
                                   WHERE g.group_id = p.group_id AND g.status = ANY(%(live)s))))
        ORDER BY p.id
        """,
        {"succeeded": "succeeded", "live": list(LIVE_BOOKING_STATUSES)},
    )
    return _result(
        "payments",
        "every confirmed paid booking has a succeeded payment (its own or its pet group's); "
        "every succeeded payment has a live booking (in its group) or a refund",
        unpaid_confirmed + orphan_payments,
    )


def check_pet_groups() -> CheckResult:
    rows = _rows(
        """
        SELECT 'holds' AS kind, group_id, count(*) AS members FROM reservations
        WHERE group_id IS NOT NULL GROUP BY group_id
        HAVING count(DISTINCT slot_id) > 1 OR count(DISTINCT expires_at) > 1
            OR count(DISTINCT user_id) > 1 OR count(*) > %(max_pets)s
        UNION ALL
        SELECT 'bookings' AS kind, b.group_id, count(*) AS members FROM bookings b
        WHERE b.group_id IS NOT NULL GROUP BY b.group_id
        HAVING count(DISTINCT b.user_id) > 1 OR count(*) > %(max_pets)s
            OR bool_or(NOT EXISTS (SELECT 1 FROM reservations r
                                   WHERE r.id = b.reservation_id AND r.group_id = b.group_id))
        ORDER BY group_id
        """,
        {"max_pets": GROUP_MAX_PETS},
    )
    return _result(
        "pet_groups",
        "the holds of a pet group share one owner, slot and expiry; its bookings one owner and "
        "the holds' group; at most 4 pets",
        rows,
    )


def check_outbox_age() -> CheckResult:
    limit = settings.CONSISTENCY_OUTBOX_MAX_AGE_SECONDS
    rows = _rows(
        """
        SELECT count(*) AS unpublished, min(created_at) AS oldest_created_at,
               EXTRACT(EPOCH FROM now() - min(created_at))::float AS oldest_age_seconds
        FROM events WHERE published_at IS NULL AND failed_at IS NULL
        """
    )
    late = [row for row in rows if (row["oldest_age_seconds"] or 0) > limit]
    return _result(
        "outbox_age",
        f"the oldest unpublished event is younger than {limit} s",
        [{**row, "limit_seconds": limit} for row in late],
    )


def check_hold_expiry() -> CheckResult:
    grace = settings.CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS
    rows = _rows(
        """
        SELECT id AS reservation_id, slot_id, expires_at,
               EXTRACT(EPOCH FROM now() - expires_at)::float AS overdue_seconds
        FROM reservations
        WHERE status = %(held)s AND expires_at < now() - make_interval(secs => %(grace)s)
        ORDER BY expires_at
        """,
        {"held": ReservationStatus.HELD.value, "grace": grace},
    )
    return _result(
        "hold_expiry",
        f"no live hold is past its expiry by more than {grace} s",
        rows,
    )


def check_waitlist() -> CheckResult:
    """The waiting list's rows (read by table name: the app sits above bookings). An offer is a
    live hold of the entry's owner on the entry's slot: one whose hold is missing, elsewhere,
    or ended more than the grace ago is left unsettled (the unit-freed hook and the minute's
    sweep settle them). A waiting entry ends when its slot starts (the sweep): one still
    waiting past the grace holds a place in the owner's live-hold limit for nothing."""
    grace = settings.CONSISTENCY_HOLD_EXPIRY_GRACE_SECONDS
    rows = _rows(
        """
        SELECT 'offer_not_a_live_hold' AS kind, w.id AS entry_id, w.slot_id, w.status,
               r.status AS hold_status
        FROM waitlist_entries w LEFT JOIN reservations r ON r.id = w.reservation_id
        WHERE w.status = 'offered' AND (
            r.id IS NULL OR r.slot_id <> w.slot_id OR r.user_id <> w.user_id
            OR (r.status <> %(held)s AND r.updated_at < now() - make_interval(secs => %(grace)s)))
        UNION ALL
        SELECT 'waiting_on_started_slot' AS kind, w.id AS entry_id, w.slot_id, w.status,
               NULL AS hold_status
        FROM waitlist_entries w JOIN slots s ON s.id = w.slot_id
        WHERE w.status = 'waiting' AND s.start_at < now() - make_interval(secs => %(grace)s)
        ORDER BY entry_id
        """,
        {"held": ReservationStatus.HELD.value, "grace": grace},
    )
    return _result(
        "waitlist",
        "every offered waiting-list entry is a live hold of its owner on its slot (or ended "
        f"less than {grace} s ago); no entry still waits {grace} s after its slot started",
        rows,
    )


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "slot_counters": check_slot_counters,
    "slot_capacity": check_slot_capacity,
    "reservation_bookings": check_reservation_bookings,
    "booking_history": check_booking_history,
    "booking_events": check_booking_events,
    "payments": check_payments,
    "pet_groups": check_pet_groups,
    "outbox_age": check_outbox_age,
    "hold_expiry": check_hold_expiry,
    "waitlist": check_waitlist,
}


def _snapshot_checks(progress_to: Any = None) -> dict[str, CheckResult]:
    """Run every check in one read-only REPEATABLE READ transaction (one snapshot)."""
    outermost = not connection.in_atomic_block
    checks: Iterable[tuple[str, Callable[[], CheckResult]]] = list(CHECKS.items())
    if progress_to is not None:
        checks = progress(checks, description="consistency checks", stream=progress_to)
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # Our own transaction: its level is set before its first query. Inside a caller's
            # transaction (tests) the snapshot is the caller's.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return {name: check() for name, check in checks}


def consistency_check(*, repair: bool = False, progress_to: Any = None) -> Report:
    """Run every check; with `repair`, correct the slot counters that are wrong and check
    again. Sets the `petpro_consistency_violations{check}` gauges. `progress_to`: a stream
    that is shown how far along it is (`core.progress`: a bar on a terminal, lines in a log)."""
    started = timezone.now()
    checks = _snapshot_checks(progress_to)
    report = Report(checked_at=started, checks=checks)
    if repair and not checks["slot_counters"].ok:
        mismatches: Iterable[dict[str, Any]] = _all_counter_mismatches()
        if progress_to is not None:
            mismatches = progress(mismatches, description="repairing", stream=progress_to)
        for sample in mismatches:
            outcome = slot_counters_repair(slot_id=sample["slot_id"])
            if outcome is None:
                continue
            (report.repaired if outcome["repaired"] else report.refused).append(outcome)
        report.checks = _snapshot_checks(progress_to)
    record_metrics(report)
    return report


def _all_counter_mismatches() -> list[dict[str, Any]]:
    return _rows(
        f"{_SLOT_COUNTS_SQL} WHERE s.booked_count <> COALESCE(b.n, 0) "
        "OR s.held_count <> COALESCE(r.n, 0) ORDER BY s.id",
        _slot_count_params(),
    )


def record_metrics(report: Report) -> None:
    for name, check in report.checks.items():
        metrics.CONSISTENCY_VIOLATIONS.labels(check=name).set(check.violations)
    metrics.CONSISTENCY_LAST_RUN.set(time.time())


def slot_counters_repair(*, slot_id: uuid.UUID | str) -> dict[str, Any] | None:
    """Recount one slot's rows through the slot-write gateway (its Redis lock, SERIALIZABLE
    transaction and row lock, like every other write of a slot) and set its counters to them.
    Returns what was done, or None when the counters were right by the time the lock was held.
    Refuses (does not write) when the rows themselves exceed the capacity: that is an
    overbooking for a person to resolve, not a counter to correct."""
    slot = Slot.objects.filter(id=slot_id).first()
    if slot is None:
        return None

    def decide(locked: Slot) -> dict[str, Any] | None:
        counts = _rows(
            f"{_SLOT_COUNTS_SQL} WHERE s.id = %(slot_id)s",
            {**_slot_count_params(), "slot_id": locked.id},
        )[0]
        booked, held = counts["booked_rows"], counts["held_rows"]
        if (booked, held) == (locked.booked_count, locked.held_count):
            return None
        outcome: dict[str, Any] = {
            "slot_id": str(locked.id),
            "before": {"booked_count": locked.booked_count, "held_count": locked.held_count},
            "after": {"booked_count": booked, "held_count": held},
            "capacity": locked.capacity,
        }
        if booked + held > locked.capacity:
            return {**outcome, "repaired": False, "why": "rows exceed capacity"}
        slot_counters_correct(
            slot=locked, booked_count=booked, held_count=held, actor=SYSTEM, reason=REPAIR_REASON
        )
        return {**outcome, "repaired": True}

    outcome = slot_write(
        slot, name="consistency_repair", decide=decide, operation="consistency_repair"
    )
    if outcome is not None:
        log = logger.warning if outcome["repaired"] else logger.error
        log(
            "consistency: slot %s counters %s -> %s (%s)",
            outcome["slot_id"],
            outcome["before"],
            outcome["after"],
            "repaired" if outcome["repaired"] else "refused: " + outcome["why"],
        )
    return outcome
