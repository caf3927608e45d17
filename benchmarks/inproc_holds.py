"""CPU per hold of the web tier, in one process: `python -m benchmarks.inproc_holds`.

Boots the production topology of `benchmarks/topology.py` (private Redis, the service stubs,
RabbitMQ, the `pp_bench` database; no baseline), then sends holds through Django's WSGIHandler
with `petpro_booking.settings.production`, after one warm-up hold per owner, and prints the
process CPU time per hold (`time.process_time()`, which other load on the machine disturbs far
less than throughput). `HOLDS=600` holds; `PROFILE=1` adds a cProfile by CPU time
(`SORT=tottime|cumulative`, `LINES=60`). Not part of `make bench`: a tool for finding where a
hold's CPU goes (docs/benchmarks.md, "What brought the hold's CPU down").
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from .topology import Options, Topology


def hold_caller(app: Any) -> Callable[[dict, str], str]:
    """`call(body, token)`: one POST /api/v1/reservations through the WSGI `app`; its status."""

    def call(body: dict, token: str) -> str:
        data = json.dumps(body).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/reservations",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(data),
            "CONTENT_LENGTH": str(len(data)),
            "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
        }
        status: list[str] = []
        b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
        return status[0]

    return call


def main() -> None:
    holds = int(os.environ.get("HOLDS", "600"))
    with Topology(Options(baseline=False, slots=8_000, searched=1_000)) as stack:
        os.environ.update(stack.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "petpro_booking.settings.production"
        import django

        django.setup()
        from django.core.handlers.wsgi import WSGIHandler

        call = hold_caller(WSGIHandler())

        owners, slots = stack.seed["owners"], stack.seed["slots"]
        next_slot = 1_000  # past the searched service's slots
        for pet, token in owners:  # warm-up: every owner's pets known, every path imported
            call({"slot_id": slots[next_slot], "pet_id": pet}, token)
            next_slot += 1
        profile = cProfile.Profile(time.process_time) if os.environ.get("PROFILE") else None
        answers: dict[str, int] = {}
        started = time.process_time()
        if profile:
            profile.enable()
        for index in range(holds):
            pet, token = owners[index % len(owners)]
            answer = call({"slot_id": slots[next_slot], "pet_id": pet}, token)
            next_slot += 1
            answers[answer] = answers.get(answer, 0) + 1
        if profile:
            profile.disable()
        cpu_ms = (time.process_time() - started) / holds * 1000
        print(f"CPU ms per hold: {cpu_ms:.2f} (answers: {answers})")
        if profile:
            stats = pstats.Stats(profile)
            stats.sort_stats(os.environ.get("SORT", "tottime"))
            stats.print_stats(int(os.environ.get("LINES", "60")))


if __name__ == "__main__":
    main()
