"""docs/operations.md documents every environment variable the service reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["petpro_booking", "slots", "reservations", "bookings", "integrations"]
READS = re.compile(
    r"""(?:\benv(?:\.\w+)?\(\s*|os\.environ\.get\(\s*|os\.environ\[\s*|os\.getenv\(\s*"""
    r"""|os\.environ\.setdefault\(\s*|env_number\(\s*)["']([A-Z][A-Z0-9_]+)["']"""
)


def variables_read() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        for path in (ROOT / source).rglob("*.py"):
            if "migrations" not in path.parts:
                names |= set(READS.findall(path.read_text()))
    return names


def test_every_variable_is_documented():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs/operations.md").read_text()))
    read = variables_read()
    assert {"DATABASE_URL", "REDIS_URL", "OTEL_TRACES_SAMPLER_ARG", "GUNICORN_WORKERS"} <= read
    assert read - documented == set()
