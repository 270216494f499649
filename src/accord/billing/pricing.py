"""Pure pricing helpers: usage tiers, proration and milestone amounts (DOMAIN.md part 2)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_CEILING, Decimal

from accord.billing.model import FixedMilestoneLine, Tier, UsageLine, UsagePricing
from accord.domain.money import Money

__all__ = ["active_days", "days_inclusive", "milestone_amounts", "usage_charge"]

_HUNDRED = Decimal(100)


def days_inclusive(start: date, end: date) -> int:
    return (end - start).days + 1


def active_days(period_start: date, period_end: date, start: date | None, end: date | None) -> int:
    """Days of the period on which a line running from ``start`` to ``end`` is active."""
    lo = max(period_start, start) if start else period_start
    hi = min(period_end, end) if end else period_end
    return max(0, days_inclusive(lo, hi))


def milestone_amounts(line: FixedMilestoneLine, currency: str) -> list[Money]:
    """The amount of each milestone of ``line``, in the order they are defined.

    Percentages that add up to exactly 100 split the amount without losing a
    minor unit (the parts always sum to it); otherwise each milestone is its
    fixed amount, or its percent of the line's amount rounded half-up.
    """
    total = Money.from_decimal(line.amount, currency)
    percents = [ms.percent for ms in line.milestones]
    if all(p is not None for p in percents) and sum(p for p in percents if p) == _HUNDRED:
        return total.allocate([p for p in percents if p is not None])
    return [
        Money.from_decimal(ms.amount, currency)
        if ms.amount is not None
        else total.times((ms.percent or Decimal(0)) / _HUNDRED)
        for ms in line.milestones
    ]


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def usage_charge(line: UsageLine, quantity: Decimal) -> tuple[Decimal, str]:
    """Price ``quantity`` units on a usage line; returns the exact value and a trace.

    Tier bounds are inclusive; the value is not rounded here, so the caller
    rounds once to the invoice currency.
    """
    if line.pricing is UsagePricing.PACKAGE:
        assert line.package_size is not None and line.package_price is not None
        billable = max(Decimal(0), quantity - line.free_units)
        packages = (billable / line.package_size).to_integral_value(rounding=ROUND_CEILING)
        value = packages * line.package_price
        trace = (
            f"package pricing: {_fmt(quantity)} units − {_fmt(line.free_units)} free = "
            f"{_fmt(billable)}; ceil({_fmt(billable)} / {_fmt(line.package_size)}) = "
            f"{_fmt(packages)} packages × {_fmt(line.package_price)}"
        )
        return value, trace
    if line.pricing is UsagePricing.VOLUME:
        tier = _tier_for(line.tiers, quantity)
        value = quantity * tier.unit_price
        return value, (
            f"volume pricing: all {_fmt(quantity)} units at {_fmt(tier.unit_price)} "
            f"(tier up to {_fmt(tier.up_to) if tier.up_to is not None else 'no limit'})"
        )
    value = Decimal(0)
    parts = []
    lower = Decimal(0)
    for tier in line.tiers:
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = max(Decimal(0), upper - lower)
        if units:
            value += units * tier.unit_price
            parts.append(f"{_fmt(units)} × {_fmt(tier.unit_price)}")
        if tier.up_to is None or quantity <= tier.up_to:
            break
        lower = tier.up_to
    return value, "graduated pricing: " + (" + ".join(parts) if parts else "no units")


def _tier_for(tiers: tuple[Tier, ...], quantity: Decimal) -> Tier:
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return tier
    return tiers[-1]
