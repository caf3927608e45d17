"""Checks every outbound message against its JSON Schema (kept in `schemas/`) before it is
published; an invalid message is never sent."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

from .messages import OutboundMessage

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_FILES = {
    "analytics": "analytics_event.v1.json",
    "notification": "notification.v1.json",
}


def schema_of(kind: str) -> dict:
    return json.loads((SCHEMA_DIR / SCHEMA_FILES[kind]).read_text())


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = schema_of(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def message_errors(message: OutboundMessage) -> list[str]:
    """Why this message breaks its schema (empty when it is valid), e.g.
    `data: 'pet_name' is a required property`."""
    problems = []
    for error in _validator(message.kind).iter_errors(message.body):
        where = "/".join(str(part) for part in error.absolute_path) or "(message)"
        problems.append(f"{where}: {error.message}")
    return problems
