"""Request values: our ids (UUIDs), and versions as ETags and If-Match (optimistic locking for
edits by people: a stale If-Match is 412)."""

from __future__ import annotations

import uuid

from rest_framework.request import Request

from .errors import NotFound, ValidationFailed


def uuid_or_none(value: object) -> uuid.UUID | None:
    """The one parser of our ids (UUIDs): None for anything that is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


# Whole sentences, so each language words its own (the exception handler translates them).
_NO_SUCH = {
    "slot": "No such slot.",
    "booking": "No such booking.",
    "resource": "No such resource.",
}


def uuid_or_not_found(value: object, *, what: str = "resource") -> uuid.UUID:
    """Our ids are UUIDs; anything else in the path names nothing, so it is a 404."""
    parsed = uuid_or_none(value)
    if parsed is None:
        raise NotFound(_NO_SUCH.get(what, _NO_SUCH["resource"]))
    return parsed


def version_or_none(raw: object) -> int | None:
    """A version a form sent back (admin actions, the daily tool): ASCII digits only, at most
    9 of them (`"²".isdigit()` is true and `int("²")` fails); None for anything else."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return None


def etag_for(version: int) -> str:
    return f'"{version}"'


def if_match_version(request: Request) -> int | None:
    """The version the caller saw, from `If-Match: "<version>"`; None when not sent."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    # ASCII digits only (superscripts, Arabic-Indic digits pass isdigit()), at most 9 of them.
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise ValidationFailed(
            'If-Match must be an ETag this API returned, like "3".',
            details={"If-Match": ["Not a version this API returned."]},
        )
    return int(value)
