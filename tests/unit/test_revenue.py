"""Revenue recognition: the worked examples of DOMAIN.md part 3, and properties."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.billing.revenue import (
    ContractBalance,
    CostToCostTerms,
    CostToDate,
    MilestoneAcceptance,
    MilestoneTerms,
    RatableTerms,
    RevenueLine,
    RevenueMethod,
    RevenuePeriod,
    RevenueTerms,
    RightToInvoiceTerms,
    WorkValue,
    build_schedule,
    contract_balances,
    month_periods,
    recognise_cost_to_cost,
    recognise_milestones,
    recognise_ratable,
    recognise_right_to_invoice,
)
from accord.domain.money import CurrencyMismatch, Money
from accord.errors import InvalidInput


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def amounts(lines: tuple[RevenueLine, ...]) -> list[str]:
    return [line.amount.format() for line in lines]


def cumulatives(lines: tuple[RevenueLine, ...]) -> list[str]:
    return [line.cumulative.format() for line in lines]


# -- periods ------------------------------------------------------------------


def test_month_periods_cut_the_first_and_last_month_to_the_dates_given() -> None:
    periods = month_periods(d("2026-01-16"), d("2026-03-10"))
    assert periods == (
        RevenuePeriod(d("2026-01-16"), d("2026-01-31")),
        RevenuePeriod(d("2026-02-01"), d("2026-02-28")),
        RevenuePeriod(d("2026-03-01"), d("2026-03-10")),
    )


def test_month_periods_cross_the_year_end() -> None:
    periods = month_periods(d("2025-12-01"), d("2026-01-31"))
    assert [(p.start, p.end) for p in periods] == [
        (d("2025-12-01"), d("2025-12-31")),
        (d("2026-01-01"), d("2026-01-31")),
    ]


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidInput):
        RevenuePeriod(d("2026-02-01"), d("2026-01-31"))
    with pytest.raises(InvalidInput):
        month_periods(d("2026-02-01"), d("2026-01-31"))


def test_periods_with_a_gap_are_refused_because_revenue_would_be_lost() -> None:
    terms = RatableTerms(fee=eur("1000.00"), term=RevenuePeriod(d("2026-01-01"), d("2026-03-31")))
    gap = [
        RevenuePeriod(d("2026-01-01"), d("2026-01-31")),
        RevenuePeriod(d("2026-03-01"), d("2026-03-31")),
    ]
    with pytest.raises(InvalidInput):
        recognise_ratable(terms, gap)


# -- ratable ------------------------------------------------------------------


def test_ratable_yearly_subscription_splits_by_days_and_sums_exactly_to_the_fee() -> None:
    # 12,000 over 2026 (365 days). Spread by days as DOMAIN.md prescribes, a
    # month is not exactly 1,000: January earns 31/365, February 28/365.
    terms = RatableTerms(fee=eur("12000.00"), term=RevenuePeriod(d("2026-01-01"), d("2026-12-31")))
    lines = recognise_ratable(terms, month_periods(d("2026-01-01"), d("2026-12-31")))

    assert len(lines) == 12
    assert lines[0].amount == eur("1019.18")  # 12,000 × 31/365 = 1,019.178...
    assert lines[1].amount == eur("920.55")  # cumulative 12,000 × 59/365 = 1,939.73
    assert lines[1].cumulative == eur("1939.73")
    assert Money.sum((line.amount for line in lines), "EUR") == eur("12000.00")
    assert lines[-1].cumulative == eur("12000.00")
    # Averaged over the year it is 1,000 a month.
    assert all(eur("920.00") <= line.amount <= eur("1020.00") for line in lines)


def test_ratable_fee_in_a_360_day_term_of_twelve_30_day_slices_is_1000_each() -> None:
    # With periods of equal length the day basis gives equal amounts.
    start = d("2026-01-01")
    term = RevenuePeriod(start, start + dt.timedelta(days=359))
    periods = [
        RevenuePeriod(start + dt.timedelta(days=30 * i), start + dt.timedelta(days=30 * i + 29))
        for i in range(12)
    ]
    lines = recognise_ratable(RatableTerms(fee=eur("12000.00"), term=term), periods)
    assert amounts(lines) == ["1000.00"] * 12


def test_ratable_fee_over_an_uneven_term_splits_by_days_and_sums_to_the_fee() -> None:
    # 1,000 from 16 Jan to 15 Feb: 31 days, 16 in January, 15 in February.
    terms = RatableTerms(fee=eur("1000.00"), term=RevenuePeriod(d("2026-01-16"), d("2026-02-15")))
    lines = recognise_ratable(terms, month_periods(d("2026-01-16"), d("2026-02-15")))

    assert amounts(lines) == ["516.13", "483.87"]  # 1,000 × 16/31 = 516.129...
    assert cumulatives(lines) == ["516.13", "1000.00"]


def test_ratable_periods_outside_the_term_earn_nothing() -> None:
    terms = RatableTerms(fee=eur("1000.00"), term=RevenuePeriod(d("2026-02-01"), d("2026-02-28")))
    lines = recognise_ratable(terms, month_periods(d("2026-01-01"), d("2026-03-31")))
    assert amounts(lines) == ["0.00", "1000.00", "0.00"]
    assert cumulatives(lines) == ["0.00", "1000.00", "1000.00"]


def test_ratable_schedule_that_starts_mid_term_reports_cumulative_from_term_start() -> None:
    terms = RatableTerms(fee=eur("1000.00"), term=RevenuePeriod(d("2026-01-16"), d("2026-02-15")))
    lines = recognise_ratable(terms, [RevenuePeriod(d("2026-02-01"), d("2026-02-28"))])
    assert amounts(lines) == ["483.87"]
    assert cumulatives(lines) == ["1000.00"]


def test_ratable_fee_in_yen_has_no_minor_digits_and_still_sums_exactly() -> None:
    terms = RatableTerms(
        fee=Money(100_000, "JPY"), term=RevenuePeriod(d("2026-01-16"), d("2026-02-15"))
    )
    lines = recognise_ratable(terms, month_periods(d("2026-01-16"), d("2026-02-15")))
    assert [line.amount for line in lines] == [Money(51_613, "JPY"), Money(48_387, "JPY")]


def test_a_negative_ratable_fee_is_refused() -> None:
    with pytest.raises(InvalidInput):
        RatableTerms(fee=eur("-1.00"), term=RevenuePeriod(d("2026-01-01"), d("2026-01-31")))


# -- cost to cost -------------------------------------------------------------

JAN = RevenuePeriod(d("2026-01-01"), d("2026-01-31"))
FEB = RevenuePeriod(d("2026-02-01"), d("2026-02-28"))
MAR = RevenuePeriod(d("2026-03-01"), d("2026-03-31"))


def test_cost_to_cost_recognises_the_share_of_estimated_cost_incurred() -> None:
    # Price 50,000; EAC 40,000; cost to date 10,000 then 26,000.
    terms = CostToCostTerms(
        price=eur("50000.00"),
        estimated_cost=eur("40000.00"),
        costs=(
            CostToDate(d("2026-01-31"), eur("10000.00")),
            CostToDate(d("2026-02-28"), eur("26000.00")),
        ),
    )
    lines = recognise_cost_to_cost(terms, [JAN, FEB])
    assert cumulatives(lines) == ["12500.00", "32500.00"]
    assert amounts(lines) == ["12500.00", "20000.00"]


def test_cost_to_cost_uses_the_latest_measurement_in_a_period() -> None:
    terms = CostToCostTerms(
        price=eur("50000.00"),
        estimated_cost=eur("40000.00"),
        costs=(
            CostToDate(d("2026-01-31"), eur("10000.00")),
            CostToDate(d("2026-01-10"), eur("4000.00")),
        ),
    )
    lines = recognise_cost_to_cost(terms, [JAN, FEB])
    assert cumulatives(lines) == ["12500.00", "12500.00"]
    assert amounts(lines) == ["12500.00", "0.00"]


def test_cost_to_cost_is_capped_at_the_price_when_cost_overruns_the_estimate() -> None:
    terms = CostToCostTerms(
        price=eur("50000.00"),
        estimated_cost=eur("40000.00"),
        costs=(
            CostToDate(d("2026-01-31"), eur("30000.00")),
            CostToDate(d("2026-02-28"), eur("45000.00")),
        ),
    )
    lines = recognise_cost_to_cost(terms, [JAN, FEB])
    assert cumulatives(lines) == ["37500.00", "50000.00"]
    assert amounts(lines) == ["37500.00", "12500.00"]


def test_cost_to_cost_revised_estimate_is_a_cumulative_catch_up() -> None:
    # 10,000 of 40,000 in January (25 %); in February the EAC rises to 50,000
    # with 15,000 spent (30 %): cumulative 15,000, so February earns 2,500.
    terms = CostToCostTerms(
        price=eur("50000.00"),
        estimated_cost=eur("40000.00"),
        costs=(
            CostToDate(d("2026-01-31"), eur("10000.00")),
            CostToDate(d("2026-02-28"), eur("15000.00"), estimate_at_completion=eur("50000.00")),
            CostToDate(d("2026-03-31"), eur("25000.00")),
        ),
    )
    lines = recognise_cost_to_cost(terms, [JAN, FEB, MAR])
    assert cumulatives(lines) == ["12500.00", "15000.00", "25000.00"]
    assert amounts(lines) == ["12500.00", "2500.00", "10000.00"]


def test_cost_to_cost_cost_in_another_currency_than_the_price_is_a_ratio() -> None:
    terms = CostToCostTerms(
        price=eur("50000.00"),
        estimated_cost=Money.parse("30000.00", "GBP"),
        costs=(CostToDate(d("2026-01-31"), Money.parse("10000.00", "GBP")),),
    )
    lines = recognise_cost_to_cost(terms, [JAN])
    assert lines[0].amount == eur("16666.67")  # 50,000 / 3, rounded half-up


def test_cost_to_cost_before_any_measurement_earns_nothing() -> None:
    terms = CostToCostTerms(
        price=eur("50000.00"),
        estimated_cost=eur("40000.00"),
        costs=(CostToDate(d("2026-02-15"), eur("4000.00")),),
    )
    assert amounts(recognise_cost_to_cost(terms, [JAN, FEB])) == ["0.00", "5000.00"]


@pytest.mark.parametrize("estimate", ["0.00", "-1.00"])
def test_cost_to_cost_estimate_of_zero_or_less_is_refused(estimate: str) -> None:
    with pytest.raises(InvalidInput, match="estimate_at_completion"):
        CostToCostTerms(price=eur("50000.00"), estimated_cost=eur(estimate), costs=())
    with pytest.raises(InvalidInput, match="estimate_at_completion"):
        CostToDate(d("2026-01-31"), eur("1.00"), estimate_at_completion=eur(estimate))


def test_cost_to_cost_refuses_cost_in_another_currency_than_the_estimate() -> None:
    with pytest.raises(InvalidInput):
        CostToCostTerms(
            price=eur("50000.00"),
            estimated_cost=eur("40000.00"),
            costs=(CostToDate(d("2026-01-31"), Money.parse("10.00", "USD")),),
        )


def test_cost_to_cost_refuses_two_measurements_on_one_date() -> None:
    with pytest.raises(InvalidInput):
        CostToCostTerms(
            price=eur("50000.00"),
            estimated_cost=eur("40000.00"),
            costs=(
                CostToDate(d("2026-01-31"), eur("1.00")),
                CostToDate(d("2026-01-31"), eur("2.00")),
            ),
        )


# -- milestones ---------------------------------------------------------------


def test_milestones_30_40_30_are_recognised_on_their_acceptance_dates() -> None:
    price = eur("50000.00")
    terms = MilestoneTerms(
        currency="EUR",
        price=price,
        acceptances=(
            MilestoneAcceptance("m1", d("2026-01-20"), price.times(Decimal("0.30"))),
            MilestoneAcceptance("m2", d("2026-03-10"), price.times(Decimal("0.40"))),
            MilestoneAcceptance("m3", d("2026-03-31"), price.times(Decimal("0.30"))),
        ),
    )
    lines = recognise_milestones(terms, [JAN, FEB, MAR])
    assert amounts(lines) == ["15000.00", "0.00", "35000.00"]
    assert cumulatives(lines) == ["15000.00", "15000.00", "50000.00"]


def test_a_milestone_accepted_after_the_last_period_is_not_yet_revenue() -> None:
    terms = MilestoneTerms(
        currency="EUR",
        acceptances=(MilestoneAcceptance("m2", d("2026-04-01"), eur("20000.00")),),
    )
    assert amounts(recognise_milestones(terms, [MAR])) == ["0.00"]


def test_a_milestone_accepted_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="m1"):
        MilestoneTerms(
            currency="EUR",
            acceptances=(
                MilestoneAcceptance("m1", d("2026-01-20"), eur("1.00")),
                MilestoneAcceptance("m1", d("2026-01-21"), eur("1.00")),
            ),
        )


def test_milestones_adding_up_to_more_than_the_price_are_refused() -> None:
    with pytest.raises(InvalidInput):
        MilestoneTerms(
            currency="EUR",
            price=eur("100.00"),
            acceptances=(MilestoneAcceptance("m1", d("2026-01-20"), eur("100.01")),),
        )


# -- right to invoice (T&M) ---------------------------------------------------


def test_time_and_materials_revenue_is_the_work_of_the_period() -> None:
    terms = RightToInvoiceTerms(
        currency="EUR",
        work=(
            WorkValue(d("2026-01-05"), eur("1650.00")),
            WorkValue(d("2026-01-06"), eur("800.00")),
            WorkValue(d("2026-02-02"), eur("400.00")),
        ),
    )
    lines = recognise_right_to_invoice(terms, [JAN, FEB, MAR])
    assert amounts(lines) == ["2450.00", "400.00", "0.00"]
    assert cumulatives(lines) == ["2450.00", "2850.00", "2850.00"]


def test_time_and_materials_revenue_stops_at_the_not_to_exceed_cap() -> None:
    # Cap 10,000; 9,200 earned in January; 500 + 400 + 300 in February.
    terms = RightToInvoiceTerms(
        currency="EUR",
        cap=eur("10000.00"),
        work=(
            WorkValue(d("2026-01-15"), eur("9200.00")),
            WorkValue(d("2026-02-02"), eur("500.00")),
            WorkValue(d("2026-02-03"), eur("400.00")),
            WorkValue(d("2026-02-04"), eur("300.00")),
            WorkValue(d("2026-03-02"), eur("700.00")),
        ),
    )
    lines = recognise_right_to_invoice(terms, [JAN, FEB, MAR])
    assert amounts(lines) == ["9200.00", "800.00", "0.00"]
    assert cumulatives(lines) == ["9200.00", "10000.00", "10000.00"]


def test_time_and_materials_refuses_work_in_another_currency() -> None:
    with pytest.raises(InvalidInput):
        RightToInvoiceTerms(
            currency="EUR", work=(WorkValue(d("2026-01-05"), Money.parse("1.00", "USD")),)
        )


def test_negative_work_value_is_refused() -> None:
    with pytest.raises(InvalidInput):
        WorkValue(d("2026-01-05"), eur("-1.00"))


# -- schedules ----------------------------------------------------------------


def test_build_schedule_names_the_line_method_and_transaction_price() -> None:
    terms = RatableTerms(fee=eur("1000.00"), term=RevenuePeriod(d("2026-01-16"), d("2026-02-15")))
    schedule = build_schedule("c1-sub", terms, month_periods(d("2026-01-16"), d("2026-02-15")))
    assert schedule.contract_line_id == "c1-sub"
    assert schedule.method is RevenueMethod.RATABLE
    assert schedule.method.value == "ratable"
    assert schedule.transaction_price == eur("1000.00")
    assert schedule.total == eur("1000.00")
    assert schedule.cumulative == eur("1000.00")
    assert schedule.lines[0] == RevenueLine(
        d("2026-01-16"), d("2026-01-31"), eur("516.13"), eur("516.13")
    )


def test_build_schedule_picks_the_method_from_the_terms() -> None:
    cases: list[tuple[RevenueTerms, RevenueMethod, Money | None]] = [
        (RightToInvoiceTerms(currency="EUR", work=()), RevenueMethod.RIGHT_TO_INVOICE, None),
        (
            CostToCostTerms(price=eur("5.00"), estimated_cost=eur("4.00"), costs=()),
            RevenueMethod.COST_TO_COST,
            eur("5.00"),
        ),
        (MilestoneTerms(currency="EUR", acceptances=()), RevenueMethod.MILESTONE, None),
        (
            RatableTerms(fee=eur("5.00"), term=JAN),
            RevenueMethod.RATABLE,
            eur("5.00"),
        ),
    ]
    for terms, method, price in cases:
        schedule = build_schedule("line", terms, [JAN])
        assert schedule.method is method
        assert schedule.transaction_price == price
        assert schedule.currency == "EUR"


def test_a_schedule_with_no_periods_is_empty_and_zero() -> None:
    schedule = build_schedule("line", MilestoneTerms(currency="JPY", acceptances=()), [])
    assert schedule.lines == ()
    assert schedule.total == Money.zero("JPY")
    assert schedule.cumulative == Money.zero("JPY")


# -- contract asset and liability ---------------------------------------------


def test_revenue_ahead_of_billing_is_a_contract_asset() -> None:
    assert contract_balances(eur("32500.00"), eur("25000.00")) == ContractBalance(
        asset=eur("7500.00"), liability=eur("0.00")
    )


def test_billing_ahead_of_revenue_is_a_contract_liability() -> None:
    # A year's subscription of 12,000 invoiced up front; 1,019.18 earned in January.
    assert contract_balances(eur("1019.18"), eur("12000.00")) == ContractBalance(
        asset=eur("0.00"), liability=eur("10980.82")
    )


def test_revenue_equal_to_billing_leaves_no_balance() -> None:
    assert contract_balances(eur("100.00"), eur("100.00")) == ContractBalance(
        asset=eur("0.00"), liability=eur("0.00")
    )


def test_contract_balances_refuse_mixed_currencies() -> None:
    with pytest.raises(CurrencyMismatch):
        contract_balances(eur("1.00"), Money.parse("1.00", "USD"))


# -- properties ---------------------------------------------------------------

CURRENCIES = st.sampled_from(["EUR", "JPY", "BHD"])
DAYS = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 12, 31))


@given(
    currency=CURRENCIES,
    fee_minor=st.integers(min_value=0, max_value=10**12),
    start=DAYS,
    length=st.integers(min_value=0, max_value=3 * 366),
)
def test_ratable_lines_always_sum_to_the_fee_over_the_full_term(
    currency: str, fee_minor: int, start: dt.date, length: int
) -> None:
    fee = Money(fee_minor, currency)
    term = RevenuePeriod(start, start + dt.timedelta(days=length))
    lines = recognise_ratable(RatableTerms(fee=fee, term=term), month_periods(term.start, term.end))

    assert Money.sum((line.amount for line in lines), currency) == fee
    assert lines[-1].cumulative == fee
    assert all(line.amount.minor >= 0 for line in lines)


@given(
    currency=CURRENCIES,
    price_minor=st.integers(min_value=0, max_value=10**12),
    estimate_minor=st.integers(min_value=1, max_value=10**12),
    increments=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=12),
)
def test_cost_to_cost_cumulative_revenue_is_monotone_for_non_decreasing_cost(
    currency: str, price_minor: int, estimate_minor: int, increments: list[int]
) -> None:
    periods = month_periods(d("2026-01-01"), d("2026-12-31"))[: len(increments)]
    running = 0
    costs = []
    for period, increment in zip(periods, increments, strict=True):
        running += increment
        costs.append(CostToDate(period.end, Money(running, currency)))
    terms = CostToCostTerms(
        price=Money(price_minor, currency),
        estimated_cost=Money(estimate_minor, currency),
        costs=tuple(costs),
    )
    lines = recognise_cost_to_cost(terms, periods)

    cumulative = [line.cumulative.minor for line in lines]
    assert cumulative == sorted(cumulative)
    assert all(line.amount.minor >= 0 for line in lines)
    assert cumulative[-1] <= price_minor


@given(
    currency=CURRENCIES,
    revenue=st.integers(min_value=-(10**12), max_value=10**12),
    billed=st.integers(min_value=-(10**12), max_value=10**12),
)
def test_contract_asset_and_liability_are_never_both_positive(
    currency: str, revenue: int, billed: int
) -> None:
    balance = contract_balances(Money(revenue, currency), Money(billed, currency))

    assert not (balance.asset.minor > 0 and balance.liability.minor > 0)
    assert balance.asset.minor >= 0 and balance.liability.minor >= 0
    assert balance.asset.minor - balance.liability.minor == revenue - billed
