"""Accord's own record ids.

Every canonical record carries an id that Accord mints itself, so that the
cross-reference table, not any one connected system, decides identity.

Two kinds are used:

* :func:`new_id` — a ULID: 48 bits of Unix time in milliseconds followed by 80
  random bits, written as 26 characters of Crockford base32. Ids minted in
  different milliseconds sort in creation order as plain strings, which keeps
  database indexes append-mostly and makes logs readable. Within one
  millisecond the order is random (no monotonic counter is kept).
* :func:`deterministic_id` — a UUID version 5 derived from a namespace and a
  business key. Minting it twice from the same key gives the same id, which is
  what makes a billing run idempotent: a billable item keyed by
  ``("billable_item", contract_line, source)`` is the same item on every run.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid

from accord.errors import InvalidInput

__all__ = ["deterministic_id", "id_timestamp_ms", "new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {char: value for value, char in enumerate(_CROCKFORD)}
_ULID_LENGTH = 26
_TIME_LENGTH = 10  # 10 base32 characters hold the 48-bit timestamp
_MAX_TIMESTAMP_MS = (1 << 48) - 1
_RANDOM_BITS = 80
# Root of every deterministic id; fixed forever, or all derived ids change.
_ACCORD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://accord.invalid/ids")
# ASCII unit separator: joins key parts so ("ab", "c") and ("a", "bc") differ.
_KEY_SEPARATOR = "\x1f"


#: Every 10-bit value as its two Crockford characters: a ULID is 13 look-ups.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def _encode(value: int, length: int) -> str:
    """``value`` as ``length`` Crockford base32 characters, most significant first."""
    if length % 2:
        return _CROCKFORD[(value >> (5 * (length - 1))) & 0x1F] + _encode(value, length - 1)
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 0x3FF] for shift in range(5 * (length - 2), -1, -10)])


def new_id(*, now_ms: int | None = None) -> str:
    """Mint a ULID; ``now_ms`` pins the timestamp (tests, back-filled records)."""
    timestamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= timestamp <= _MAX_TIMESTAMP_MS:
        raise InvalidInput(f"timestamp {timestamp} does not fit 48 bits", field="now_ms")
    value = (timestamp << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
    return _encode(value, _ULID_LENGTH)


def id_timestamp_ms(ulid: str) -> int:
    """The millisecond timestamp a ULID was minted at."""
    text = ulid.upper()
    if len(text) != _ULID_LENGTH or any(char not in _DECODE for char in text) or text[0] > "7":
        raise InvalidInput(f"{ulid!r} is not a ULID")
    timestamp = 0
    for char in text[:_TIME_LENGTH]:
        timestamp = (timestamp << 5) | _DECODE[char]
    return timestamp


def deterministic_id(namespace: str, *key: str) -> str:
    """A stable UUID5 for ``key`` within ``namespace`` (e.g. an entity type).

    The same namespace and key always give the same id, and the key parts are
    joined unambiguously, so it can serve as an idempotency key.
    """
    if not namespace:
        raise InvalidInput("a namespace is required", field="namespace")
    if not key:
        raise InvalidInput("at least one key part is required", field="key")
    if any(_KEY_SEPARATOR in part for part in (namespace, *key)):
        raise InvalidInput("key parts must not contain the unit separator", field="key")
    # uuid.uuid5 written out (RFC 4122, section 4.3): the same id, in a third of
    # the time, without building a UUID object only to print it
    name = _scope(namespace) + _KEY_SEPARATOR.join(key).encode()
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@functools.lru_cache(maxsize=256)
def _scope(namespace: str) -> bytes:
    """The UUID5 namespace of ``namespace``, as bytes (a handful exist; derived once each)."""
    return uuid.uuid5(_ACCORD_NAMESPACE, namespace).bytes
