"""A request body sent with `Transfer-Encoding: chunked` reaches the view (core/chunked.py).
Django reads a body only as far as CONTENT_LENGTH, so it saw none: a chunked hold answered
"slot_id is required", a chunked payment webhook failed its signature (found by a sweep)."""

from __future__ import annotations

import json

import httpx
import pytest

from petpro_booking.core.auth import issue_token

from .test_gunicorn_metrics import gunicorn  # noqa: F401  (the fixture: gunicorn as the image runs it)

pytestmark = pytest.mark.django_db


def chunks(body: bytes, size: int = 7):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_is_read_through_gunicorn(gunicorn):  # noqa: F811
    _, url, _ = gunicorn
    owner = {"Authorization": f"Bearer {issue_token(sub='owner-chunked', roles=['pet_owner'])}"}
    body = json.dumps({"slot_id": "not-a-uuid", "pet_id": "pet-1"}).encode()
    with httpx.Client(base_url=url, timeout=10) as client:
        answer = client.post(
            "/api/v1/reservations",
            content=chunks(body),
            headers={**owner, "Content-Type": "application/json"},
        )
        # The body was read: the view names the bad slot id, not a missing one.
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["details"]["slot_id"] == ["Must be a valid UUID."]

        too_large = b'{"slot_id": "' + b"x" * (2_621_440 + 10) + b'"}'
        refused = client.post(
            "/api/v1/reservations",
            content=chunks(too_large, 65_536),
            headers={**owner, "Content-Type": "application/json"},
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["details"] == {"body": ["At most 2621440 bytes."]}

        # A body with its length goes through as before.
        plain = client.post(
            "/api/v1/reservations",
            content=body,
            headers={**owner, "Content-Type": "application/json"},
        )
        assert plain.json()["error"]["details"]["slot_id"] == ["Must be a valid UUID."]
