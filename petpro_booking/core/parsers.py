"""JSON from outside (request bodies, the payment provider's webhooks): parsed, then refused
when it holds what no client of ours sends and this service cannot carry.

* Nesting deeper than MAX_JSON_DEPTH: `json.loads` recurses, and about a thousand `[` (2 KB)
  raised RecursionError, a 500 on every JSON endpoint.
* A lone surrogate (`"\\ud800"`): a string Python holds but UTF-8 cannot encode, so the answer
  that echoes it (DRF repeats a bad choice in its message), the log line and the database row
  all fail.
* NUL (`"\\u0000"`): PostgreSQL's text and jsonb cannot hold it (a DataError at the INSERT or
  in the WHERE of a lookup).

Each is a 400 with the reason, before anything is read or written.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import (  # type: ignore[attr-defined]  # not in the stubs
    JSONParser,
    get_encoding,  # DRF's own charset check: an unknown or non-text codec is a ParseError
)
from rest_framework.utils.json import strict_constant

# Our bodies nest two or three levels (a webhook's provider payload a few more).
MAX_JSON_DEPTH = 32


class UntrustedJSONError(ValueError):
    """JSON that parsed, or did not, and that this service refuses (the message says why)."""


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored or echoed (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def check_untrusted(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise UntrustedJSONError when `value` (parsed JSON) nests deeper than `max_depth` or
    holds a string (a key included) that `text_problem` refuses. Iterative: no recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise UntrustedJSONError(f"a string {problem}")
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise UntrustedJSONError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)


def loads_untrusted(raw: str | bytes, *, strict: bool = True) -> Any:
    """`json.loads` for input from outside: ValueError (UntrustedJSONError or the parser's own)
    for anything `check_untrusted` refuses, NaN and Infinity too when `strict`."""
    try:
        value = json.loads(raw, parse_constant=strict_constant if strict else None)
    except RecursionError as exc:
        raise UntrustedJSONError(f"nested deeper than {MAX_JSON_DEPTH} levels") from exc
    check_untrusted(value)
    return value


class UntrustedJSONParser(JSONParser):
    """DRF's JSONParser with `loads_untrusted`'s refusals (every API body)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        try:
            return loads_untrusted(codecs.getreader(encoding)(stream).read(), strict=self.strict)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
