"""Money as integer minor units of an ISO 4217 currency.

Accord never stores or computes money as a float. A :class:`Money` holds an
``int`` number of the currency's minor units (cents, pence; yen have none,
Bahraini dinar have three) and refuses arithmetic across currencies, so a
mixed-currency sum is a bug caught where it happens rather than a wrong total
found at month end.

Rules compute in :class:`~decimal.Decimal` and come back to money through
:func:`Money.from_decimal`, which rounds half-up to the currency's minor unit —
the rounding that DOMAIN.md prescribes for every billed amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache, lru_cache

from babel.numbers import get_currency_precision, list_currencies

__all__ = [
    "CurrencyMismatch",
    "Money",
    "UnknownCurrency",
    "currency_digits",
    "quantize",
    "round_half_up",
]


class UnknownCurrency(ValueError):
    """The code is not an ISO 4217 currency Accord knows."""


class CurrencyMismatch(ValueError):
    """Two amounts of different currencies were combined."""


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


_DIGITS: dict[str, int] = {}
"""Digits of every currency seen so far; a plain dict because money is hot code."""


def currency_digits(currency: str) -> int:
    """Number of minor-unit digits of ``currency`` (JPY 0, EUR 2, BHD 3)."""
    digits = _DIGITS.get(currency)
    if digits is None:
        if not isinstance(currency, str) or currency not in _known_currencies():
            raise UnknownCurrency(f"unknown currency code {currency!r}")
        digits = _DIGITS[currency] = int(get_currency_precision(currency))
    return digits


_ONE = Decimal(1)


@lru_cache(maxsize=512)
def _exponent(digits: int) -> Decimal:
    return Decimal(1).scaleb(-digits)


def round_half_up(value: Decimal, digits: int) -> Decimal:
    """Round ``value`` half-up (away from zero on a tie) to ``digits`` decimals."""
    return value.quantize(_exponent(digits), rounding=ROUND_HALF_UP)


def quantize(value: Decimal, currency: str) -> Decimal:
    """Round ``value`` half-up to the minor unit of ``currency``."""
    return round_half_up(value, currency_digits(currency))


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount of one currency in integer minor units.

    ``Money(1050, "EUR")`` is 10.50 EUR; ``Money(1050, "JPY")`` is 1,050 yen.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:  # bool and float are both refused
            raise TypeError(f"Money.minor must be int, not {type(self.minor).__name__}")
        if self.currency not in _DIGITS:
            currency_digits(self.currency)  # validates the code

    # -- construction -----------------------------------------------------

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_decimal(cls, value: Decimal | int | str, currency: str) -> Money:
        """Round a major-unit amount half-up to the currency's minor unit."""
        if isinstance(value, float):
            raise TypeError("money is never built from a float")
        digits = _DIGITS.get(currency)
        if digits is None:
            digits = currency_digits(currency)
        if not isinstance(value, Decimal):
            value = Decimal(value)
        return cls(int(value.scaleb(digits).quantize(_ONE, rounding=ROUND_HALF_UP)), currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse a major-unit string that must already fit the minor unit.

        ``Money.parse("10.005", "EUR")`` is refused: an amount given as data
        must not be silently rounded.
        """
        value = Decimal(text)
        digits = currency_digits(currency)
        if value != round_half_up(value, digits):
            raise ValueError(f"{text!r} has more than {digits} decimals for {currency}")
        return cls(int(value.scaleb(digits)), currency)

    # -- views ------------------------------------------------------------

    @property
    def digits(self) -> int:
        return _DIGITS[self.currency]

    @property
    def amount(self) -> Decimal:
        """The value in major units, with exactly the currency's digits."""
        return Decimal(self.minor).scaleb(-_DIGITS[self.currency])

    def format(self) -> str:
        """Plain string with exactly the currency's minor digits ("1650.00")."""
        digits = _DIGITS[self.currency]
        if digits == 0:
            return str(self.minor)
        whole, part = divmod(abs(self.minor), 10**digits)
        sign = "-" if self.minor < 0 else ""
        return f"{sign}{whole}.{part:0{digits}d}"

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"

    # -- arithmetic -------------------------------------------------------

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.minor), self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def is_zero(self) -> bool:
        return self.minor == 0

    def times(self, factor: Decimal | int) -> Money:
        """Multiply by a Decimal factor, rounding half-up to the minor unit."""
        if isinstance(factor, float):
            raise TypeError("money is never multiplied by a float")
        if not factor:
            return Money(0, self.currency)
        exact = Decimal(self.minor) * factor  # still in minor units
        return Money(int(exact.quantize(_ONE, rounding=ROUND_HALF_UP)), self.currency)

    def convert(self, rate: Decimal, to: str) -> Money:
        """Convert at ``rate`` (1 unit of this currency = ``rate`` units of ``to``)."""
        return Money.from_decimal(self.amount * rate, to)

    @staticmethod
    def sum(items: Iterable[Money], currency: str) -> Money:
        """Sum amounts that must all be of ``currency``; empty sums are zero."""
        total = 0
        for item in items:
            if item.currency != currency:
                raise CurrencyMismatch(f"cannot add {item.currency} to a {currency} total")
            total += item.minor
        return Money(total, currency)

    def allocate(self, ratios: Sequence[Decimal | int]) -> list[Money]:
        """Split into parts proportional to ``ratios`` without losing a minor unit.

        Each part gets the floor of its exact share; the minor units left over go
        one each to the parts with the largest remainders (ties to the earlier
        part), so the parts always sum to the whole. Negative amounts are split
        by their magnitude and negated.
        """
        if not ratios:
            raise ValueError("allocate needs at least one ratio")
        weights = [Decimal(r) for r in ratios]
        if any(w < 0 for w in weights):
            raise ValueError("allocation ratios must not be negative")
        total_weight = sum(weights, Decimal(0))
        if total_weight == 0:
            raise ValueError("allocation ratios must not all be zero")
        sign = -1 if self.minor < 0 else 1
        whole = abs(self.minor)
        shares = [Decimal(whole) * w / total_weight for w in weights]
        parts = [int(share) for share in shares]  # floor for non-negative shares
        left = whole - sum(parts)
        by_remainder = sorted(range(len(parts)), key=lambda i: (-(shares[i] - parts[i]), i))
        for i in by_remainder[:left]:
            parts[i] += 1
        return [Money(sign * p, self.currency) for p in parts]
