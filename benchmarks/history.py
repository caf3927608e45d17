"""A history checker under faults (issue 16 point 2).

A load records every operation it sends through the HTTP API -- search, hold, release,
confirm, cancel, reschedule -- with its start, end and outcome, while the run stops and
restarts Redis, kill -9s a gunicorn worker and the Celery worker, and takes RabbitMQ away for a
while. Afterwards, offline:

1. **Capacity.** No slot was ever over capacity: (a) replaying the outbox events per slot in
   event-id order (every writer of a slot holds its row lock from the UPDATE until COMMIT and
   INSERTs its event in between, so per slot, id order is commit order); (b) from the
   acknowledged operations alone: a unit is certainly taken from the end of an acknowledged
   hold (or reschedule onto the slot) until the start of the first operation that may have
   given it back (release, cancel, reschedule away, any unacknowledged one of those) or the
   hold's expiry; those intervals never overlap more than the capacity.
2. **Acknowledged means done.** Every acknowledged hold, release, confirm, cancel and
   reschedule has its event; every acknowledged booking exists with its events numbered 1..n
   without a gap and its status equal to the last one's; every event was published and its
   message reached the analytics queue (an audit queue bound to the exchange with `#`).
3. **Refusals were true.** Every 409 `slot_unavailable` happened while the slot may really
   have been full: some state of the replay with held + booked >= capacity was committed
   before the call ended and not yet replaced when the call started (the replacing commit's
   latest time is the end of the acknowledged call that caused it; unknown for expiry).

The pure checking functions take plain data, so the test suite checks the checker too.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .load import Record, Request

EPSILON = 0.002  # seconds: float rounding between time.time() and PostgreSQL's now()

# Occupancy change of each event type (+1 takes a unit, -1 gives one back).
TAKES = {"ReservationCreated"}
GIVES = {"ReservationReleased", "ReservationExpired", "BookingCancelled"}


# --- the load --------------------------------------------------------------------------------


class HistoryClient:
    """One simulated owner at a time (owners in turn): holds a random slot of the small set,
    then confirms (60 %), releases (25 %) or forgets the hold (15 %, it expires); a booking is
    then cancelled (50 %), rescheduled to another random slot (40 %) or kept (10 %: kept
    bookings fill the slots for good, so few are kept). A third of the fresh starts are
    searches."""

    def __init__(self, seed: dict, index: int, stride: int) -> None:
        self.owners = seed["owners"]
        self.slots = seed["slots"]
        self.index, self.stride, self.sent = index, stride, 0
        self.random = random.Random(1000 + index)
        self.auth: dict[str, str] = {}
        self.hold_id: str | None = None
        self.booking_id: str | None = None

    def _new_owner(self) -> tuple[str, dict[str, str]]:
        pet, token = self.owners[(self.index + self.sent * self.stride) % len(self.owners)]
        self.sent += 1
        self.auth = {"Authorization": f"Bearer {token}"}
        return pet, self.auth

    def next(self) -> Request:
        draw = self.random.random()
        if self.hold_id:
            hold, self.hold_id = self.hold_id, None
            if draw < 0.60:
                return Request(
                    "confirm",
                    "POST",
                    f"/api/v1/reservations/{hold}/confirm",
                    None,
                    self.auth,
                    {"reservation_id": hold},
                )
            if draw < 0.85:
                return Request(
                    "release",
                    "DELETE",
                    f"/api/v1/reservations/{hold}",
                    None,
                    self.auth,
                    {"reservation_id": hold},
                )
        if self.booking_id:
            booking, self.booking_id = self.booking_id, None
            if draw < 0.50:
                return Request(
                    "cancel",
                    "POST",
                    f"/api/v1/bookings/{booking}/cancel",
                    {"reason": "bench"},
                    self.auth,
                    {"booking_id": booking},
                )
            if draw < 0.90:
                slot = self.random.choice(self.slots)
                return Request(
                    "reschedule",
                    "POST",
                    f"/api/v1/bookings/{booking}/reschedule",
                    {"slot_id": slot, "reason": "bench"},
                    self.auth,
                    {"booking_id": booking, "slot_id": slot},
                )
        pet, auth = self._new_owner()
        if draw < 0.33:
            return Request(
                "search",
                "GET",
                "/api/v1/slots?clinic_id=bench-clinic&service_id=bench-checkup&available=true",
                None,
                auth,
            )
        slot = self.random.choice(self.slots)
        return Request(
            "hold",
            "POST",
            "/api/v1/reservations",
            {"slot_id": slot, "pet_id": pet},
            auth,
            {"slot_id": slot},
        )

    def done(self, request: Request, status: int, body: Any) -> dict[str, Any]:
        note: dict[str, Any] = {}
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            note["error"] = body["error"].get("code")
        if request.kind == "hold" and status == 201:
            self.hold_id = body["id"]
            note.update(reservation_id=body["id"], expires_at=body["expires_at"])
        elif request.kind == "confirm" and status == 201:
            self.booking_id = body["id"]
            note.update(booking_id=body["id"], slot_id=body.get("slot_id"))
        elif request.kind == "reschedule" and status == 200:
            self.booking_id = body["id"]
        elif request.kind == "reschedule" and status == 409:
            self.booking_id = request.note["booking_id"]  # still ours: try again later
        return note


def history_factory(seed: dict, stride: int):
    def make(index: int) -> HistoryClient:
        return HistoryClient(seed, index, stride)

    return make


# --- the offline checker ---------------------------------------------------------------------


@dataclass
class Event:
    id: int
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    payload: dict
    created_at: float  # epoch seconds
    published: bool


@dataclass
class Violations:
    capacity_events: list[str] = field(default_factory=list)
    capacity_acked: list[str] = field(default_factory=list)
    acked_missing: list[str] = field(default_factory=list)
    bookings: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    unjustified_409: list[str] = field(default_factory=list)

    def items(self) -> list[tuple[str, list[str]]]:
        return [
            ("slot over capacity in the event replay", self.capacity_events),
            ("slot over capacity by acknowledged operations", self.capacity_acked),
            ("acknowledged operation without its event", self.acked_missing),
            ("acknowledged booking missing, gapped or with a wrong status", self.bookings),
            ("event unpublished or its message not in the queue", self.messages),
            ("409 slot_unavailable while the slot was never full", self.unjustified_409),
        ]

    @property
    def total(self) -> int:
        return sum(len(found) for _, found in self.items())


def _deltas(event: Event) -> list[tuple[str, int]]:
    slot = str(event.payload.get("slot_id"))
    if event.event_type in TAKES:
        return [(slot, +1)]
    if event.event_type in GIVES:
        return [(slot, -1)]
    if event.event_type == "BookingRescheduled":
        return [(str(event.payload.get("previous_slot_id")), -1), (slot, +1)]
    return []


def replay(events: list[Event]) -> dict[str, list[tuple[int, int]]]:
    """Per slot: [(event id, occupancy after it)] in event-id order."""
    occupancy: dict[str, int] = defaultdict(int)
    states: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.id):
        for slot, delta in _deltas(event):
            occupancy[slot] += delta
            states[slot].append((event.id, occupancy[slot]))
    return states


def _acked(record: Record) -> bool:
    return 200 <= record.status < 300


def _causing_op(events: list[Event], ops: list[Record]) -> dict[int, Record]:
    """Event id -> the acknowledged operation that wrote it (where one can be told)."""
    by_key: dict[tuple[str, str], Record] = {}
    for op in ops:
        if not _acked(op):
            continue
        note = op.note
        if op.kind == "hold":
            by_key[("ReservationCreated", note["reservation_id"])] = op
        elif op.kind == "release":
            by_key[("ReservationReleased", note["reservation_id"])] = op
        elif op.kind == "confirm":
            by_key[("ReservationConfirmed", note["reservation_id"])] = op
        elif op.kind == "cancel":
            by_key[("BookingCancelled", note["booking_id"])] = op
    out = {}
    reschedules: dict[str, list[Record]] = defaultdict(list)
    for op in ops:
        if op.kind == "reschedule" and _acked(op):
            reschedules[op.note["booking_id"]].append(op)
    for event in events:
        if event.event_type == "BookingRescheduled":
            # The acknowledged reschedule of this booking onto this slot, if any.
            for op in reschedules.get(event.aggregate_id, []):
                if op.note["slot_id"] == str(event.payload.get("slot_id")):
                    out[event.id] = op
            continue
        op = by_key.get((event.event_type, event.aggregate_id))
        if op is not None:
            out[event.id] = op
    return out


def check(
    ops: list[Record],
    events: list[Event],
    capacity: dict[str, int],
    bookings: dict[str, str],
    queued_ids: set[str] | None,
) -> Violations:
    """`bookings`: booking id -> status in the database; `queued_ids`: message ids found in
    the analytics audit queue (None: not checked)."""
    found = Violations()
    states = replay(events)
    events_by_id = {e.id: e for e in events}

    # 1a. Capacity in the event replay.
    for slot, history in states.items():
        for event_id, occupancy in history:
            if occupancy > capacity.get(slot, 0) or occupancy < 0:
                found.capacity_events.append(
                    f"slot {slot}: {occupancy} of {capacity.get(slot)} after event {event_id}"
                )

    # 1b. Capacity by acknowledged operations (intervals where a unit is certainly taken).
    _check_acked_capacity(ops, capacity, found)

    # 2. Acknowledged operations have their events; bookings complete.
    have = {(e.event_type, e.aggregate_id) for e in events}
    reschedule_targets = {
        (e.aggregate_id, str(e.payload.get("slot_id")))
        for e in events
        if e.event_type == "BookingRescheduled"
    }
    for op in ops:
        if not _acked(op):
            continue
        note = op.note
        wanted: list[tuple[str, str]] = []
        if op.kind == "hold":
            wanted = [("ReservationCreated", note["reservation_id"])]
        elif op.kind == "confirm":
            wanted = [
                ("ReservationConfirmed", note["reservation_id"]),
                ("BookingCreated", note["booking_id"]),
            ]
        elif op.kind == "cancel":
            wanted = [("BookingCancelled", note["booking_id"])]
        elif op.kind == "release":
            rid = note["reservation_id"]
            if ("ReservationReleased", rid) not in have and ("ReservationExpired", rid) not in have:
                found.acked_missing.append(f"release of {rid} at {op.start:.3f}: no event")
        elif (
            op.kind == "reschedule"
            and (note["booking_id"], note["slot_id"]) not in reschedule_targets
        ):
            found.acked_missing.append(
                f"reschedule of {note['booking_id']} to {note['slot_id']}: no event"
            )
        for key in wanted:
            if key not in have:
                found.acked_missing.append(f"{op.kind} at {op.start:.3f}: no {key[0]} {key[1]}")
    versions: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.aggregate_type == "booking":
            versions[event.aggregate_id].append(event)
    for op in ops:
        if op.kind != "confirm" or not _acked(op):
            continue
        booking = op.note["booking_id"]
        if booking not in bookings:
            found.bookings.append(f"booking {booking} acknowledged but not in the database")
            continue
        chain = sorted(versions.get(booking, []), key=lambda e: e.aggregate_version)
        numbers = [e.aggregate_version for e in chain]
        if numbers != list(range(1, len(chain) + 1)):
            found.bookings.append(f"booking {booking}: event versions {numbers}")
        elif chain and chain[-1].payload.get("status") != bookings[booking]:
            found.bookings.append(
                f"booking {booking}: status {bookings[booking]}, last event says "
                f"{chain[-1].payload.get('status')}"
            )
    for event in events:
        if not event.published:
            found.messages.append(f"event {event.id} ({event.event_type}) never published")
        elif queued_ids is not None and event.event_id not in queued_ids:
            found.messages.append(f"event {event.id} ({event.event_type}) not in the queue")

    # 3. Every 409 slot_unavailable was justified.
    causing = _causing_op(events, ops)
    for op in ops:
        if op.status != 409 or op.note.get("error") != "slot_unavailable":
            continue
        slot = op.note["slot_id"]
        if not _maybe_full(states.get(slot, []), capacity.get(slot, 0), op, events_by_id, causing):
            found.unjustified_409.append(
                f"{op.kind} on slot {slot} in [{op.start:.3f}, {op.end:.3f}] answered 409 "
                f"slot_unavailable; the slot was not full then"
            )
    return found


def _maybe_full(history, capacity, op, events_by_id, causing) -> bool:
    for position, (event_id, occupancy) in enumerate(history):
        if occupancy < capacity:
            continue
        if events_by_id[event_id].created_at > op.end + EPSILON:
            continue  # committed after the call ended (created_at: its transaction's start)
        if position + 1 == len(history):
            return True  # still full at the end
        replacing = history[position + 1][0]
        op_of_next = causing.get(replacing)
        latest_commit = op_of_next.end if op_of_next is not None else float("inf")
        if latest_commit + EPSILON >= op.start:
            return True
    return False


def _check_acked_capacity(ops: list[Record], capacity: dict[str, int], found: Violations) -> None:
    """Intervals in which a unit is certainly taken, per slot, from acknowledged operations;
    a unit's interval ends at the start of the first call that may have given it back."""
    from datetime import datetime

    # What may give back a reservation's / a booking's unit, and when that call started.
    may_free_hold: dict[str, float] = {}
    may_free_booking: dict[str, list[tuple[float, Record]]] = defaultdict(list)
    for op in ops:
        if op.kind == "release":  # whatever its answer: it may have given the unit back
            rid = op.note["reservation_id"]
            may_free_hold[rid] = min(may_free_hold.get(rid, float("inf")), op.start)
        if op.kind in ("cancel", "reschedule"):
            may_free_booking[op.note["booking_id"]].append((op.start, op))
    confirmed_booking: dict[str, str] = {}  # reservation id -> booking id (acknowledged)
    for op in ops:
        if op.kind == "confirm" and _acked(op):
            confirmed_booking[op.note["reservation_id"]] = op.note["booking_id"]
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for op in ops:
        if op.kind != "hold" or not _acked(op):
            continue
        rid, slot = op.note["reservation_id"], op.note["slot_id"]
        end = may_free_hold.get(rid, float("inf"))
        booking = confirmed_booking.get(rid)
        if booking is None:
            expires = datetime.fromisoformat(op.note["expires_at"]).timestamp()
            end = min(end, expires)
        else:
            moves = sorted(may_free_booking.get(booking, []), key=lambda item: item[0])
            if moves:
                end = min(end, moves[0][0])
        if end > op.end:
            intervals[slot].append((op.end, end))
    for booking_ops in may_free_booking.values():
        ordered = sorted(booking_ops, key=lambda item: item[0])
        for position, (_, op) in enumerate(ordered):
            if op.kind == "reschedule" and _acked(op):
                later = [start for start, _ in ordered[position + 1 :]]
                end = min(later) if later else float("inf")
                if end > op.end:
                    intervals[op.note["slot_id"]].append((op.end, end))
    for slot, spans in intervals.items():
        points = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        taken = 0
        for moment, delta in points:
            taken += delta
            if taken > capacity.get(slot, 0):
                found.capacity_acked.append(
                    f"slot {slot}: {taken} units certainly taken at {moment:.3f} "
                    f"(capacity {capacity.get(slot, 0)})"
                )
                break
