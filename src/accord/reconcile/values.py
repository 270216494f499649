"""How values compare: the money rule and text normalisation.

The money rule, applied to text values (files and exports)::

    [sign] [currency symbol] digits [. up to 4 decimals]    or the same with thousands
    separators: 1234.5 · -1,234.50 · $1,234.50 · (1,234.50) · €12 · 1234.5000

reads as an exact :class:`~decimal.Decimal`, so ``1234.5`` equals ``1,234.50``.
A value that does not read as money (``12.34567``, ``1e3``, ``N/A``) is compared
as text, exactly. A column is treated as money when every non-empty value of its
first 1,000 rows on both sides reads as money and no value has a leading zero
(``007`` is a code, not seven) — or when the caller says so (``amount:money``).

Integer values (minor units, as system pairs carry them) compare as themselves;
``hash(Decimal(5)) == hash(5)`` keeps the hash pass consistent with equality.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "MONEY_SAMPLE",
    "looks_like_money",
    "money_value",
    "same",
    "text_value",
]

#: Rows per side sampled to decide whether a file column is money.
MONEY_SAMPLE = 1000

_PLAIN = re.compile(r"-?\d+(?:\.\d{1,4})?")
_MONEY = re.compile(
    r"""\s*
    (?P<open>\()?
    (?P<sign>[-+])?
    \s*[$€£¥]?\s*
    (?P<int>\d{1,3}(?:,\d{3})+|\d+)
    (?:\.(?P<frac>\d{1,4}))?
    (?P<close>\))?
    \s*""",
    re.X,
)
_LEADING_ZERO = re.compile(r"\s*[-+]?[$€£¥]?\s*0\d")


def money_value(value: Any) -> Any:
    """``value`` as an exact decimal if it reads as money, else unchanged.

    ``None`` and empty text become ``None``; integers stay integers (they
    compare and hash equal to the same decimal).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            return None
        if _PLAIN.fullmatch(value):
            return Decimal(value)
        match = _MONEY.fullmatch(value)
        if match is None:
            stripped = value.strip()
            return stripped or None
        if bool(match["open"]) != bool(match["close"]):
            return value
        digits = match["int"].replace(",", "")
        if match["frac"]:
            digits += "." + match["frac"]
        amount = Decimal(digits)
        return -amount if match["sign"] == "-" or match["open"] else amount
    if isinstance(value, float):
        # never compare binary floats as money: go through their shortest text
        return money_value(repr(value))
    return value


def looks_like_money(value: str) -> bool:
    """True when ``value`` (non-empty text) reads as money under the rule above."""
    if _LEADING_ZERO.match(value):
        return False
    return isinstance(money_value(value), Decimal)


def text_value(value: Any) -> Any:
    """Text compared with surrounding white space ignored; empty equals absent."""
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return value


def same(left: Any, right: Any) -> bool:
    """Equality that does not throw on mixed types (``Decimal`` vs text)."""
    try:
        return bool(left == right)
    except (TypeError, InvalidOperation):
        return False
