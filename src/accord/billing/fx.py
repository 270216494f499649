"""Currency conversion from a table of dated rates (DOMAIN.md rule 13).

A run converts with the latest rate dated on or before its ``as_of`` for the
pair. When only the opposite pair is quoted, its inverse is used and the trace
says so. Realised FX gain or loss compares the functional amount booked at
invoicing with the one received at payment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from accord.billing.model import FxRate
from accord.domain.money import Money

__all__ = ["FxTable", "MissingFxRate", "Quote", "realised_fx"]


class MissingFxRate(LookupError):
    def __init__(self, from_currency: str, to_currency: str, on: date) -> None:
        super().__init__(f"no FX rate {from_currency}→{to_currency} on or before {on}")
        self.from_currency = from_currency
        self.to_currency = to_currency
        self.on = on


@dataclass(frozen=True, slots=True)
class Quote:
    rate: Decimal
    date: date
    inverse: bool

    def describe(self, from_currency: str, to_currency: str) -> str:
        how = " (inverse of the quoted rate)" if self.inverse else ""
        return f"1 {from_currency} = {self.rate} {to_currency} on {self.date}{how}"


class FxTable:
    """Dated rates; look-ups are cached per (pair, day)."""

    def __init__(self, rates: Iterable[FxRate]) -> None:
        by_pair: dict[tuple[str, str], list[FxRate]] = {}
        for rate in rates:
            by_pair.setdefault((rate.from_currency, rate.to_currency), []).append(rate)
        for quotes in by_pair.values():
            quotes.sort(key=lambda r: r.date, reverse=True)
        self._by_pair = by_pair
        self._cache: dict[tuple[str, str, date], Quote] = {}

    def quote(self, from_currency: str, to_currency: str, on: date) -> Quote:
        if from_currency == to_currency:
            return Quote(Decimal(1), on, False)
        key = (from_currency, to_currency, on)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = self._latest(from_currency, to_currency, on)
        if found is not None:
            quote = Quote(found.rate, found.date, False)
        else:
            inverse = self._latest(to_currency, from_currency, on)
            if inverse is None:
                raise MissingFxRate(from_currency, to_currency, on)
            quote = Quote(Decimal(1) / inverse.rate, inverse.date, True)
        self._cache[key] = quote
        return quote

    def _latest(self, from_currency: str, to_currency: str, on: date) -> FxRate | None:
        for rate in self._by_pair.get((from_currency, to_currency), ()):
            if rate.date <= on:
                return rate
        return None

    def has(self, from_currency: str, to_currency: str, on: date) -> bool:
        try:
            self.quote(from_currency, to_currency, on)
        except MissingFxRate:
            return False
        return True

    def convert(self, amount: Money, to_currency: str, on: date) -> Money:
        """Convert and round half-up to the target currency's minor unit."""
        if amount.currency == to_currency:
            return amount
        return amount.convert(self.quote(amount.currency, to_currency, on).rate, to_currency)


def realised_fx(
    invoice_amount: Money, booked_rate: Decimal, payment_rate: Decimal, functional: str
) -> Money:
    """Gain (positive) or loss (negative) in the functional currency on settlement.

    The receivable was booked at ``booked_rate`` and the same foreign amount was
    received at ``payment_rate``; the difference of the two rounded functional
    amounts is the realised FX result (1,840.00 EUR at 0.85 → 1,564.00 GBP,
    received at 0.86 → 1,582.40 GBP: gain 18.40 GBP).
    """
    booked = invoice_amount.convert(booked_rate, functional)
    received = invoice_amount.convert(payment_rate, functional)
    return received - booked
