"""JSON from outside (request bodies, the payment provider's webhooks and answers, the admin's
JSON fields): parsed, then refused when it holds what no client of ours sends and this
service cannot carry.

* Nesting deeper than MAX_JSON_DEPTH: `json.loads` recurses, and about a thousand `[` (2 KB)
  raised RecursionError, a 500 on every JSON endpoint.
* A lone surrogate (`"\\ud800"`): a string Python holds but UTF-8 cannot encode, so the answer
  that echoes it (DRF repeats a bad choice in its message), the log line and the database row
  all fail.
* NUL (`"\\u0000"`): PostgreSQL's text and jsonb cannot hold it (a DataError at the INSERT or
  in the WHERE of a lookup).
* A number past a float's range (`1e400`): it parses as infinity, which no JSON column holds.

Each is a 400 with the reason, before anything is read or written.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput, JSONString
from rest_framework.exceptions import ParseError
from rest_framework.parsers import (  # type: ignore[attr-defined]  # not in the stubs
    JSONParser,
    get_encoding,  # DRF's own charset check: an unknown or non-text codec is a ParseError
)
from rest_framework.utils.json import strict_constant

from .errors import ValidationFailed

# Our bodies nest two or three levels (a webhook's provider payload a few more).
MAX_JSON_DEPTH = 32
# In a Python str every surrogate is a lone one (a pair decodes to one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")


class UntrustedJSONError(ValueError):
    """JSON that parsed, or did not, and that this service refuses (the message says why);
    `field`: the top-level key of the object it was found under, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
    """Raise UntrustedJSONError when `value` (parsed JSON) nests deeper than `max_depth`, holds
    a string (a key included) that `text_problem` refuses, or a number that overflowed to
    infinity. Iterative: no recursion."""
    top = value if isinstance(value, dict) else {}
    pending: list[tuple[Any, int, str | None]] = [(value, 1, None)]
    while pending:
        item, depth, field = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise UntrustedJSONError(f"a string {problem}", field)
        elif isinstance(item, float) and not math.isfinite(item):
            # `1e400` parses as infinity, which JSON (and jsonb) cannot hold
            raise UntrustedJSONError("a number too large to be stored", field)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise UntrustedJSONError(f"nested deeper than {max_depth} levels", field)
            if isinstance(item, dict):
                for key, child in item.items():
                    pending.append((key, depth, field))  # a bad key is named by no one
                    named = item is top and text_problem(str(key)) is None
                    pending.append((child, depth + 1, str(key) if named else field))
            else:
                pending.extend((child, depth + 1, field) for child in item)


def loads_untrusted(raw: str | bytes) -> Any:
    """`json.loads` for input from outside: ValueError (UntrustedJSONError or the parser's own)
    for anything `check_untrusted` refuses, and for the NaN and Infinity literals."""
    try:
        value = json.loads(raw, parse_constant=strict_constant)
    except RecursionError as exc:
        raise UntrustedJSONError(f"nested deeper than {MAX_JSON_DEPTH} levels") from exc
    check_untrusted(value)
    return value


def cleaned_answer(value: Any) -> Any:
    """A dependency's parsed answer (the User and Clinic Services) with its text made storable:
    NUL characters dropped and lone surrogates replaced by U+FFFD, in keys and values (a pet
    name typed with either failed the hold's event INSERT). Nesting deeper than MAX_JSON_DEPTH
    raises UntrustedJSONError (a malformed answer)."""
    check_depth = [(value, 1)]
    while check_depth:
        item, depth = check_depth.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise UntrustedJSONError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            check_depth.extend((child, depth + 1) for child in children)
    return _cleaned(value)


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        if text_problem(value) is None:
            return value
        return _SURROGATE.sub("\ufffd", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {_cleaned(key): _cleaned(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_cleaned(child) for child in value]
    return value


class UntrustedJSONParser(JSONParser):
    """DRF's JSONParser with `loads_untrusted`'s refusals (every API body): a refusal under one
    field of the body names it in `details`, as any other invalid field does."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        try:
            return loads_untrusted(codecs.getreader(encoding)(stream).read())
        except UntrustedJSONError as exc:
            if exc.field is not None:
                raise ValidationFailed(details={exc.field: [f"Refused: {exc}."]}) from exc
            raise ParseError(f"JSON parse error - {exc}") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class UntrustedJSONFormField(forms.JSONField):
    """Django's form JSONField (the admin's) with `loads_untrusted`'s refusals as the field's
    error: Django's own raised RecursionError on deep nesting, and let NUL and lone surrogates
    through to PostgreSQL's jsonb (each a 500). Refused input is shown again as typed."""

    def to_python(self, value):
        if self.disabled or value in self.empty_values or not isinstance(value, str | bytes):
            return super().to_python(value)
        try:
            converted = loads_untrusted(value)
        except ValueError as exc:
            raise ValidationError(
                f"{self.error_messages['invalid']} ({exc})", code="invalid", params={"value": value}
            ) from exc
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        if self.disabled or data is None or not isinstance(data, str | bytes):
            return super().bound_data(data, initial)
        try:
            return loads_untrusted(data)
        except ValueError:
            return InvalidJSONInput(data)
