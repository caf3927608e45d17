"""CPU per uncached owner search, in one process: `python -m benchmarks.inproc_search`.

Boots the production topology of `benchmarks/topology.py` (no baseline; the 40,000-slot seed of
`make bench`), then calls `slots.selectors.slot_search` (the query behind an uncached search
page: the services' rules, then one statement) with the filters of the benchmark's uncached
search, a new `start_from` each time, and prints per search: the PostgreSQL backend's CPU
(from /proc, the backend of this process's connection), this process's CPU and the wall time.
`SEARCHES=600`; `HOLDS=2000` first holds that many of the searched service's slots (the mix
leaves its holds there), so the per-held-slot lookups are measured too. Not part of
`make bench`: a tool for finding where a search's time goes (docs/benchmarks.md).
"""

from __future__ import annotations

import datetime as dt
import os
import time

from .topology import Options, Topology


def _backend_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    searches = int(os.environ.get("SEARCHES", "600"))
    holds = int(os.environ.get("HOLDS", "0"))
    with Topology(Options(baseline=False, slots=40_000)) as stack:
        os.environ.update(stack.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "petpro_booking.settings.production"
        import django

        django.setup()
        from django.db import connection

        from slots.selectors import slot_search

        start = dt.datetime.fromisoformat(stack.seed["start"])
        if holds:
            with connection.cursor() as cursor:  # held slots of the searched service
                cursor.execute(
                    "WITH picked AS (SELECT id FROM slots WHERE service_id = 'bench-checkup'"
                    " ORDER BY start_at LIMIT %s), held AS (INSERT INTO reservations (id, slot_id,"
                    " user_id, pet_id, pet_name, pet_name_lookup, status, expires_at, version,"
                    " created_at, updated_at) SELECT gen_random_uuid(), id, 'bench-owner-0',"
                    " 'bench-pet-0', '', '', 'held', now() + interval '1 hour', 1, now(), now()"
                    " FROM picked RETURNING slot_id)"
                    " UPDATE slots SET held_count = 1 WHERE id IN (SELECT slot_id FROM held)",
                    [holds],
                )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]

        def search(index: int) -> dict:
            offset = dt.timedelta(seconds=(index * 7_919) % (30 * 86_400), microseconds=index)
            filters = {
                "clinic_id": "bench-clinic",
                "service_id": "bench-checkup",
                "available": True,
                "start_from": start + offset,
            }
            return slot_search(filters=filters, page=1, page_size=20)

        for index in range(50):  # warm-up: plans, caches
            search(index)
        pg0, cpu0, wall0 = _backend_cpu(backend), time.process_time(), time.perf_counter()
        for index in range(searches):
            found = search(1_000 + index)
        pg = (_backend_cpu(backend) - pg0) / searches * 1000
        cpu = (time.process_time() - cpu0) / searches * 1000
        wall = (time.perf_counter() - wall0) / searches * 1000
        print(
            f"per uncached search: PostgreSQL CPU {pg:.2f} ms, this process {cpu:.2f} ms, "
            f"wall {wall:.2f} ms ({searches} searches, {holds} held slots; last page: "
            f"count {found['count']}, {len(found['results'])} rows)"
        )


if __name__ == "__main__":
    main()
