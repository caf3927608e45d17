"""JSON from outside is parsed, then refused when it nests too deep or holds text no answer,
log line or column can carry (core/parsers.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from petpro_booking.core.parsers import (
    MAX_JSON_DEPTH,
    UntrustedJSONError,
    loads_untrusted,
    text_problem,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_depth_up_to_the_limit_passes_and_one_more_is_refused():
    assert loads_untrusted(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(UntrustedJSONError, match="nested deeper"):
        loads_untrusted(nested(MAX_JSON_DEPTH + 1))
    # Objects count as lists do; keys are no level of their own.
    deep_object = '{"a": ' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH
    assert loads_untrusted(deep_object) is not None
    with pytest.raises(UntrustedJSONError):
        loads_untrusted('{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1))


def test_a_nesting_past_the_interpreter_recursion_limit_is_refused_not_raised():
    with pytest.raises(UntrustedJSONError):
        loads_untrusted(nested(100_000))


@pytest.mark.parametrize(
    "raw",
    ['"\\ud800"', '{"k": ["a", "\\udfff"]}', '{"\\ud800": 1}', '"a\\u0000b"', '{"a\\u0000": 1}'],
)
def test_lone_surrogates_and_nul_are_refused_in_values_and_keys(raw):
    with pytest.raises(UntrustedJSONError):
        loads_untrusted(raw)


def test_nan_and_infinity_are_refused_as_literals_and_as_overflowing_numbers():
    with pytest.raises(ValueError, match="not JSON compliant"):
        loads_untrusted('{"a": NaN}')
    with pytest.raises(ValueError, match="not JSON compliant"):
        loads_untrusted('{"a": Infinity}')
    # 1e400 is no literal: it parses as inf, which jsonb refused (a 500 at the webhook's save)
    for raw in ('{"a": 1e400}', '{"a": [1, -1e999]}', "1e400"):
        with pytest.raises(UntrustedJSONError, match="too large"):
            loads_untrusted(raw)
    assert loads_untrusted('{"a": 1e300, "b": -1e-400}') == {"a": 1e300, "b": -0.0}


def test_a_surrogate_pair_is_text():
    assert loads_untrusted('"\\ud83d\\udc36"') == "\U0001f436"
    assert text_problem("\U0001f436 ok") is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_shallow_json_of_real_text_comes_back_as_json_loads_gives_it(value):
    raw = json.dumps(value)
    assert loads_untrusted(raw) == json.loads(raw)


def test_the_api_parser_names_the_field_a_refusal_was_found_under():
    import io

    from rest_framework.exceptions import ParseError

    from petpro_booking.core.errors import ValidationFailed
    from petpro_booking.core.parsers import UntrustedJSONParser

    def parse(raw: bytes):
        return UntrustedJSONParser().parse(io.BytesIO(raw), parser_context={})

    with pytest.raises(ValidationFailed) as refused:
        parse(b'{"slot_id": "s", "pet_id": "pet\\u0000"}')
    assert list(refused.value.details) == ["pet_id"]
    with pytest.raises(ValidationFailed) as refused:
        parse(b'{"reason": {"text": ["\\ud800"]}}')
    assert list(refused.value.details) == ["reason"]
    # No field to name: a bad key, a list at the top, nesting with no object around it.
    for raw in (b'{"\\ud800": 1}', b'["\\u0000"]', b"[" * 40 + b"]" * 40):
        with pytest.raises(ParseError):
            parse(raw)
