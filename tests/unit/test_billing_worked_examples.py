"""Every worked example of DOMAIN.md part 2, through the scenario format."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from accord.billing.engine import run_billing
from accord.billing.fx import realised_fx
from accord.billing.scenario import parse_scenario, run_to_json
from accord.domain.money import Money


def scenario(**parts: Any) -> dict[str, Any]:
    """A minimal UK firm billing a UK customer in GBP; ``parts`` replace sections."""
    doc: dict[str, Any] = {
        "accord_scenario": 1,
        "as_of": "2026-03-31",
        "period": {"start": "2026-03-01", "end": "2026-03-31"},
        "entities": [{"id": "uk", "country": "GB", "currency": "GBP"}],
        "accounts": [{"id": "acme", "country": "GB", "business": True}],
        "people": [{"id": "alice", "role": "senior"}],
        "rate_cards": [],
        "contracts": [],
        "projects": [],
    }
    doc.update(parts)
    return doc


def contract(*lines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = {"id": "c1", "account": "acme", "entity": "uk", "currency": "GBP", "lines": list(lines)}
    base.update(extra)
    return base


def bill(doc: dict[str, Any]) -> dict[str, Any]:
    return run_to_json(run_billing(parse_scenario(doc)))


def tm(**extra: Any) -> dict[str, Any]:
    return {"id": "tm", "model": "time_and_materials", "rate_card": "std", **extra}


STD = {
    "id": "std",
    "currency": "GBP",
    "entries": [
        {"role": "senior", "rate": "200.00"},
        {"person": "alice", "project": "p1", "rate": "220.00"},
    ],
}


def time(id_: str, hours: str, day: str = "2026-03-02", **extra: Any) -> dict[str, Any]:
    return {"id": id_, "person": "alice", "project": "p1", "date": day, "hours": hours, **extra}


# -- rule 1: rate resolution and hour rounding --


def test_person_project_override_beats_role_rate() -> None:
    out = bill(
        scenario(
            rate_cards=[STD],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "7.5")],
        )
    )
    (line,) = out["invoices"][0]["lines"]
    assert (line["quantity"], line["unit_price"], line["amount"]) == ("7.5", "220.00", "1650.00")
    assert line["sources"] == ["t1"]
    assert "person alice + project p1" in line["trace"]


def test_role_rate_applies_on_other_projects() -> None:
    out = bill(
        scenario(
            rate_cards=[STD],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}, {"id": "p2", "contract_line": "tm"}],
            time_entries=[{**time("t1", "7.5"), "project": "p2"}],
        )
    )
    assert out["invoices"][0]["lines"][0]["amount"] == "1500.00"


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{"default": True, "rate": "100"}], "100.00"),
        ([{"default": True, "rate": "100"}, {"role": "senior", "rate": "150"}], "150.00"),
        (
            [{"role": "senior", "rate": "150"}, {"role": "senior", "project": "p1", "rate": "160"}],
            "160.00",
        ),
        (
            [
                {"role": "senior", "project": "p1", "rate": "160"},
                {"person": "alice", "rate": "170"},
            ],
            "170.00",
        ),
        (
            [
                {"person": "alice", "rate": "170"},
                {"person": "alice", "project": "p1", "rate": "180"},
            ],
            "180.00",
        ),
    ],
)
def test_most_specific_rate_card_entry_wins(entries: list[dict[str, str]], expected: str) -> None:
    out = bill(
        scenario(
            rate_cards=[{"id": "std", "currency": "GBP", "entries": entries}],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "1")],
        )
    )
    assert out["invoices"][0]["lines"][0]["unit_price"] == expected


def test_effective_dated_rate_changes_mid_period() -> None:
    card = {
        "id": "std",
        "currency": "GBP",
        "entries": [
            {"role": "senior", "rate": "200", "valid_to": "2026-03-15"},
            {"role": "senior", "rate": "210", "valid_from": "2026-03-16"},
        ],
    }
    out = bill(
        scenario(
            rate_cards=[card],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "1", "2026-03-10"), time("t2", "1", "2026-03-20")],
        )
    )
    assert [ln["amount"] for ln in out["invoices"][0]["lines"]] == ["200.00", "210.00"]


def test_hours_round_up_to_increment_before_pricing() -> None:
    out = bill(
        scenario(
            rate_cards=[STD],
            contracts=[contract(tm(rounding={"increment": "0.1", "mode": "up"}))],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "7.533")],
        )
    )
    line = out["invoices"][0]["lines"][0]
    assert (line["quantity"], line["amount"]) == ("7.6", "1672.00")
    assert "rounded up to 0.1" in line["trace"]


@pytest.mark.parametrize(("mode", "hours"), [("down", "7.5"), ("nearest", "7.5"), ("up", "7.75")])
def test_rounding_modes(mode: str, hours: str) -> None:
    out = bill(
        scenario(
            rate_cards=[STD],
            contracts=[contract(tm(rounding={"increment": "0.25", "mode": mode}))],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "7.6")],
        )
    )
    assert out["invoices"][0]["lines"][0]["quantity"] == hours


def test_non_billable_and_unapproved_time_is_skipped_with_reason() -> None:
    out = bill(
        scenario(
            rate_cards=[STD],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[
                time("t1", "1", billable=False),
                time("t2", "1", status="submitted"),
                time("t3", "1", "2026-04-01"),
                time("t4", "1", billed=True),
            ],
        )
    )
    assert out["invoices"] == []
    assert out["skipped"] == [
        {"source": "t1", "reason": "non_billable"},
        {"source": "t2", "reason": "not_approved"},
        {"source": "t3", "reason": "after_as_of"},
        {"source": "t4", "reason": "already_billed"},
    ]


# -- rule 2: not-to-exceed cap --


CAPPED_TIME = [
    time("t1", "5", "2026-03-02"),
    time("t2", "4", "2026-03-03"),
    time("t3", "3", "2026-03-04"),
]


@pytest.mark.parametrize("policy", ["write_off", "hold"])
def test_cap_splits_the_crossing_item_and_reports_the_overage(policy: str) -> None:
    card = {"id": "std", "currency": "GBP", "entries": [{"default": True, "rate": "100"}]}
    out = bill(
        scenario(
            rate_cards=[card],
            contracts=[contract(tm(cap="10000.00", overage=policy))],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=CAPPED_TIME,
            prior_billed=[{"contract_line": "tm", "amount": "9200.00"}],
        )
    )
    invoice = out["invoices"][0]
    assert invoice["net"] == "800.00"
    assert [(ln["sources"], ln["quantity"], ln["amount"]) for ln in invoice["lines"]] == [
        (["t1"], "5", "500.00"),
        (["t2"], "3", "300.00"),
    ]
    over = out["written_off" if policy == "write_off" else "held"]
    other = out["held" if policy == "write_off" else "written_off"]
    assert [(o["source"], o["amount"], o["reason"]) for o in over] == [
        ("t2", "100.00", "cap"),
        ("t3", "300.00", "cap"),
    ]
    assert other == []


def test_cap_takes_items_in_date_then_id_order() -> None:
    card = {"id": "std", "currency": "GBP", "entries": [{"default": True, "rate": "100"}]}
    out = bill(
        scenario(
            rate_cards=[card],
            contracts=[contract(tm(cap="500"))],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[
                time("b", "3", "2026-03-05"),
                time("a", "3", "2026-03-05"),
                time("z", "3", "2026-03-01"),
            ],
        )
    )
    assert [ln["sources"][0] for ln in out["invoices"][0]["lines"]] == ["z", "a"]
    assert [(w["source"], w["amount"]) for w in out["written_off"]] == [
        ("a", "100.00"),
        ("b", "300.00"),
    ]


# -- rules 3 and 4: fixed fee --------------------------------------------------------


def test_accepted_milestone_bills_its_share_once() -> None:
    line = {
        "id": "ms",
        "model": "fixed_milestone",
        "amount": "50000.00",
        "milestones": [
            {"id": "m1", "percent": "30"},
            {"id": "m2", "percent": "40"},
            {"id": "m3", "percent": "30"},
        ],
    }
    doc = scenario(
        contracts=[contract(line)],
        milestones=[
            {"id": "m1", "status": "billed", "date": "2026-02-01"},
            {"id": "m2", "status": "accepted", "date": "2026-03-10"},
            {"id": "m3", "status": "reached", "date": "2026-03-20"},
        ],
    )
    out = bill(doc)
    assert [(ln["sources"], ln["amount"]) for ln in out["invoices"][0]["lines"]] == [
        (["m2"], "20000.00")
    ]
    assert {"source": "m1", "reason": "already_billed"} in out["skipped"]
    assert {"source": "m3", "reason": "not_approved"} in out["skipped"]
    doc["milestones"][1]["status"] = "billed"
    assert bill(doc)["invoices"] == []


def test_milestone_shares_never_lose_a_cent() -> None:
    line = {
        "id": "ms",
        "model": "fixed_milestone",
        "amount": "100.00",
        "milestones": [
            {"id": f"m{i}", "percent": p} for i, p in enumerate(["33.33", "33.33", "33.34"])
        ],
    }
    doc = scenario(
        contracts=[contract(line)],
        milestones=[{"id": f"m{i}", "status": "accepted"} for i in range(3)],
    )
    assert bill(doc)["invoices"][0]["net"] == "100.00"


def test_percent_complete_bills_progress_since_last_billing() -> None:
    out = bill(
        scenario(
            contracts=[contract({"id": "pc", "model": "fixed_progress", "amount": "50000.00"})],
            progress=[
                {"contract_line": "pc", "date": "2026-02-28", "percent_complete": "20"},
                {"contract_line": "pc", "date": "2026-03-31", "percent_complete": "35"},
            ],
            prior_billed=[{"contract_line": "pc", "percent": "20"}],
        )
    )
    assert out["invoices"][0]["lines"][0]["amount"] == "7500.00"


# -- rule 5: prepaid block --


def test_prepaid_block_bills_only_the_overage_in_month_two() -> None:
    line = {
        "id": "pp",
        "model": "prepaid_block",
        "hours": "40",
        "rate": "150.00",
        "start": "2026-02-01",
    }
    out = bill(
        scenario(
            contracts=[contract(line)],
            projects=[{"id": "p1", "contract_line": "pp"}],
            time_entries=[time("feb", "32", "2026-02-20", billed=True), time("mar", "12")],
            prior_billed=[{"contract_line": "pp", "amount": "6000.00"}],
        )
    )
    invoice = out["invoices"][0]
    assert invoice["net"] == "600.00"
    kinds = [(ln["kind"], ln["quantity"], ln["amount"]) for ln in invoice["lines"]]
    assert kinds == [("prepaid_drawdown", "8", "0.00"), ("prepaid_overage", "4", "600.00")]


def test_prepaid_block_is_invoiced_up_front() -> None:
    line = {
        "id": "pp",
        "model": "prepaid_block",
        "hours": "40",
        "rate": "150.00",
        "start": "2026-03-01",
    }
    out = bill(scenario(contracts=[contract(line)]))
    assert out["invoices"][0]["lines"][0]["amount"] == "6000.00"


# -- rule 6: managed services --


def test_managed_service_fee_plus_overage() -> None:
    line = {
        "id": "mg",
        "model": "managed_service",
        "fee": "5000.00",
        "included_hours": "40",
        "overage_rate": "130.00",
    }
    out = bill(
        scenario(
            contracts=[contract(line)],
            projects=[{"id": "p1", "contract_line": "mg"}],
            time_entries=[time("t1", "40", "2026-03-10"), time("t2", "7", "2026-03-20")],
        )
    )
    invoice = out["invoices"][0]
    assert invoice["net"] == "5910.00"
    assert [(ln["kind"], ln["amount"]) for ln in invoice["lines"]] == [
        ("managed_fee", "5000.00"),
        ("managed_overage", "910.00"),
    ]
    assert invoice["lines"][1]["sources"] == ["t1", "t2"]


def test_managed_service_within_included_hours_bills_only_the_fee() -> None:
    line = {
        "id": "mg",
        "model": "managed_service",
        "fee": "5000.00",
        "included_hours": "40",
        "overage_rate": "130.00",
    }
    out = bill(
        scenario(
            contracts=[contract(line)],
            projects=[{"id": "p1", "contract_line": "mg"}],
            time_entries=[time("t1", "30", "2026-03-10")],
        )
    )
    assert out["invoices"][0]["net"] == "5000.00"


# -- rule 7: subscription proration --


def test_subscription_prorated_by_days_from_the_16th() -> None:
    line = {"id": "sub", "model": "recurring", "amount": "1000.00", "start": "2026-03-16"}
    out = bill(scenario(contracts=[contract(line)]))
    assert out["invoices"][0]["lines"][0]["amount"] == "516.13"


def test_full_period_subscription_bills_the_whole_fee() -> None:
    line = {"id": "sub", "model": "recurring", "amount": "1000.00", "start": "2026-01-01"}
    assert bill(scenario(contracts=[contract(line)]))["invoices"][0]["net"] == "1000.00"


# -- rule 8: usage tiers --


TIERS = [{"up_to": "100", "unit_price": "1.00"}, {"unit_price": "0.80"}]


@pytest.mark.parametrize(
    ("pricing", "extra", "expected"),
    [
        ("graduated", {"tiers": TIERS}, "220.00"),
        ("volume", {"tiers": TIERS}, "200.00"),
        (
            "package",
            {"package_size": "100", "package_price": "50.00", "free_units": "20"},
            "150.00",
        ),
    ],
)
def test_usage_pricing_for_250_units(pricing: str, extra: dict[str, Any], expected: str) -> None:
    line = {"id": "use", "model": "usage", "pricing": pricing, **extra}
    out = bill(
        scenario(
            contracts=[contract(line)],
            usage=[{"contract_line": "use", "date": "2026-03-20", "quantity": "250"}],
        )
    )
    assert out["invoices"][0]["lines"][0]["amount"] == expected


def test_volume_tier_bound_is_inclusive() -> None:
    line = {"id": "use", "model": "usage", "pricing": "volume", "tiers": TIERS}
    out = bill(
        scenario(
            contracts=[contract(line)],
            usage=[{"contract_line": "use", "date": "2026-03-20", "quantity": "100"}],
        )
    )
    assert out["invoices"][0]["net"] == "100.00"


def test_usage_outside_the_period_is_not_billed() -> None:
    line = {"id": "use", "model": "usage", "pricing": "volume", "tiers": TIERS}
    out = bill(
        scenario(
            contracts=[contract(line)],
            usage=[{"contract_line": "use", "date": "2026-02-27", "quantity": "100"}],
        )
    )
    assert out["invoices"] == []


# -- rule 9: expenses --


def test_expenses_with_markup_and_foreign_receipt() -> None:
    out = bill(
        scenario(
            entities=[{"id": "de", "country": "DE", "currency": "EUR"}],
            accounts=[{"id": "acme", "country": "DE"}],
            rate_cards=[STD],
            contracts=[contract(tm(expense_markup_percent="10"), entity="de", currency="EUR")],
            projects=[{"id": "p1", "contract_line": "tm"}],
            fx_rates=[{"from": "GBP", "to": "EUR", "date": "2026-03-01", "rate": "1.17"}],
            expenses=[
                {
                    "id": "e1",
                    "person": "alice",
                    "project": "p1",
                    "date": "2026-03-03",
                    "amount": "200.00",
                    "currency": "EUR",
                },
                {
                    "id": "e2",
                    "person": "alice",
                    "project": "p1",
                    "date": "2026-03-04",
                    "amount": "100.00",
                    "currency": "GBP",
                },
                {
                    "id": "e3",
                    "person": "alice",
                    "project": "p1",
                    "date": "2026-03-05",
                    "amount": "50.00",
                    "currency": "EUR",
                    "billable": False,
                },
            ],
        )
    )
    lines = out["invoices"][0]["lines"]
    assert [(ln["sources"], ln["amount"]) for ln in lines] == [
        (["e1"], "220.00"),
        (["e2"], "128.70"),
    ]
    assert "117.00 EUR" in lines[1]["trace"]
    assert {"source": "e3", "reason": "non_billable"} in out["skipped"]


# -- rule 11: write-down before invoicing --


def test_write_down_before_invoicing_reduces_the_bill() -> None:
    card = {"id": "std", "currency": "GBP", "entries": [{"default": True, "rate": "200"}]}
    out = bill(
        scenario(
            rate_cards=[card],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "10")],
            adjustments=[
                {
                    "id": "a1",
                    "source": "t1",
                    "kind": "write_down",
                    "hours": "2",
                    "reason": "training",
                }
            ],
        )
    )
    line = out["invoices"][0]["lines"][0]
    assert (line["quantity"], line["amount"]) == ("8", "1600.00")
    assert "write_down 2 h" in line["trace"]


# -- rule 12: tax --


TAX_RULES = [
    {"seller_country": "GB", "buyer_country": "GB", "rate": "0.20"},
    {"seller_country": "GB", "buyer_region": "EU", "business": True, "reverse_charge": True},
    {"seller_country": "GB", "rate": "0.00"},
]


def test_domestic_vat() -> None:
    line = {"id": "sub", "model": "recurring", "amount": "1000.00"}
    out = bill(scenario(contracts=[contract(line)], tax_rules=TAX_RULES))
    invoice = out["invoices"][0]
    assert (invoice["net"], invoice["tax"], invoice["gross"]) == ("1000.00", "200.00", "1200.00")
    assert invoice["reverse_charge"] is False


def test_eu_business_customer_is_reverse_charged_with_legend_and_vat_id() -> None:
    line = {"id": "sub", "model": "recurring", "amount": "1000.00"}
    out = bill(
        scenario(
            accounts=[{"id": "acme", "country": "DE", "business": True, "tax_id": "DE123456789"}],
            contracts=[contract(line, currency="EUR")],
            tax_rules=TAX_RULES,
        )
    )
    invoice = out["invoices"][0]
    assert (invoice["tax"], invoice["gross"], invoice["reverse_charge"]) == (
        "0.00",
        "1000.00",
        True,
    )
    assert invoice["customer_tax_id"] == "DE123456789"
    assert "reverse charge" in invoice["legend"].lower()


def test_eu_consumer_falls_through_to_the_next_rule() -> None:
    line = {"id": "sub", "model": "recurring", "amount": "1000.00"}
    out = bill(
        scenario(
            accounts=[{"id": "acme", "country": "DE", "business": False}],
            contracts=[contract(line, currency="EUR")],
            tax_rules=TAX_RULES,
        )
    )
    assert out["invoices"][0]["reverse_charge"] is False


@pytest.mark.parametrize(("policy", "tax"), [("line", "6.03"), ("invoice", "6.02")])
def test_tax_rounding_per_line_or_per_invoice(policy: str, tax: str) -> None:
    out = bill(
        scenario(
            rate_cards=[
                {"id": "std", "currency": "GBP", "entries": [{"default": True, "rate": "10.04"}]}
            ],
            contracts=[contract(tm(), tax_rounding=policy)],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time(f"t{i}", "1") for i in range(3)],
            tax_rules=TAX_RULES,
        )
    )
    invoice = out["invoices"][0]
    assert (invoice["net"], invoice["tax"]) == ("30.12", tax)
    assert sum(Decimal(ln["tax"]) for ln in invoice["lines"]) == Decimal(tax)


def test_no_matching_tax_rule_is_an_error_naming_the_contract() -> None:
    from accord.errors import InvalidInput

    line = {"id": "sub", "model": "recurring", "amount": "1000.00"}
    doc = scenario(contracts=[contract(line)], tax_rules=[{"seller_country": "US", "rate": "0"}])
    with pytest.raises(InvalidInput, match=r"contracts\[c1\]"):
        bill(doc)


# -- rule 13: multi-currency --


def test_usd_rate_card_invoiced_in_eur() -> None:
    out = bill(
        scenario(
            rate_cards=[
                {"id": "usd", "currency": "USD", "entries": [{"default": True, "rate": "200"}]}
            ],
            contracts=[contract(tm(rate_card="usd"), currency="EUR")],
            projects=[{"id": "p1", "contract_line": "tm"}],
            fx_rates=[
                {"from": "USD", "to": "EUR", "date": "2026-03-01", "rate": "0.90"},
                {"from": "USD", "to": "EUR", "date": "2026-03-31", "rate": "0.92"},
                {"from": "USD", "to": "EUR", "date": "2026-04-01", "rate": "0.99"},
            ],
            time_entries=[time("t1", "10")],
        )
    )
    line = out["invoices"][0]["lines"][0]
    assert (line["amount"], line["source_amount"], line["source_currency"]) == (
        "1840.00",
        "2000.00",
        "USD",
    )


def test_realised_fx_gain_on_payment() -> None:
    invoice = Money.parse("1840.00", "EUR")
    assert invoice.convert(Decimal("0.85"), "GBP") == Money.parse("1564.00", "GBP")
    gain = realised_fx(invoice, Decimal("0.85"), Decimal("0.86"), "GBP")
    assert gain == Money.parse("18.40", "GBP")


def test_entity_functional_amount_is_reported_when_a_rate_exists() -> None:
    line = {"id": "sub", "model": "recurring", "amount": "1840.00"}
    out = bill(
        scenario(
            contracts=[contract(line, currency="EUR")],
            fx_rates=[{"from": "EUR", "to": "GBP", "date": "2026-03-31", "rate": "0.85"}],
        )
    )
    assert out["invoices"][0]["functional"] == {"currency": "GBP", "gross": "1564.00"}


def test_yen_and_dinar_keep_their_digits() -> None:
    for currency, expected in (("JPY", "516"), ("BHD", "516.129")):
        line = {"id": "sub", "model": "recurring", "amount": "1000", "start": "2026-03-16"}
        out = bill(scenario(contracts=[contract(line, currency=currency)]))
        assert out["invoices"][0]["net"] == expected


# -- rule 14: intercompany --


def test_intercompany_recharge_at_cost_plus_ten_percent() -> None:
    out = bill(
        scenario(
            entities=[
                {"id": "uk", "country": "GB", "currency": "GBP"},
                {
                    "id": "us",
                    "country": "US",
                    "currency": "USD",
                    "intercompany_markup_percent": "10",
                },
            ],
            people=[
                {
                    "id": "alice",
                    "role": "senior",
                    "entity": "us",
                    "cost_rate": "80",
                    "cost_currency": "USD",
                }
            ],
            rate_cards=[STD],
            contracts=[contract(tm())],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[time("t1", "10")],
        )
    )
    (recharge,) = out["intercompany"]
    assert (recharge["from_entity"], recharge["to_entity"], recharge["currency"]) == (
        "us",
        "uk",
        "USD",
    )
    assert recharge["amount"] == "880.00"


# -- rule 10: credit memo --


def _ten_thousand_invoice() -> Any:
    doc = scenario(
        rate_cards=[
            {"id": "std", "currency": "GBP", "entries": [{"default": True, "rate": "200"}]}
        ],
        contracts=[contract(tm())],
        projects=[{"id": "p1", "contract_line": "tm"}],
        time_entries=[time("t1", "45"), time("t2", "5", "2026-03-03")],
        tax_rules=TAX_RULES,
    )
    (invoice,) = run_billing(parse_scenario(doc)).invoices
    return invoice


def test_credit_memo_reduces_amount_due_including_vat() -> None:
    from accord.billing.credit import CreditRequest, Disposition, credit_invoice

    invoice = _ten_thousand_invoice()
    assert (invoice.net.format(), invoice.gross.format()) == ("10000.00", "12000.00")
    memo = credit_invoice(
        invoice, [CreditRequest("t2", Disposition.REBILL, "wrong project", hours=Decimal(5))]
    )
    assert (memo.net.format(), memo.tax.format(), memo.gross.format()) == (
        "1000.00",
        "200.00",
        "1200.00",
    )
    assert memo.amount_due_after == Money.parse("10800.00", "GBP")
    assert memo.rebill == ("t2",) and memo.written_off == ()


def test_credit_memo_write_off_disposition_and_over_credit_refused() -> None:
    from accord.billing.credit import CreditRequest, Disposition, credit_invoice
    from accord.errors import InvalidInput

    invoice = _ten_thousand_invoice()
    memo = credit_invoice(invoice, [CreditRequest("t1", Disposition.WRITE_OFF, "goodwill")])
    assert memo.written_off == ("t1",) and memo.net.format() == "9000.00"
    with pytest.raises(InvalidInput, match=r"credit\[t2\]"):
        credit_invoice(
            invoice,
            [CreditRequest("t2", Disposition.REBILL, "x", hours=Decimal(1))],
            credited_before={"t2": Money.parse("1000.00", "GBP")},
        )


def test_rebilled_source_is_billed_again_by_the_next_run() -> None:
    doc = scenario(
        rate_cards=[STD],
        contracts=[contract(tm())],
        projects=[{"id": "p1", "contract_line": "tm"}],
        time_entries=[time("t1", "5", billed=True)],
    )
    assert bill(doc)["invoices"] == []
    doc["time_entries"][0]["billed"] = False  # the rebill credit cleared its invoice link
    assert bill(doc)["invoices"][0]["net"] == "1100.00"
