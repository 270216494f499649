"""JSON encoders that skip ``json``'s set-up on every call.

``JSONEncoder.encode`` builds a new C encoder object, and a dictionary of the
containers it has entered (to refuse circular documents), on every call: for
the small documents the hub writes per event (a record's fields, an effect's
request, an audit entry) that set-up cost about as much as the encoding
itself, and the hub encodes several per event. :func:`compiled` builds the C
encoder once and reuses it. The text is the same, byte for byte, as
``encoder.encode`` gives; only a document that contains itself ends in
``RecursionError`` instead of ``ValueError``, and the hub only encodes
documents it built or parsed from JSON, which cannot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["compiled"]

#: CPython's accelerator (``None`` elsewhere: encode() is used as it is).
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def compiled(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode`` with its C encoder built once (or ``encode`` itself,
    where there is none to build: an indent, or no C accelerator)."""
    if _make_encoder is None or encoder.indent is not None:
        return encoder.encode
    strings = (
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json.encoder.encode_basestring
    )
    chunks = _make_encoder(
        None,  # no circular check: see the module's text
        encoder.default,
        strings,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode
