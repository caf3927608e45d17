"""Slot search (20 results, authenticated) under gunicorn next to a bare JsonResponse."""

from __future__ import annotations

import json
import urllib.request

from .stack import bench_env, fresh_database, gunicorn, manage, wrk

DATABASE = "petpro_bench_search"
BERLIN = "c0a8e5a2-1d1f-4c35-9a0e-5b1e1c3b9a01"
CHECKUP = "5e7b1a30-0001-4b8e-9d8d-000000000001"


def run() -> str:
    fresh_database(DATABASE)
    env = bench_env(DATABASE)
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "load_demo_data", "--quiet-tokens")
    token = manage(
        env, "issue_token", "--sub", "bench", "--role", "pet_owner", capture=True
    ).strip()
    uncached_env = {**env, "SLOT_SEARCH_CACHE_SECONDS": "0"}
    query = f"/api/v1/slots?clinic_id={BERLIN}&service_id={CHECKUP}&available=true&page_size=20"
    rows, commands = [], []
    for label, server_env, path, auth in [
        ("bare `JsonResponse` (/healthz)", env, "/healthz", None),
        ("slot search, 20 results, cached", env, query, token),
        ("slot search, 20 results, cache off", uncached_env, query, token),
    ]:
        with gunicorn(server_env, workers=2) as server:
            request = urllib.request.Request(server.base_url + path)
            if auth:
                request.add_header("Authorization", f"Bearer {auth}")
            with urllib.request.urlopen(request) as response:
                body = json.loads(response.read())
            if auth:
                assert len(body["results"]) == 20, body
            wrk(server.base_url + path, token=auth, seconds=3)  # warm-up
            result, command = wrk(server.base_url + path, token=auth, seconds=10)
        rows.append(result.row(label))
        commands.append(command)
    table = "\n".join(
        [
            "| endpoint | requests/s | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    return f"""## Slot search vs. a bare JsonResponse

**A reduced stack**, not the production topology of the section "Production topology vs. a
bare Django/DRF baseline": no Celery worker or beat, no relay, no RabbitMQ, no service stubs.
gunicorn, 2 sync workers, PostgreSQL 15 + Redis 7 on the same machine (DEBUG off, demo data);
wrk with 2 threads and 16 connections for 10 s after a 3 s warm-up, all on the same 2 cores.
"cache off" sets `SLOT_SEARCH_CACHE_SECONDS=0`, so every request reads PostgreSQL.

{table}

Command: `make bench BENCH_ARGS=search` (`python -m benchmarks.run search`), which runs
`{commands[1]}` against `gunicorn petpro_booking.wsgi --workers 2`."""
