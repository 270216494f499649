"""Property tests of the billing engine, fed through the scenario loader.

Every world here is generated as a raw scenario document (DOMAIN.md part 4, the
dict ``yaml.safe_load`` would give) and goes through ``parse_scenario`` before
``run_billing``, so the loader is exercised together with the engine. Worlds mix
currencies with 0, 2 and 3 minor digits (JPY, EUR/USD/GBP, BHD), FX rates quoted
in either direction, every contract-line model, expenses with markups in foreign
currencies, and tax tables with reverse charge and both tax-rounding policies.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from accord.billing.model import BillingRun, LineKind
from accord.billing.scenario import parse_scenario, run_to_json
from accord.domain.money import Money, currency_digits
from accord.errors import InvalidInput

Raw = dict[str, Any]

# Whole-file budget: a few hundred examples in all, well under a minute on a slow machine.
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPERTY, max_examples=40)

CURRENCIES = ("EUR", "USD", "GBP", "JPY", "BHD")
# Rough units per euro, so that generated prices have realistic magnitudes in each currency.
PER_EUR = {
    "EUR": Decimal(1),
    "USD": Decimal("1.08"),
    "GBP": Decimal("0.85"),
    "JPY": Decimal(160),
    "BHD": Decimal("0.41"),
}
ENTITIES: list[Raw] = [
    {"id": "gb", "country": "GB", "currency": "GBP"},
    {"id": "us", "country": "US", "currency": "USD", "intercompany_markup_percent": "10"},
    {"id": "jp", "country": "JP", "currency": "JPY"},
    {"id": "bh", "country": "BH", "currency": "BHD"},
]
ACCOUNTS: list[Raw] = [
    # from the GB entity: an EU business → reverse charge
    {"id": "acme", "country": "DE", "business": True, "tax_id": "DE123456789"},
    {"id": "brit", "country": "GB", "business": True, "tax_id": "GB123456789"},
    {"id": "pierre", "country": "FR", "business": False},
    {"id": "yamada", "country": "JP", "business": True, "payment_terms_days": 30},
]
PEOPLE: list[Raw] = [
    {"id": "alice", "role": "senior"},
    {"id": "bob", "role": "junior"},
    # employed by the US entity: work for other entities is recharged at cost plus
    {"id": "carol", "role": "senior", "entity": "us", "cost_rate": "80.00", "cost_currency": "USD"},
    {"id": "dan"},
]
ROLES = ("senior", "junior")
TAX_RATES = ("0", "0.05", "0.075", "0.10", "0.175", "0.19", "0.20", "0.0725")

ALL_MODELS = (
    "time_and_materials",
    "fixed_milestone",
    "fixed_progress",
    "managed_service",
    "recurring",
    "usage",
    "prepaid_block",
)


# -- small helpers ---------------------------------------------------------


def text(value: Decimal) -> str:
    return format(value, "f")


def day(value: date) -> str:
    return value.isoformat()


def scaled(number: int, places: int) -> Decimal:
    return Decimal(number).scaleb(-places)


def money_text(draw: st.DrawFn, currency: str, low_eur: int, high_eur: int) -> str:
    """An amount in ``currency`` with at most its minor digits, about low..high euros."""
    digits = currency_digits(currency)
    factor = PER_EUR[currency] * 10**digits
    low = int(low_eur * factor)
    high = max(low, int(high_eur * factor))
    return text(scaled(draw(st.integers(low, high)), digits))


def price_text(draw: st.DrawFn, currency: str, low_eur: int, high_eur: int) -> str:
    """A unit price: up to two more decimals than the currency has."""
    places = currency_digits(currency) + draw(st.integers(0, 2))
    factor = PER_EUR[currency] * 10**places
    return text(scaled(draw(st.integers(int(low_eur * factor), int(high_eur * factor))), places))


def decimal_text(draw: st.DrawFn, high: int, max_places: int = 3) -> str:
    places = draw(st.integers(0, max_places))
    return text(scaled(draw(st.integers(0, high * 10**places)), places))


def period_of(raw: Raw) -> tuple[date, date]:
    period = raw["period"]
    return date.fromisoformat(period["start"]), date.fromisoformat(period["end"])


def minor(text_value: str, currency: str) -> int:
    return Money.parse(text_value, currency).minor


# -- the scenario strategy -----------------------------------------------------


def _rounding(draw: st.DrawFn) -> Raw | None:
    if not draw(st.booleans()):
        return None
    return {
        "increment": draw(st.sampled_from(["0.1", "0.25", "0.5", "1", "0.05"])),
        "mode": draw(st.sampled_from(["up", "down", "nearest"])),
    }


def _line(
    draw: st.DrawFn,
    model: str,
    line_id: str,
    currency: str,
    cards: list[str],
    start: date,
    end: date,
    *,
    monotone: bool,
) -> Raw:
    line: Raw = {"id": line_id, "model": model}
    if draw(st.integers(0, 4)) == 0:
        line["tax_category"] = "books"
    if draw(st.booleans()):
        line["expense_markup_percent"] = draw(st.sampled_from(["0", "10", "12.5", "7.25", "33"]))
    if model == "time_and_materials":
        line["rate_card"] = draw(st.sampled_from(cards))
        if draw(st.booleans()):
            line["cap"] = money_text(draw, currency, 0, 8000)
            if draw(st.booleans()):
                line["overage"] = draw(st.sampled_from(["write_off", "hold"]))
        rounding = _rounding(draw)
        if rounding is not None:
            line["rounding"] = rounding
    elif model == "fixed_milestone":
        line["amount"] = money_text(draw, currency, 0, 60000)
        count = draw(st.integers(1, 4))
        milestones: list[Raw] = []
        if draw(st.booleans()):  # percents that add up to exactly 100
            cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=count - 1, max_size=count - 1)))
            bounds = [0, *cuts, 100]
            for k in range(count):
                milestones.append({"id": f"{line_id}-m{k}", "percent": str(bounds[k + 1] - bounds[k])})
        else:
            for k in range(count):
                if draw(st.booleans()):
                    milestones.append({"id": f"{line_id}-m{k}", "percent": str(draw(st.integers(0, 25)))})
                else:
                    milestones.append(
                        {"id": f"{line_id}-m{k}", "amount": money_text(draw, currency, 0, 2000)}
                    )
                if draw(st.booleans()):
                    milestones[-1]["acceptance_required"] = False
        line["milestones"] = milestones
    elif model == "fixed_progress":
        line["amount"] = money_text(draw, currency, 0, 60000)
    elif model == "managed_service":
        line["fee"] = money_text(draw, currency, 0, 6000)
        line["included_hours"] = decimal_text(draw, 20, 1)
        line["overage_rate"] = price_text(draw, currency, 0, 200)
        rounding = _rounding(draw)
        if rounding is not None:
            line["rounding"] = rounding
    elif model == "recurring":
        line["amount"] = money_text(draw, currency, 0, 3000)
        if draw(st.booleans()):
            line["start"] = day(start + timedelta(days=draw(st.integers(-40, 35))))
        if draw(st.booleans()):
            first = date.fromisoformat(line.get("start", day(start - timedelta(days=40))))
            line["end"] = day(first + timedelta(days=draw(st.integers(0, 60))))
    elif model == "usage":
        pricing = draw(
            st.sampled_from(["graduated", "package"] if monotone else ["graduated", "volume", "package"])
        )
        line["pricing"] = pricing
        if pricing == "package":
            line["package_size"] = str(draw(st.integers(1, 100)))
            line["package_price"] = price_text(draw, currency, 0, 80)
            if draw(st.booleans()):
                line["free_units"] = str(draw(st.integers(0, 50)))
        else:
            bounds = sorted(set(draw(st.lists(st.integers(1, 300), max_size=3))))
            tiers: list[Raw] = [
                {"up_to": str(b), "unit_price": price_text(draw, currency, 0, 3)} for b in bounds
            ]
            tiers.append({"unit_price": price_text(draw, currency, 0, 3)})
            line["tiers"] = tiers
    else:
        assert model == "prepaid_block"
        line["hours"] = text(scaled(draw(st.integers(1, 400)), 1))
        line["rate"] = price_text(draw, currency, 0, 200)
        if draw(st.booleans()):
            line["overage_rate"] = price_text(draw, currency, 0, 250)
        if draw(st.booleans()):
            offset = draw(st.integers(-20, 0 if monotone else 35))
            line["start"] = day(start + timedelta(days=offset))
        rounding = _rounding(draw)
        if rounding is not None:
            line["rounding"] = rounding
    return line


def _rate_card(
    draw: st.DrawFn, card_id: str, currency: str, projects: list[str], account_ids: list[str]
) -> Raw:
    entries: list[Raw] = [{"default": True, "rate": price_text(draw, currency, 20, 300)}]
    seen: set[tuple[str | None, ...]] = set()
    for _ in range(draw(st.integers(0, 6))):
        shape = draw(
            st.sampled_from(
                ["role", "person", "person+project", "role+project", "project", "account"]
            )
        )
        entry: Raw = {}
        if "person" in shape:
            entry["person"] = draw(st.sampled_from([p["id"] for p in PEOPLE]))
        if "role" in shape:
            entry["role"] = draw(st.sampled_from(ROLES))
        if "project" in shape and projects:
            entry["project"] = draw(st.sampled_from(projects))
        if shape == "account":
            entry["account"] = draw(st.sampled_from(account_ids))
        key = tuple(entry.get(k) for k in ("person", "project", "role", "account"))
        if not entry or key in seen:
            continue
        seen.add(key)
        entry["rate"] = price_text(draw, currency, 20, 300)
        entries.append(entry)
    return {"id": card_id, "currency": currency, "entries": entries}


def _fx_rates(draw: st.DrawFn, start: date, as_of: date, *, late_rates: bool) -> list[Raw]:
    """One direction per currency pair, dated before the period; maybe older and later ones."""
    rates: list[Raw] = []
    for i, a in enumerate(CURRENCIES):
        for b in CURRENCIES[i + 1 :]:
            frm, to = (a, b) if draw(st.booleans()) else (b, a)
            fair = PER_EUR[to] / PER_EUR[frm]

            def quote(on: date, frm: str = frm, to: str = to, fair: Decimal = fair) -> Raw:
                jitter = Decimal(draw(st.integers(80, 120))) / 100
                rate = (fair * jitter).quantize(Decimal("1E-6")) or Decimal("0.000001")
                return {"from": frm, "to": to, "date": day(on), "rate": text(rate.normalize())}

            rates.append(quote(start - timedelta(days=draw(st.integers(1, 3)))))
            if draw(st.booleans()):
                rates.append(quote(start - timedelta(days=draw(st.integers(10, 60)))))
            if late_rates and draw(st.booleans()):
                rates.append(quote(as_of + timedelta(days=draw(st.integers(1, 10)))))
    return draw(st.permutations(rates))


def _tax_rules(draw: st.DrawFn) -> list[Raw]:
    if draw(st.integers(0, 5)) == 0:
        return []
    return [
        {"seller_country": "GB", "buyer_country": "GB", "rate": draw(st.sampled_from(TAX_RATES))},
        {
            "seller_country": "GB",
            "buyer_region": "EU",
            "business": True,
            "reverse_charge": True,
            "legend": "Reverse charge",
        },
        {"category": "books", "rate": draw(st.sampled_from(TAX_RATES))},
        {"rate": draw(st.sampled_from(TAX_RATES))},  # fallback: every buyer matches something
    ]


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    models: tuple[str, ...] = ALL_MODELS,
    as_of_at_end: bool = False,
    monotone: bool = False,
    expenses_on: tuple[str, ...] | None = None,
    min_contracts: int = 1,
) -> Raw:
    """A valid scenario document.

    ``as_of_at_end`` pins as_of to the last day of the period and keeps every FX
    rate before the period, so that a run at any date of the period converts alike;
    ``monotone`` keeps progress rising and usage pricing monotone (no volume tiers),
    as the split-run property needs; ``expenses_on`` limits expenses to projects of
    lines of those models.
    """
    year = draw(st.sampled_from([2024, 2025, 2026]))
    month = draw(st.integers(1, 12))
    start = date(year, month, 1)
    end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    as_of = end if as_of_at_end else start + timedelta(days=draw(st.integers(0, (end - start).days)))
    cards = [
        (f"card{k}", draw(st.sampled_from(CURRENCIES))) for k in range(draw(st.integers(1, 2)))
    ]
    contracts: list[Raw] = []
    models_by_line: dict[str, str] = {}
    for c in range(draw(st.integers(min_contracts, 3))):
        currency = draw(st.sampled_from(CURRENCIES))
        lines = []
        for k, model in enumerate(draw(st.lists(st.sampled_from(models), min_size=1, max_size=4))):
            line_id = f"c{c}-{model[:4]}{k}"
            models_by_line[line_id] = model
            lines.append(
                _line(
                    draw, model, line_id, currency, [cid for cid, _ in cards], start, end,
                    monotone=monotone,
                )
            )
        contract: Raw = {
            "id": f"c{c}",
            "account": draw(st.sampled_from([a["id"] for a in ACCOUNTS])),
            "entity": draw(st.sampled_from([e["id"] for e in ENTITIES])),
            "currency": currency,
            "tax_rounding": draw(st.sampled_from(["line", "invoice"])),
            "lines": lines,
        }
        if draw(st.integers(0, 3)) == 0:
            contract["bill_to"] = draw(st.sampled_from([a["id"] for a in ACCOUNTS]))
        contracts.append(contract)
    projects = [{"id": f"p-{line_id}", "contract_line": line_id} for line_id in models_by_line]
    project_ids = [p["id"] for p in projects]
    account_ids = [a["id"] for a in ACCOUNTS]
    raw: Raw = {
        "accord_scenario": 1,
        "as_of": day(as_of),
        "period": {"start": day(start), "end": day(end)},
        "entities": copy.deepcopy(ENTITIES),
        "accounts": copy.deepcopy(ACCOUNTS),
        "people": copy.deepcopy(PEOPLE),
        "rate_cards": [_rate_card(draw, cid, cur, project_ids, account_ids) for cid, cur in cards],
        "fx_rates": _fx_rates(draw, start, as_of, late_rates=not as_of_at_end),
        "tax_rules": _tax_rules(draw),
        "contracts": contracts,
        "projects": projects,
    }

    def source_day() -> str:
        return day(start + timedelta(days=draw(st.integers(-5, (end - start).days + 3))))

    time_entries = []
    for k in range(draw(st.integers(0, 10))):
        places = draw(st.integers(0, 3))
        time_entries.append(
            {
                "id": f"t{k}",
                "person": draw(st.sampled_from([p["id"] for p in PEOPLE])),
                "project": draw(st.sampled_from(project_ids)),
                "date": source_day(),
                "hours": text(scaled(draw(st.integers(0, 12 * 10**places)), places)),
                "billable": draw(st.sampled_from([True, True, True, False])),
                "status": draw(st.sampled_from(["approved"] * 5 + ["submitted", "draft"])),
                "billed": draw(st.sampled_from([False] * 6 + [True])),
            }
        )
    expense_projects = [
        p["id"]
        for p in projects
        if expenses_on is None or models_by_line[p["contract_line"]] in expenses_on
    ]
    expenses = []
    for k in range(draw(st.integers(0, 6)) if expense_projects else 0):
        currency = draw(st.sampled_from(CURRENCIES))
        expense: Raw = {
            "id": f"e{k}",
            "person": draw(st.sampled_from([p["id"] for p in PEOPLE])),
            "project": draw(st.sampled_from(expense_projects)),
            "date": source_day(),
            "amount": money_text(draw, currency, 0, 600),
            "currency": currency,
            "billable": draw(st.sampled_from([True, True, True, False])),
            "status": draw(st.sampled_from(["approved"] * 4 + ["reimbursed", "submitted"])),
            "billed": draw(st.sampled_from([False] * 6 + [True])),
        }
        if draw(st.integers(0, 3)) == 0:
            expense["markup_percent"] = draw(st.sampled_from(["0", "5", "15", "8.5"]))
        expenses.append(expense)
    milestones = []
    for contract in contracts:
        for line in contract["lines"]:
            for ms in line.get("milestones", ()):
                if draw(st.booleans()):
                    event: Raw = {
                        "id": ms["id"],
                        "status": draw(st.sampled_from(["planned", "reached", "accepted", "accepted", "billed"])),
                    }
                    if draw(st.integers(0, 4)):
                        event["date"] = source_day()
                    milestones.append(event)
    progress: list[Raw] = []
    usage: list[Raw] = []
    prior: list[Raw] = []
    for line_id, model in models_by_line.items():
        if model == "fixed_progress":
            percents = draw(st.lists(st.integers(0, 100), max_size=3))
            if monotone:
                percents.sort()
            dates = sorted(set(source_day() for _ in percents))
            for when, pct in zip(dates, percents, strict=False):
                progress.append({"contract_line": line_id, "date": when, "percent_complete": str(pct)})
            if draw(st.booleans()):
                prior.append({"contract_line": line_id, "percent": str(draw(st.integers(0, 40)))})
        elif model == "usage":
            for k in range(draw(st.integers(0, 3))):
                record: Raw = {
                    "contract_line": line_id,
                    "date": source_day(),
                    "quantity": decimal_text(draw, 300, 2),
                }
                if draw(st.integers(0, 3)):
                    record["id"] = f"u-{line_id}-{k}"
                usage.append(record)
        elif model == "time_and_materials" and draw(st.integers(0, 2)) == 0:
            contract_currency = next(
                c["currency"] for c in contracts if any(ln["id"] == line_id for ln in c["lines"])
            )
            prior.append(
                {"contract_line": line_id, "amount": money_text(draw, contract_currency, 0, 6000)}
            )
    # undated usage records of one date would share a source id: keep dates apart per line
    raw.update(
        time_entries=draw(st.permutations(time_entries)),
        expenses=expenses,
        milestones=milestones,
        progress=progress,
        usage=usage,
        prior_billed=prior,
    )
    return raw


def run(raw: Raw) -> BillingRun:
    return run_billing_via_loader(raw)


def run_billing_via_loader(raw: Raw) -> BillingRun:
    from accord.billing.engine import run_billing

    return run_billing(parse_scenario(copy.deepcopy(raw)))
