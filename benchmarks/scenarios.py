"""Request mixes of the production benchmark and the soak, the same for the service and the
bare baseline (which answers the same paths and ignores the token)."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import urllib.parse
from typing import Any

from .load import Request

CLINIC = "bench-clinic"
SERVICE = "bench-checkup"
CONNECTIONS = 16


def search_path(start_from: dt.datetime | None = None) -> str:
    query = {"clinic_id": CLINIC, "service_id": SERVICE, "available": "true", "page_size": "20"}
    if start_from is not None:
        query["start_from"] = start_from.isoformat()
    return "/api/v1/slots?" + urllib.parse.urlencode(query)


class Base:
    """Owners in turn (client i takes owners i, i + stride, ...), slots of a region in
    stripes (client i takes region[i], region[i + stride], ...): no two clients share a slot."""

    hold_path = "/api/v1/reservations"

    def __init__(self, seed: dict, index: int, region: tuple[int, int], stride: int) -> None:
        self.owners = seed["owners"]
        self.slots = seed["slots"]
        self.start = dt.datetime.fromisoformat(seed["start"])
        self.index = index
        self.stride = stride
        self.sent = 0
        self.next_slot = region[0] + index
        self.region_end = region[1]
        self.random = random.Random(index)
        self.held: list[str] = []
        self.run = 0  # which run of this process (factory sets it): see UncachedSearch

    def owner(self) -> tuple[str, dict[str, str]]:
        pet, token = self.owners[(self.index + self.sent * self.stride) % len(self.owners)]
        self.sent += 1
        return pet, {"Authorization": f"Bearer {token}"}

    def hold(self) -> Request | None:
        if self.next_slot >= self.region_end:
            return None  # the region is used up: stop (bounded)
        slot = self.slots[self.next_slot]
        self.next_slot += self.stride
        pet, headers = self.owner()
        return Request("hold", "POST", self.hold_path, {"slot_id": slot, "pet_id": pet}, headers)

    def search(self, start_from: dt.datetime | None = None) -> Request:
        _, headers = self.owner()
        return Request("search", "GET", search_path(start_from), None, headers)

    def done(self, request: Request, status: int, body: Any) -> dict[str, Any]:
        if request.kind == "hold" and status == 201 and isinstance(body, dict):
            self.held.append((body["id"], request.headers["Authorization"]))
        return {}


class CachedSearch(Base):
    """One query, over and over: the service answers from its cache."""

    def next(self) -> Request:
        return self.search()


class UncachedSearch(Base):
    """Every query new (a start_from no request used before, in this run or an earlier one:
    each run draws its own microseconds), so no cache can answer."""

    def next(self) -> Request:
        seconds = (self.index * 1_000_003 + self.sent * 7_919 * self.stride) % (30 * 86_400)
        micro = self.index + 1_000 * self.run
        return self.search(self.start + dt.timedelta(seconds=seconds, microseconds=micro))


class Holds(Base):
    """POST /reservations, every request on a slot of its own."""

    def next(self) -> Request | None:
        return self.hold()


class GuardedHolds(Holds):
    """The baseline's guarded hold (benchmarks/baseline/views.py): the bare hold plus the
    guarantees of the service's contract."""

    hold_path = "/guarded/api/v1/reservations"


class Mix(Base):
    """80 % search (ten popular pages: cached until a hold on the clinic invalidates them),
    15 % hold, 5 % confirm of one of this client's holds (a hold when it has none)."""

    def next(self) -> Request | None:
        draw = self.random.random()
        if draw < 0.80:
            day = self.random.randrange(10)
            return self.search(self.start + dt.timedelta(days=day))
        if draw < 0.95 or not self.held:
            return self.hold()
        reservation, auth = self.held.pop()
        self.sent += 1
        return Request(
            "confirm",
            "POST",
            f"/api/v1/reservations/{reservation}/confirm",
            None,
            {"Authorization": auth},
        )


# Runs are numbered from a random start, so a second process driving the same stack within the
# page cache's life (an experiment after `python -m benchmarks...`) does not send the first
# one's uncached queries again and measure cached pages (odds of a repeat: 1 in 999 a run).
_runs = itertools.count(random.SystemRandom().randrange(1, 1_000))


def factory(kind: type[Base], seed: dict, region: tuple[int, int], stride: int = CONNECTIONS):
    run = next(_runs)  # once per run, in the process that starts the load

    def make(index: int) -> Base:
        client = kind(seed, index, region, stride)
        client.run = run
        return client

    return make
