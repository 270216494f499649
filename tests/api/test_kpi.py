"""KPIs as pure functions over canonical records (DOMAIN.md part 3), and through the API."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from accord.kpi import billing_cycle_time, dispute_rate, dso, revenue_leakage, wip
from accord.store import Records
from tests.api.conftest import Api

AS_OF = date(2026, 3, 31)


def _time(amount: int, **fields: object) -> dict[str, object]:
    return {"approval": "approved", "billable": True, "amount": amount, "currency": "EUR", **fields}


def test_wip_is_approved_billable_unbilled_value_per_currency() -> None:
    sources = [
        _time(150000),
        _time(50000, billing="billed"),
        _time(70000, approval="submitted"),
        _time(10000, billable=False),
        _time(20000, currency="USD"),
        _time(1.5),  # a float is never money: left out
    ]
    assert wip(sources) == {"EUR": 150000, "USD": 20000}


def test_dso_is_receivables_over_revenue_times_days() -> None:
    invoices = [
        {
            "status": "issued",
            "currency": "EUR",
            "gross": 300000,
            "amount_due": 300000,
            "issue_date": "2026-03-01",
        },
        {
            "status": "paid",
            "currency": "EUR",
            "gross": 600000,
            "amount_due": 0,
            "issue_date": "2026-02-01",
        },
        {"status": "draft", "currency": "EUR", "gross": 999999, "amount_due": 999999},
    ]
    # 3,000 outstanding / 9,000 revenue in 90 days × 90 = 30 days
    assert dso(invoices, AS_OF, 90) == {"EUR": Decimal("30.0")}
    assert dso([{**invoices[0], "issue_date": "2025-01-01"}], AS_OF, 90) == {"EUR": None}


def test_dso_as_of_a_past_date_counts_invoices_paid_after_it_as_outstanding() -> None:
    paid_later = {
        "status": "paid",
        "currency": "GBP",
        "gross": 120000,
        "credited": 20000,
        "issue_date": "2026-03-31",
        "paid_on": "2026-04-20",
    }
    assert dso([paid_later], date(2026, 4, 10), days=30) == {"GBP": Decimal("25.0")}
    assert dso([paid_later], date(2026, 4, 20), days=30) == {"GBP": Decimal("0.0")}
    assert dso([paid_later], date(2026, 3, 30), days=30) == {}


def test_sources_may_carry_their_value_as_money_and_their_invoice_by_key() -> None:
    expense = {
        "approval": "approved",
        "billable": True,
        "billing": "billed",
        "amount": {"currency": "USD", "minor": 41250},
        "invoice": "inv-1",
        "work_date": "2026-03-03",
    }
    unbilled = {**expense, "billing": "unbilled", "invoice": None}
    assert wip([expense, unbilled]) == {"USD": 41250}
    cycle = billing_cycle_time([expense], {"inv-1": {"issue_date": "2026-03-31"}})
    assert (cycle.count, cycle.median_days) == (1, Decimal(28))
    memo = {"invoice": "inv-1"}
    assert dispute_rate([{"id": "inv-1", "status": "paid"}], [memo]) == Decimal("1.0000")


def test_billing_cycle_time_median_and_p90() -> None:
    invoices = {f"i{n}": {"issue_date": f"2026-03-{n + 1:02d}"} for n in range(1, 11)}
    sources = [
        _time(100, billing="billed", invoice_id=f"i{n}", approved_on="2026-03-01")
        for n in range(1, 11)
    ]
    cycle = billing_cycle_time(sources, invoices)
    # spans 1..10 days: median 5.5, p90 (nearest rank) 9
    assert (cycle.count, cycle.median_days, cycle.p90_days) == (10, Decimal("5.5"), Decimal("9"))


def test_revenue_leakage_counts_stale_unbilled_and_unexplained_write_offs() -> None:
    sources = [
        _time(10000, approved_on="2026-01-10"),  # unbilled for 80 days: leaking
        _time(10000, approved_on="2026-03-20"),  # recent: not yet
        _time(10000, billing="written_off"),  # no reason: leaking
        _time(10000, billing="written_off", write_off_reason="goodwill"),
        _time(60000, billing="billed"),
    ]
    assert revenue_leakage(sources, AS_OF, after_days=30) == {"EUR": Decimal("0.2000")}


def test_dispute_rate_is_credited_over_issued() -> None:
    invoices = [
        {"id": "a", "status": "paid", "credited": 500},
        {"id": "b", "status": "issued"},
        {"id": "c", "status": "issued"},
        {"id": "d", "status": "draft", "credited": 100},
    ]
    assert dispute_rate(invoices, [{"invoice_id": "b"}]) == Decimal("0.6667")
    assert dispute_rate([], []) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 10**9), st.sampled_from(["unbilled", "billed", "written_off"])),
        max_size=30,
    )
)
def test_leakage_is_a_share_between_zero_and_one(items: list[tuple[int, str]]) -> None:
    sources = [
        _time(amount, billing=billing, approved_on="2025-01-01") for amount, billing in items
    ]
    for share in revenue_leakage(sources, AS_OF).values():
        assert share is None or Decimal(0) <= share <= Decimal(1)
    assert sum(wip(sources).values()) == sum(a for a, b in items if b == "unbilled")


def test_kpis_endpoint_reads_the_store(api: Api) -> None:
    with api.engine.begin() as conn:
        Records(conn).put("time_entry", "t1", _time(165000), system="psa", actor="t")
    body = api.client.get("/v1/kpis", headers=api.headers("sales_ops")).json()
    assert body["wip_minor"] == {"EUR": 165000}
    assert body["billing_cycle_time"] == {"count": 0, "median_days": None, "p90_days": None}


def test_kpis_endpoint_measures_as_of_a_chosen_day(api: Api) -> None:
    invoice = {
        "status": "paid",
        "currency": "GBP",
        "gross": 120000,
        "issue_date": "2026-03-31",
        "paid_on": "2026-04-20",
    }
    with api.engine.begin() as conn:
        Records(conn).put("invoice", "i1", invoice, system="billing", actor="t")
    then = api.client.get("/v1/kpis?as_of=2026-04-10", headers=api.headers("finance")).json()
    assert then["as_of"] == "2026-04-10" and then["dso_days"] == {"GBP": "90.0"}
    later = api.client.get("/v1/kpis?as_of=2026-05-01", headers=api.headers("finance")).json()
    assert later["dso_days"] == {"GBP": "0.0"}
    bad = api.client.get("/v1/kpis?as_of=soon", headers=api.headers("finance"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("as_of")
