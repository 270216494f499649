"""Realised FX on a foreign-currency invoice: settled minus booked, in the entity's currency."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from accord.domain.money import Money
from accord.q2c.payments import realised_fx


def test_a_euro_invoice_paid_at_a_better_rate_is_a_gain() -> None:
    settled, difference = realised_fx(Money(406926, "EUR"), Money(345887, "GBP"), Decimal("0.86"))
    assert settled == Money(349956, "GBP")
    assert difference == Money(4069, "GBP")


def test_a_worse_rate_is_a_loss() -> None:
    _, difference = realised_fx(Money(100000, "EUR"), Money(86000, "GBP"), Decimal("0.85"))
    assert difference == Money(-1000, "GBP")


@given(
    st.integers(min_value=1, max_value=10**9),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=4),
)
def test_paid_at_the_booking_rate_there_is_no_difference(minor: int, rate: Decimal) -> None:
    booked = Money(minor, "EUR").convert(rate, "GBP")
    _, difference = realised_fx(Money(minor, "EUR"), booked, rate)
    assert difference.is_zero()
