"""The benchmark's guarded hold (`benchmarks/baseline/views.py`, `GuardedHoldCreate`) does
what its docstring and docs/benchmarks.md say it does, against real PostgreSQL and Redis: it
refuses a caller without a valid token, counts the owner's requests in Redis, takes a unit in
one SERIALIZABLE transaction with the hold and its event, refuses a full slot and a slot whose
lock another request holds, and leaves no lock behind. Run in a child process: the baseline is
a Django project of its own (`benchmarks.baseline.settings`). `make bench` runs it next to the
bare hold and the service (docs/benchmarks.md, the production section)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import redis

from benchmarks.topology import PG_BASE, drop_database, fresh_database

ROOT = Path(__file__).resolve().parents[2]
KEY = "guarded-test-key-0123456789abcdef0123"

CHILD = """
import datetime as dt, json, time, uuid
import django
django.setup()
import jwt
from django.core.management import call_command
from django.test import Client
from benchmarks.baseline.models import GuardedEvent, GuardedHold, GuardedSlot

call_command("migrate", "--run-syncdb", "--noinput", "-v0")
now = dt.datetime.now(dt.UTC)
slots = [
    GuardedSlot.objects.create(
        clinic_id="c", service_id="s", start_at=now, end_at=now, capacity=capacity
    )
    for capacity in (2, 1)
]


def token(sub, key=KEY, **claims):
    body = {"sub": sub, "exp": int(time.time()) + 600, "iss": "iss", "aud": "aud", **claims}
    return jwt.encode(body, key, algorithm="HS256")


def hold(slot, auth, pet="pet-1"):
    headers = {"HTTP_HOST": "127.0.0.1"}
    if auth:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {auth}"
    answer = Client().post(
        "/guarded/api/v1/reservations",
        {"slot_id": str(slot.id), "pet_id": pet},
        content_type="application/json",
        **headers,
    )
    return answer.status_code, answer.json()


out = {}
out["no token"] = hold(slots[0], None)[0]
out["foreign key"] = hold(slots[0], token("owner-a", key="another-key-0123456789abcdef01234"))[0]
out["wrong audience"] = hold(slots[0], token("owner-a", aud="other"))[0]
first = hold(slots[0], token("owner-a"))
second = hold(slots[0], token("owner-b"), pet="pet-2")
third = hold(slots[0], token("owner-c"))
out["holds"] = [first[0], second[0], third[0]]
out["third"] = third[1]
out["held_count"] = GuardedSlot.objects.get(id=slots[0].id).held_count
out["rows"] = sorted(
    [h.user_id, h.pet_id, h.status, h.expires_at > now]
    for h in GuardedHold.objects.filter(slot_id=slots[0].id)
)
out["events"] = sorted(
    [e.event_type, e.aggregate_version, e.payload["user_id"], e.published_at is None]
    for e in GuardedEvent.objects.all()
)
out["answer"] = sorted(first[1])
out["answer_matches"] = str(GuardedHold.objects.get(user_id="owner-a").id) == first[1]["id"]
import redis
client = redis.Redis.from_url(REDIS_URL)
client.set(f"lock:slot:{{{slots[1].id}}}", "another-request")
out["slot locked"] = hold(slots[1], token("owner-d"))
out["lock kept"] = client.get(f"lock:slot:{{{slots[1].id}}}") == b"another-request"
out["owner lock released"] = client.exists("lock:owner:owner-d") == 0
client.delete(f"lock:slot:{{{slots[1].id}}}")
out["after unlock"] = hold(slots[1], token("owner-d"))[0]
out["locks left"] = sorted(k.decode() for k in client.keys("lock:*"))
print(json.dumps(out))
"""


def test_the_guarded_hold_keeps_its_guarantees() -> None:
    database = os.environ.get("TEST_DATABASE_NAME", "test_pp") + "_guarded"
    # The test Redis (REDIS_URL), another database number: this test empties it.
    redis_url = (
        urllib.parse.urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"))
        ._replace(path="/14")
        .geturl()
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    fresh_database(database)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    pg = urllib.parse.urlsplit(PG_BASE)
    env.update(
        DJANGO_SETTINGS_MODULE="benchmarks.baseline.settings",
        BASELINE_DB_NAME=database,
        BASELINE_DB_HOST=pg.hostname or "127.0.0.1",
        BASELINE_DB_PORT=str(pg.port or 5432),
        BASELINE_DB_USER=pg.username or "postgres",
        GUARDED_REDIS_URL=redis_url,
        GUARDED_JWT_KEY=KEY,
        GUARDED_JWT_ISSUER="iss",
        GUARDED_JWT_AUDIENCE="aud",
    )
    script = f"KEY = {KEY!r}\nREDIS_URL = {redis_url!r}\n" + CHILD
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["no token"] in (401, 403)
    assert out["foreign key"] in (401, 403)
    assert out["wrong audience"] in (401, 403)
    # Capacity 2: two holds, the third refused; the counter, the rows and the events agree.
    assert out["holds"] == [201, 201, 409]
    assert out["third"] == {"error": {"code": "slot_unavailable"}}
    assert out["held_count"] == 2
    assert out["rows"] == [["owner-a", "pet-1", "held", True], ["owner-b", "pet-2", "held", True]]
    assert out["events"] == [
        ["ReservationCreated", 1, "owner-a", True],
        ["ReservationCreated", 1, "owner-b", True],
    ]
    assert out["answer"] == ["expires_at", "id", "slot_id", "status"]
    assert out["answer_matches"] is True
    # A slot whose lock another request holds: 409, that lock untouched, the owner's freed.
    assert out["slot locked"] == [409, {"error": {"code": "slot_busy"}}]
    assert out["lock kept"] is True
    assert out["owner lock released"] is True
    assert out["after unlock"] == 201
    assert out["locks left"] == []
    # Every request past the token check was counted in Redis, per owner and minute; the
    # search generation moved once per hold made (three), not for the two refusals.
    throttled = {k.decode(): int(client.get(k)) for k in client.keys("throttle:hold:*")}
    assert sorted(key.split(":")[2] for key in throttled) == [
        "owner-a",
        "owner-b",
        "owner-c",
        "owner-d",
    ]
    assert sum(throttled.values()) == 5  # owner-d twice
    assert int(client.get("search-generation")) == 3
    client.flushdb()
    drop_database(database)
