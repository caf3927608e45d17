"""Numbers read from the environment outside Django's settings (gunicorn's configuration, the
metrics exporter, the tracer), checked as the settings check theirs (settings/base.py): a
value that is not a number or is out of its range stops the process with a message naming the
variable, where a bare `int()` said "invalid literal for int() with base 10: '5s'"."""

from __future__ import annotations

import math
import os


class BadNumber(ValueError):
    """An environment variable's number that cannot be used; the message names it."""


def env_number(
    name: str,
    default: int | float,
    *,
    kind: type[int] | type[float] = int,
    minimum: float = 0,
    maximum: float | None = None,
    above_minimum: bool = False,
) -> int | float:
    """The variable `name` read as `kind`; `default` when it is unset or empty. Refused
    (BadNumber): not a number, not finite, under `minimum` (or equal to it with
    `above_minimum`), over `maximum`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise BadNumber(f"{name} must be {what}, not {raw[:40]!r}.") from None
    if not math.isfinite(value):
        raise BadNumber(f"{name} must be a finite number, not {raw[:40]!r}.")
    if value < minimum or (above_minimum and value == minimum):
        relation = "above" if above_minimum else "at least"
        raise BadNumber(f"{name} must be {relation} {minimum:g}, not {raw[:40]}.")
    if maximum is not None and value > maximum:
        raise BadNumber(f"{name} must be at most {maximum:g}, not {raw[:40]}.")
    return value
