"""Tax determination and rounding (DOMAIN.md rule 12).

Rules are tried in order and the first match wins. Region ``EU`` is derived
from the buyer's country when the account does not name its region. Reverse
charge means no tax on the invoice, the customer's VAT id on it, and a legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from accord.billing.model import Account, TaxRounding, TaxRule
from accord.domain.money import Money

__all__ = [
    "DEFAULT_REVERSE_CHARGE_LEGEND",
    "EU_COUNTRIES",
    "NoTaxRule",
    "find_rule",
    "region_of",
    "spread_tax",
    "tax_lines",
]

EU_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)

DEFAULT_REVERSE_CHARGE_LEGEND = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC)."
)


class NoTaxRule(LookupError):
    """No rule of the table applies to a seller, buyer and category."""


def region_of(account: Account) -> str | None:
    if account.region:
        return account.region
    return "EU" if account.country in EU_COUNTRIES else None


def find_rule(
    rules: Sequence[TaxRule],
    seller_country: str,
    buyer: Account,
    category: str | None,
    day: date,
) -> TaxRule:
    region = region_of(buyer)
    for rule in rules:
        if rule.seller_country is not None and rule.seller_country != seller_country:
            continue
        if rule.buyer_country is not None and rule.buyer_country != buyer.country:
            continue
        if rule.buyer_region is not None and rule.buyer_region != region:
            continue
        if rule.business is not None and rule.business != buyer.business:
            continue
        if rule.category is not None and rule.category != category:
            continue
        if rule.valid_from is not None and day < rule.valid_from:
            continue
        if rule.valid_to is not None and day > rule.valid_to:
            continue
        return rule
    raise NoTaxRule(
        f"no tax rule matches seller country {seller_country}, buyer {buyer.id} "
        f"({buyer.country}, {'business' if buyer.business else 'consumer'})"
        + (f", category {category}" if category else "")
    )


def spread_tax(total: Money, amounts: Sequence[Money]) -> list[Money]:
    """Share an invoice-rounded tax over lines in proportion to their amounts."""
    weights = [abs(a.minor) for a in amounts]
    if not any(weights):
        return [Money.zero(total.currency) for _ in amounts]
    return total.allocate(weights)


def tax_lines(
    amounts: Sequence[Money], rates: Sequence[Decimal], rounding: TaxRounding
) -> list[Money]:
    """Tax per line under the contract's rounding policy.

    ``line``: each line's tax rounded half-up on its own (three lines of 10.04 at
    20 % → 2.01 each, 6.03 in all). ``invoice``: one rounding per rate over the
    lines at that rate (6.02), spread over those lines without losing a cent.
    """
    if rounding is TaxRounding.LINE:
        return [amount.times(rate) for amount, rate in zip(amounts, rates, strict=True)]
    result: list[Money | None] = [None] * len(amounts)
    by_rate: dict[Decimal, list[int]] = {}
    for index, rate in enumerate(rates):
        by_rate.setdefault(rate, []).append(index)
    for rate, indexes in by_rate.items():
        group = [amounts[i] for i in indexes]
        currency = group[0].currency
        total = Money.sum(group, currency).times(rate)
        for i, share in zip(indexes, spread_tax(total, group), strict=True):
            result[i] = share
    return [r for r in result if r is not None]
