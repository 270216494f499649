"""Money: integer minor units, currency digits, half-up rounding, allocation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.domain.money import CurrencyMismatch, Money, UnknownCurrency, currency_digits

CURRENCIES = st.sampled_from(["EUR", "USD", "GBP", "JPY", "BHD", "KWD", "CLP"])


@pytest.mark.parametrize(("code", "digits"), [("JPY", 0), ("EUR", 2), ("BHD", 3), ("USD", 2)])
def test_currency_digits_come_from_iso_4217(code: str, digits: int) -> None:
    assert currency_digits(code) == digits


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        Money(1, "EUX")


@pytest.mark.parametrize("bad", [1.5, True, "100"])
def test_minor_units_must_be_an_int(bad: object) -> None:
    with pytest.raises(TypeError):
        Money(bad, "EUR")  # type: ignore[arg-type]


def test_floats_never_become_money() -> None:
    with pytest.raises(TypeError):
        Money.from_decimal(1.1, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(100, "EUR").times(1.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "code", "text"),
    [
        ("2.675", "EUR", "2.68"),
        ("-2.675", "EUR", "-2.68"),
        ("516.129", "EUR", "516.13"),
        ("516.5", "JPY", "517"),
        ("0.0005", "BHD", "0.001"),
        ("0.004", "EUR", "0.00"),
    ],
)
def test_from_decimal_rounds_half_up_to_the_minor_unit(value: str, code: str, text: str) -> None:
    assert Money.from_decimal(Decimal(value), code).format() == text


def test_parse_refuses_more_digits_than_the_currency_has() -> None:
    assert Money.parse("10.50", "EUR") == Money(1050, "EUR")
    with pytest.raises(ValueError, match="decimals"):
        Money.parse("10.005", "EUR")
    with pytest.raises(ValueError):
        Money.parse("1.5", "JPY")


def test_arithmetic_refuses_to_mix_currencies() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(1, "EUR") + Money(1, "GBP")
    with pytest.raises(CurrencyMismatch):
        _ = Money(1, "EUR") < Money(2, "USD")
    with pytest.raises(CurrencyMismatch):
        Money.sum([Money(1, "EUR"), Money(1, "USD")], "EUR")


def test_conversion_rounds_in_the_target_currency() -> None:
    assert Money.parse("1840.00", "EUR").convert(Decimal("0.85"), "GBP") == Money(156400, "GBP")
    assert Money.parse("10.00", "USD").convert(Decimal("151.237"), "JPY") == Money(1512, "JPY")


@given(
    minor=st.integers(-(10**12), 10**12),
    ratios=st.lists(st.integers(0, 1000), min_size=1, max_size=12).filter(any),
    code=CURRENCIES,
)
def test_allocation_never_loses_or_invents_a_minor_unit(
    minor: int, ratios: list[int], code: str
) -> None:
    parts = Money(minor, code).allocate(ratios)
    assert sum(p.minor for p in parts) == minor
    assert all(p.currency == code for p in parts)
    total = sum(ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        exact = Decimal(minor) * ratio / total
        assert abs(Decimal(part.minor) - exact) < 1
        if ratio == 0:
            assert part.minor == 0


@given(minor=st.integers(-(10**15), 10**15), code=CURRENCIES)
def test_format_always_has_exactly_the_currency_digits(minor: int, code: str) -> None:
    text = Money(minor, code).format()
    digits = currency_digits(code)
    if digits:
        assert len(text.split(".")[1]) == digits
    else:
        assert "." not in text
    assert Money.parse(text, code) == Money(minor, code)


@given(
    minor=st.integers(-(10**9), 10**9),
    factor=st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False),
    code=CURRENCIES,
)
def test_times_equals_half_up_of_the_exact_product(minor: int, factor: Decimal, code: str) -> None:
    money = Money(minor, code)
    assert money.times(factor) == Money.from_decimal(money.amount * factor, code)
