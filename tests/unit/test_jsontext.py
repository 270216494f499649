"""accord.jsontext: the same text as json's own encoder, without its per-call set-up."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.jsontext import compiled

#: the encoders the hub uses: canonical text, effect requests, HTTP bodies, the stream's check
ENCODERS = [
    json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
    json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str),
    json.JSONEncoder(sort_keys=True, default=str),
    json.JSONEncoder(allow_nan=False),
]

documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@pytest.mark.parametrize("encoder", ENCODERS)
@given(document=documents)
def test_the_text_is_what_encode_gives(encoder: json.JSONEncoder, document: Any) -> None:
    assert compiled(encoder)(document) == encoder.encode(document)


def test_defaults_keys_and_non_ascii_as_encode_has_them() -> None:
    encoder = json.JSONEncoder(sort_keys=True, default=str)
    document = {"b": Decimal("1.10"), "a": date(2026, 1, 31), "3": "Zürich €", "c": (1, 2)}
    assert compiled(encoder)(document) == encoder.encode(document)
    assert compiled(encoder)(document).startswith('{"3": "Z\\u00fcrich \\u20ac"')
    unsorted = json.JSONEncoder()
    keyed = {3: 1.5, None: True, 2.5: [None]}
    assert (
        compiled(unsorted)(keyed)
        == unsorted.encode(keyed)
        == '{"3": 1.5, "null": true, "2.5": [null]}'
    )
    canonical = ENCODERS[0]
    assert compiled(canonical)({"x": "Zürich"}) == '{"x":"Zürich"}'


def test_what_encode_refuses_is_refused() -> None:
    strict = compiled(json.JSONEncoder(allow_nan=False))
    with pytest.raises(ValueError, match="Out of range float"):
        strict({"amount": float("nan")})
    with pytest.raises(TypeError, match="not JSON serializable"):
        strict({"when": date(2026, 1, 31)})


def test_an_indented_encoder_is_used_as_it_is() -> None:
    encoder = json.JSONEncoder(indent=2)
    assert compiled(encoder) == encoder.encode
