"""Property tests of the billing engine, fed through the scenario loader.

Every world here is generated as a raw scenario document (DOMAIN.md part 4, the
dict ``yaml.safe_load`` would give) and goes through ``parse_scenario`` before
``run_billing``, so the loader is exercised together with the engine. Worlds mix
currencies with 0, 2 and 3 minor digits (JPY, EUR/USD/GBP, BHD), FX rates quoted
in either direction (some older, some after as_of), rate cards with re-rated
entries, every contract-line model, expenses with markups in foreign currencies, and
tax tables with reverse charge and both tax-rounding policies.

A property that fails on the engine is kept failing on purpose (not xfail): see
``test_amounts_billed_per_source_earlier_do_not_reduce_later_charges_of_the_same_line``.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accord.billing.engine import BillingInputError, run_billing
from accord.billing.model import BillingRun, LineKind
from accord.billing.scenario import parse_scenario, run_to_json
from accord.domain.money import Money, currency_digits
from accord.errors import InvalidInput, ScenarioError

Raw = dict[str, Any]

# Whole-file budget: about 1,500 generated scenarios, some 15 s here; well under a minute on
# a slow two-core machine. No example database: nothing is written next to the project.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],  # generation is ~10 ms a scenario
)

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
            cuts = sorted(
                draw(st.lists(st.integers(1, 99), min_size=count - 1, max_size=count - 1))
            )
            bounds = [0, *cuts, 100]
            for k in range(count):
                milestones.append(
                    {"id": f"{line_id}-m{k}", "percent": str(bounds[k + 1] - bounds[k])}
                )
        else:
            for k in range(count):
                if draw(st.booleans()):
                    milestones.append(
                        {"id": f"{line_id}-m{k}", "percent": str(draw(st.integers(0, 25)))}
                    )
                else:
                    whole = minor(line["amount"], currency)
                    share = scaled(draw(st.integers(0, whole // 4)), currency_digits(currency))
                    milestones.append({"id": f"{line_id}-m{k}", "amount": text(share)})
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
            st.sampled_from(
                ["graduated", "package"] if monotone else ["graduated", "volume", "package"]
            )
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
            offset = draw(st.integers(-20, 35))
            line["start"] = day(start + timedelta(days=offset))
        rounding = _rounding(draw)
        if rounding is not None:
            line["rounding"] = rounding
    return line


def _rate_card(
    draw: st.DrawFn,
    card_id: str,
    currency: str,
    projects: list[str],
    account_ids: list[str],
    start: date,
) -> Raw:
    """A default rate plus entries of every key shape; an entry may be re-rated during
    the period (a second entry of the same key from a day on, the first one maybe
    ending the day before)."""
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
        if draw(st.integers(0, 2)) == 0:
            from_day = start + timedelta(days=draw(st.integers(1, 27)))
            rerated = {**entry, "rate": price_text(draw, currency, 20, 300)}
            rerated["valid_from"] = day(from_day)
            if draw(st.booleans()):
                entry["valid_to"] = day(from_day - timedelta(days=1))
            entries.append(rerated)
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
    as_of = (
        end
        if as_of_at_end
        else start + timedelta(days=draw(st.integers(0, (end - start).days + 5)))
    )
    cards = [
        (f"card{k}", draw(st.sampled_from(CURRENCIES))) for k in range(draw(st.integers(1, 2)))
    ]
    contracts: list[Raw] = []
    models_by_line: dict[str, str] = {}
    for c in range(draw(st.integers(1, 3))):
        currency = draw(st.sampled_from(CURRENCIES))
        lines = []
        for k, model in enumerate(draw(st.lists(st.sampled_from(models), min_size=1, max_size=4))):
            line_id = f"c{c}-{model[:4]}{k}"
            models_by_line[line_id] = model
            lines.append(
                _line(
                    draw,
                    model,
                    line_id,
                    currency,
                    [cid for cid, _ in cards],
                    start,
                    end,
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
        "rate_cards": [
            _rate_card(draw, cid, cur, project_ids, account_ids, start) for cid, cur in cards
        ],
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
                        "status": draw(
                            st.sampled_from(
                                ["planned", "reached", "accepted", "accepted", "billed"]
                            )
                        ),
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
                progress.append(
                    {"contract_line": line_id, "date": when, "percent_complete": str(pct)}
                )
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
    raw.update(
        time_entries=draw(st.permutations(time_entries)),
        expenses=expenses,
        milestones=milestones,
        progress=progress,
        usage=usage,
        prior_billed=prior,
    )
    return raw


# -- running, folding and an independent price oracle -------------------------------


def run(raw: Raw) -> BillingRun:
    """Load the document as ``accord bill`` would, and run it."""
    return run_billing(parse_scenario(copy.deepcopy(raw)))


def contract_of_line(raw: Raw) -> dict[str, Raw]:
    return {line["id"]: c for c in raw["contracts"] for line in c["lines"]}


def fold(raw: Raw, result: BillingRun) -> Raw:
    """The scenario as the next run sees it once ``result`` has been invoiced.

    Precisely:

    * every time entry and expense whose id is listed in the ``sources`` of any
      invoice line gets ``billed: true`` (split items too: their part over a cap
      was reported as held or written off by that run);
    * every milestone whose id is listed in any line's ``sources`` gets
      ``status: billed`` (its date is kept);
    * for each contract line that has invoice lines, one ``prior_billed`` entry is
      appended (existing entries are kept; the engine adds up entries of one line)
      with ``amount`` = the sum of that line's invoice-line amounts, as a string in
      the contract currency — on a line with period or block charges, without its
      expense lines, which are settled per receipt (docs/scenario-format.md,
      ``prior_billed``); on a time-and-materials line everything billed counts, as
      it all counts against the cap; for a fixed_progress line the entry also carries
      ``percent`` = the percentage points billed now, i.e. the progress line's
      quantity × 100 (latest percent complete used − percent billed before);
    * nothing else changes: held and written-off items, skipped sources, usage
      records and progress reports stay as they were.
    """
    folded = copy.deepcopy(raw)
    sources = {s for inv in result.invoices for line in inv.lines for s in line.sources}
    for record in (*folded["time_entries"], *folded["expenses"]):
        if record["id"] in sources:
            record["billed"] = True
    for event in folded["milestones"]:
        if event["id"] in sources:
            event["status"] = "billed"
    amounts: dict[str, int] = defaultdict(int)
    percents: dict[str, Decimal] = defaultdict(Decimal)
    currency: dict[str, str] = {}
    time_and_materials = {
        ln["id"]
        for c in raw["contracts"]
        for ln in c["lines"]
        if ln["model"] == "time_and_materials"
    }
    for inv in result.invoices:
        for line in inv.lines:
            if line.kind is LineKind.EXPENSE and line.contract_line not in time_and_materials:
                continue
            amounts[line.contract_line] += line.amount.minor
            currency[line.contract_line] = inv.currency
            if line.kind is LineKind.PROGRESS:
                percents[line.contract_line] += line.quantity * 100
    for line_id, total in amounts.items():
        entry: Raw = {
            "contract_line": line_id,
            "amount": Money(total, currency[line_id]).format(),
        }
        if line_id in percents:
            entry["percent"] = text(percents[line_id].normalize())
        folded["prior_billed"].append(entry)
    return folded


def fx_quote(raw: Raw, frm: str, to: str, as_of: date) -> Decimal:
    """Latest rate on or before as_of for the pair, or the inverse of the opposite pair."""
    if frm == to:
        return Decimal(1)

    def latest(a: str, b: str) -> Decimal | None:
        quotes = [
            r
            for r in raw["fx_rates"]
            if r["from"] == a and r["to"] == b and date.fromisoformat(r["date"]) <= as_of
        ]
        if not quotes:
            return None
        return Decimal(max(quotes, key=lambda r: r["date"])["rate"])

    direct = latest(frm, to)
    if direct is not None:
        return direct
    inverse = latest(to, frm)
    assert inverse is not None, f"generator gave no {frm}/{to} rate"
    return Decimal(1) / inverse


def convert(raw: Raw, amount: Decimal, frm: str, to: str, as_of: date) -> Decimal:
    """Amount (already rounded in ``frm``) in ``to``, rounded half-up to its minor unit."""
    if frm == to:
        return amount
    return round_to(amount * fx_quote(raw, frm, to, as_of), to)


def round_to(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-currency_digits(currency)), rounding=ROUND_HALF_UP)


_MODES = {"up": ROUND_CEILING, "down": ROUND_FLOOR, "nearest": ROUND_HALF_UP}


def billed_hours(hours: Decimal, rounding: Raw | None) -> Decimal:
    if rounding is None:
        return hours
    step = Decimal(rounding["increment"])
    mode = _MODES[rounding.get("mode", "up")]
    return (hours / step).to_integral_value(rounding=mode) * step


def card_rate(card: Raw, person: str, project: str, account: str, on: date) -> Decimal:
    """DOMAIN.md rule 1: person+project > person > role+project > project > role > account >
    default; of the entries of one key valid on the day, the latest valid_from wins."""

    def valid(entry: Raw) -> bool:
        return bool(entry.get("valid_from", "") <= day(on) <= entry.get("valid_to", "9999"))

    role = next(p.get("role") for p in PEOPLE if p["id"] == person)
    wanted: list[dict[str, object]] = [
        {"person": person, "project": project},
        {"person": person},
        {"role": role, "project": project},
        {"project": project},
        {"role": role},
        {"account": account},
        {"default": True},
    ]
    for keys in wanted:
        if None in keys.values():
            continue
        dated = ("rate", "valid_from", "valid_to")
        candidates = [
            entry
            for entry in card["entries"]
            if {k: v for k, v in entry.items() if k not in dated} == keys and valid(entry)
        ]
        if candidates:
            return Decimal(max(candidates, key=lambda e: e.get("valid_from", ""))["rate"])
    raise AssertionError("every generated card has a default entry")


def is_due(record: Raw, as_of: date, statuses: tuple[str, ...]) -> bool:
    return (
        record["status"] in statuses
        and record["billable"]
        and date.fromisoformat(record["date"]) <= as_of
        and not record["billed"]
    )


def time_and_materials_values(raw: Raw) -> dict[str, dict[str, Decimal]]:
    """Per time-and-materials line, the value of each billable source in the contract
    currency before any cap: rounded hours × rate rounded in the card currency, then
    converted and rounded; expenses converted, then marked up and rounded."""
    as_of = date.fromisoformat(raw["as_of"])
    contracts = contract_of_line(raw)
    lines = {line["id"]: line for c in raw["contracts"] for line in c["lines"]}
    project_line = {p["id"]: p["contract_line"] for p in raw["projects"]}
    cards = {card["id"]: card for card in raw["rate_cards"]}
    values: dict[str, dict[str, Decimal]] = {
        line_id: {} for line_id, line in lines.items() if line["model"] == "time_and_materials"
    }
    for entry in raw["time_entries"]:
        line_id = project_line[entry["project"]]
        if line_id not in values or not is_due(entry, as_of, ("approved",)):
            continue
        line, contract = lines[line_id], contracts[line_id]
        card = cards[line["rate_card"]]
        rate = card_rate(
            card,
            entry["person"],
            entry["project"],
            contract["account"],
            date.fromisoformat(entry["date"]),
        )
        hours = billed_hours(Decimal(entry["hours"]), line.get("rounding"))
        source = round_to(hours * rate, card["currency"])
        values[line_id][entry["id"]] = convert(
            raw, source, card["currency"], contract["currency"], as_of
        )
    for expense in raw["expenses"]:
        line_id = project_line[expense["project"]]
        if line_id not in values or not is_due(expense, as_of, ("approved", "reimbursed")):
            continue
        line, contract = lines[line_id], contracts[line_id]
        converted = convert(
            raw, Decimal(expense["amount"]), expense["currency"], contract["currency"], as_of
        )
        markup = Decimal(expense.get("markup_percent", line.get("expense_markup_percent", "0")))
        values[line_id][expense["id"]] = round_to(
            converted * (1 + markup / 100), contract["currency"]
        )
    return values


EU_MEMBERS = {"DE", "FR"}


def expected_tax(raw: Raw, contract: Raw, category: str | None) -> tuple[Decimal, bool]:
    """(rate, reverse charge) of the first matching rule; no table → no tax."""
    if not raw["tax_rules"]:
        return Decimal(0), False
    seller = next(e for e in ENTITIES if e["id"] == contract["entity"])
    buyer = next(a for a in ACCOUNTS if a["id"] == contract.get("bill_to", contract["account"]))
    region = "EU" if buyer["country"] in EU_MEMBERS else None
    for rule in raw["tax_rules"]:
        if rule.get("seller_country", seller["country"]) != seller["country"]:
            continue
        if rule.get("buyer_country", buyer["country"]) != buyer["country"]:
            continue
        if "buyer_region" in rule and rule["buyer_region"] != region:
            continue
        if rule.get("business", buyer["business"]) != buyer["business"]:
            continue
        if "category" in rule and rule["category"] != category:
            continue
        if rule.get("reverse_charge"):
            return Decimal(0), True
        return Decimal(rule["rate"]), False
    raise AssertionError("the generated tax table always ends with a catch-all rule")


def net_by_line(result: BillingRun) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for inv in result.invoices:
        for line in inv.lines:
            totals[line.contract_line] += line.amount.minor
    return dict(totals)


def net_by_contract(result: BillingRun) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for inv in result.invoices:
        totals[inv.contract] += inv.net.minor
    return dict(totals)


# -- 1. invoice arithmetic ---------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_invoice_lines_sum_to_net_line_taxes_sum_to_tax_and_net_plus_tax_is_gross(
    raw: Raw,
) -> None:
    result = run(raw)
    contracts = {c["id"]: c for c in raw["contracts"]}
    lines = {line["id"]: line for c in raw["contracts"] for line in c["lines"]}
    assert len({inv.contract for inv in result.invoices}) == len(result.invoices)
    for inv in result.invoices:
        contract = contracts[inv.contract]
        assert inv.currency == contract["currency"]
        assert inv.lines, "an invoice without lines"
        assert Money.sum((line.amount for line in inv.lines), inv.currency) == inv.net
        assert Money.sum((line.tax for line in inv.lines), inv.currency) == inv.tax
        assert inv.net + inv.tax == inv.gross
        by_rate: dict[Decimal, list[int]] = defaultdict(list)
        for index, line in enumerate(inv.lines):
            rate, reverse = expected_tax(
                raw, contract, lines[line.contract_line].get("tax_category")
            )
            assert line.tax_rate == rate, line
            if reverse:
                assert inv.reverse_charge and inv.legend
                assert line.tax.is_zero()
            by_rate[rate].append(index)
            if contract["tax_rounding"] == "line":
                assert line.tax == line.amount.times(rate), line
        if contract["tax_rounding"] == "invoice":
            for rate, indexes in by_rate.items():
                group_net = Money.sum((inv.lines[i].amount for i in indexes), inv.currency)
                group_tax = Money.sum((inv.lines[i].tax for i in indexes), inv.currency)
                assert group_tax == group_net.times(rate), (rate, indexes)


# -- 2. caps ---------------------------------------------------------------------

CAP_HEAVY = ("time_and_materials", "time_and_materials", "time_and_materials", "prepaid_block")


@PROPERTY
@given(scenarios(models=CAP_HEAVY))
def test_cap_is_never_exceeded_and_billed_plus_held_plus_written_off_is_the_value_of_the_items(
    raw: Raw,
) -> None:
    result = run(raw)
    contracts = contract_of_line(raw)
    lines = {line["id"]: line for c in raw["contracts"] for line in c["lines"]}
    values = time_and_materials_values(raw)
    billed = net_by_line(result)
    held: dict[str, int] = defaultdict(int)
    written_off: dict[str, int] = defaultdict(int)
    for item in result.held:
        held[item.contract_line] += item.amount.minor
        assert item.reason == "cap"
    for item in result.written_off:
        written_off[item.contract_line] += item.amount.minor
        assert item.reason == "cap"
    for line_id, items in values.items():
        line, currency = lines[line_id], contracts[line_id]["currency"]
        value = sum(minor(text(v), currency) for v in items.values())
        assert billed.get(line_id, 0) + held[line_id] + written_off[line_id] == value, line_id
        if "cap" not in line:
            assert held[line_id] == written_off[line_id] == 0
            continue
        cap = minor(line["cap"], currency)
        prior = sum(
            minor(p["amount"], currency)
            for p in raw["prior_billed"]
            if p["contract_line"] == line_id and "amount" in p
        )
        room = max(0, cap - prior)
        assert billed.get(line_id, 0) <= room, "billed beyond the cap"
        assert billed.get(line_id, 0) == min(value, room), "stopped short of the cap"
        if line.get("overage") == "hold":
            assert written_off[line_id] == 0
        else:
            assert held[line_id] == 0
    # held and written-off amounts are in the contract currency and name a T&M source
    for item in (*result.held, *result.written_off):
        assert item.amount.currency == contracts[item.contract_line]["currency"]
        assert item.source in values[item.contract_line]
        assert item.amount.minor > 0


# -- 3. folding a run back in ----------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_second_run_after_folding_bills_nothing_more(raw: Raw) -> None:
    first = run(raw)
    folded = fold(raw, first)
    second = run(folded)
    assert second.invoices == (), [
        (
            inv.contract,
            [(ln.contract_line, ln.kind.value, ln.amount.format(), ln.sources) for ln in inv.lines],
        )
        for inv in second.invoices
    ]


# -- 4. one run or two ------------------------------------------------------------------


def split_and_single(raw: Raw, mid: date) -> tuple[BillingRun, BillingRun, BillingRun]:
    """One run at as_of (the period end); and a run at ``mid`` that sees only the
    sources dated up to then, folded (see :func:`fold`), then a run at the end."""
    once = run(raw)
    early = {**copy.deepcopy(raw), "as_of": day(mid)}
    first = run(early)
    later = fold(early, first)
    later["as_of"] = raw["as_of"]
    second = run(later)
    return once, first, second


def mid_of(raw: Raw, offset: int) -> date:
    """A day of the period before its last (every month has more than 27 days)."""
    start, end = period_of(raw)
    mid = start + timedelta(days=offset)
    assert mid < end
    return mid


def nonzero(totals: dict[str, int]) -> dict[str, int]:
    return {key: value for key, value in totals.items() if value}


def assert_split_bills_like_one_run(raw: Raw, offset: int) -> None:
    once, first, second = split_and_single(raw, mid_of(raw, offset))
    split_contracts: dict[str, int] = defaultdict(int)
    split_lines: dict[str, int] = defaultdict(int)
    for partial in (first, second):
        for contract, net in net_by_contract(partial).items():
            split_contracts[contract] += net
        for line_id, net in net_by_line(partial).items():
            split_lines[line_id] += net
    assert nonzero(split_lines) == nonzero(net_by_line(once)), "per contract line"
    assert nonzero(split_contracts) == nonzero(net_by_contract(once)), "per contract"


MID = st.integers(0, 26)


@PROPERTY
@given(
    scenarios(models=("time_and_materials",), as_of_at_end=True, monotone=True),
    MID,
)
def test_time_and_expenses_billed_in_two_runs_total_the_same_as_in_one_run(
    raw: Raw, mid: int
) -> None:
    """Time and expenses on time-and-materials lines, capped (write_off or hold) or not,
    with hour rounding, foreign rate cards, foreign receipts and markups."""
    assert_split_bills_like_one_run(raw, mid)


@PROPERTY
@given(
    scenarios(as_of_at_end=True, monotone=True, expenses_on=("time_and_materials",)),
    MID,
)
def test_period_fees_usage_blocks_and_fixed_fees_billed_in_two_runs_total_the_same_as_one_run(
    raw: Raw, mid: int
) -> None:
    """Every model, prepaid blocks starting before or during the period, expenses kept on
    time-and-materials lines (usage pricing graduated or package, progress rising: volume
    pricing and falling progress can make an early run bill more than a late one)."""
    assert_split_bills_like_one_run(raw, mid)


def tiny(line: Raw, **sources: list[Raw]) -> Raw:
    """A one-line EUR contract in March 2026, as_of the 31st, and the given sources."""
    raw: Raw = {
        "accord_scenario": 1,
        "as_of": "2026-03-31",
        "period": {"start": "2026-03-01", "end": "2026-03-31"},
        "entities": [{"id": "gb", "country": "GB", "currency": "GBP"}],
        "accounts": [{"id": "brit", "country": "GB"}],
        "people": [{"id": "alice"}],
        "rate_cards": [],
        "fx_rates": [],
        "tax_rules": [],
        "contracts": [
            {"id": "c1", "account": "brit", "entity": "gb", "currency": "EUR", "lines": [line]}
        ],
        "projects": [{"id": "p1", "contract_line": line["id"]}],
        "time_entries": [],
        "expenses": [],
        "milestones": [],
        "progress": [],
        "usage": [],
        "prior_billed": [],
    }
    raw.update(sources)
    return raw


def _time(tid: str, on: str, hours: str) -> Raw:
    return {"id": tid, "person": "alice", "project": "p1", "date": on, "hours": hours}


def _expense(eid: str, on: str, amount: str) -> Raw:
    return {
        "id": eid,
        "person": "alice",
        "project": "p1",
        "date": on,
        "amount": amount,
        "currency": "EUR",
    }


# Minimal cases, mid = 2026-03-10. In the first three the earlier run bills an expense on
# a usage, managed-service or prepaid-block line; folded into prior_billed, that amount is
# then taken off the line's later usage charge or overage, which is lost. The fourth (block
# overage billed before the block starts) guards the block fee against the same mistake.
USAGE_AND_EXPENSE = tiny(
    {"id": "use", "model": "usage", "pricing": "graduated", "tiers": [{"unit_price": "1.00"}]},
    expenses=[_expense("e1", "2026-03-05", "10.00")],
    usage=[{"id": "u1", "contract_line": "use", "date": "2026-03-20", "quantity": "5"}],
)
MANAGED_AND_EXPENSE = tiny(
    {
        "id": "ms",
        "model": "managed_service",
        "fee": "100.00",
        "included_hours": "0",
        "overage_rate": "10.00",
    },
    time_entries=[_time("t1", "2026-03-20", "2")],
    expenses=[_expense("e1", "2026-03-05", "10.00")],
)
BLOCK_AND_EXPENSE = tiny(
    {"id": "blk", "model": "prepaid_block", "hours": "1", "rate": "100.00"},
    time_entries=[_time("t1", "2026-03-20", "2")],
    expenses=[_expense("e1", "2026-03-05", "10.00")],
)
BLOCK_STARTING_LATE = tiny(
    {"id": "blk", "model": "prepaid_block", "hours": "1", "rate": "100", "start": "2026-03-20"},
    time_entries=[_time("t1", "2026-03-02", "2")],
)


@PROPERTY
@example(raw=USAGE_AND_EXPENSE, mid=9)
@example(raw=MANAGED_AND_EXPENSE, mid=9)
@example(raw=BLOCK_AND_EXPENSE, mid=9)
@example(raw=BLOCK_STARTING_LATE, mid=9)
@given(scenarios(as_of_at_end=True, monotone=True), MID)
def test_amounts_billed_per_source_earlier_do_not_reduce_later_charges_of_the_same_line(
    raw: Raw, mid: int
) -> None:
    """As above, but with expenses on the projects of every kind of line.

    An expense is settled per receipt (``billed: true``); the amount folded into
    ``prior_billed`` of a period or block line leaves it out, so a receipt billed
    early never reduces a usage charge, a managed-service fee or a block billed later.
    """
    assert_split_bills_like_one_run(raw, mid)


# -- 5. money in the JSON output ------------------------------------------------------------


def money_pattern(currency: str) -> re.Pattern[str]:
    digits = currency_digits(currency)
    return re.compile(r"-?\d+" if digits == 0 else rf"-?\d+\.\d{{{digits}}}")


def money_strings(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, text, currency) for every money value of a ``run_to_json`` document."""
    found = []
    for i, inv in enumerate(doc["invoices"]):
        cur = inv["currency"]
        for key in ("net", "tax", "gross"):
            found.append((f"invoices[{i}].{key}", inv[key], cur))
        if "functional" in inv:
            found.append(
                (
                    f"invoices[{i}].functional",
                    inv["functional"]["gross"],
                    inv["functional"]["currency"],
                )
            )
        for j, line in enumerate(inv["lines"]):
            found.append((f"invoices[{i}].lines[{j}].amount", line["amount"], cur))
            found.append((f"invoices[{i}].lines[{j}].tax", line["tax"], cur))
            if "source_amount" in line:
                found.append(
                    (
                        f"invoices[{i}].lines[{j}].source_amount",
                        line["source_amount"],
                        line["source_currency"],
                    )
                )
    for key in ("held", "written_off"):
        for i, item in enumerate(doc[key]):
            found.append((f"{key}[{i}]", item["amount"], item["currency"]))
    for i, ic in enumerate(doc["intercompany"]):
        found.append((f"intercompany[{i}]", ic["amount"], ic["currency"]))
        for j, line in enumerate(ic["lines"]):
            found.append((f"intercompany[{i}].lines[{j}]", line["amount"], ic["currency"]))
    return found


@PROPERTY
@given(scenarios())
def test_every_money_string_in_the_json_output_has_exactly_the_currency_minor_digits(
    raw: Raw,
) -> None:
    doc = run_to_json(run(raw))
    for where, value, currency in money_strings(doc):
        assert isinstance(value, str), where
        assert money_pattern(currency).fullmatch(value), (where, value, currency)
    for inv in doc["invoices"]:
        digits = currency_digits(inv["currency"])
        for line in inv["lines"]:  # a unit price has at least the currency's digits
            places = len(line["unit_price"].partition(".")[2])
            assert places >= digits, line["unit_price"]


# -- 6. malformed scenarios ------------------------------------------------------------------


def _insert(draw: st.DrawFn, raw: Raw, key: str, record: Raw) -> None:
    """Put ``record`` anywhere in ``raw[key]``: the error must still name it by id."""
    records = raw.setdefault(key, [])
    records.insert(draw(st.integers(0, len(records))), record)


def _new_time(raw: Raw, tid: str, **changes: Any) -> Raw:
    entry = {
        "id": tid,
        "person": "alice",
        "project": raw["projects"][0]["id"],
        "date": raw["as_of"],
        "hours": "1.5",
        "billable": True,
        "status": "approved",
    }
    entry.update(changes)
    return entry


def _new_expense(raw: Raw, eid: str, **changes: Any) -> Raw:
    expense = {
        "id": eid,
        "person": "bob",
        "project": raw["projects"][-1]["id"],
        "date": raw["as_of"],
        "amount": "12.00",
        "currency": "EUR",
    }
    expense.update(changes)
    return expense


BAD_DATES = ("2026-02-30", "2026-13-01", "31/03/2026", "2026-3-1x", "", "tomorrow", 20260301)


def _negative_hours(draw: st.DrawFn, raw: Raw) -> str:
    hours = draw(st.sampled_from(["-0.25", "-1", "-7.5", "-0.001"]))
    if raw["time_entries"] and draw(st.booleans()):
        entry = draw(st.sampled_from(raw["time_entries"]))
        entry["hours"] = hours
        return str(entry["id"])
    _insert(draw, raw, "time_entries", _new_time(raw, "t-neg", hours=hours))
    return "t-neg"


def _negative_expense(draw: st.DrawFn, raw: Raw) -> str:
    _insert(draw, raw, "expenses", _new_expense(raw, "e-neg", amount="-12.00"))
    return "e-neg"


def _unknown_person(draw: st.DrawFn, raw: Raw) -> str:
    if draw(st.booleans()):
        _insert(draw, raw, "time_entries", _new_time(raw, "t-who", person="mallory"))
        return "t-who"
    _insert(draw, raw, "expenses", _new_expense(raw, "e-who", person="mallory"))
    return "e-who"


def _unknown_project(draw: st.DrawFn, raw: Raw) -> str:
    if draw(st.booleans()):
        _insert(draw, raw, "time_entries", _new_time(raw, "t-where", project="p-nowhere"))
        return "t-where"
    _insert(draw, raw, "expenses", _new_expense(raw, "e-where", project="p-nowhere"))
    return "e-where"


def _unknown_rate_card(draw: st.DrawFn, raw: Raw) -> str:
    contract = draw(st.sampled_from(raw["contracts"]))
    line = {"id": "tm-bad", "model": "time_and_materials", "rate_card": "no-such-card"}
    _insert(draw, contract, "lines", line)
    return "tm-bad"


def _unknown_contract_line(draw: st.DrawFn, raw: Raw) -> str:
    choice = draw(st.sampled_from(["project", "usage"]))
    if choice == "project":
        _insert(draw, raw, "projects", {"id": "p-orphan", "contract_line": "no-such-line"})
        return "p-orphan"
    record = {
        "id": "u-orphan",
        "contract_line": "no-such-line",
        "date": raw["as_of"],
        "quantity": "1",
    }
    _insert(draw, raw, "usage", record)
    return "u-orphan"


def _bad_date(draw: st.DrawFn, raw: Raw) -> str:
    bad = draw(st.sampled_from(BAD_DATES))
    if draw(st.booleans()):
        _insert(draw, raw, "time_entries", _new_time(raw, "t-when", date=bad))
        return "t-when"
    _insert(draw, raw, "expenses", _new_expense(raw, "e-when", date=bad))
    return "e-when"


def _unknown_model(draw: st.DrawFn, raw: Raw) -> str:
    contract = draw(st.sampled_from(raw["contracts"]))
    model = draw(st.sampled_from(["hourly", "retainer", "Time_And_Materials", ""]))
    _insert(draw, contract, "lines", {"id": "odd-line", "model": model, "amount": "1.00"})
    return "odd-line"


def _unknown_account(draw: st.DrawFn, raw: Raw) -> str:
    contract = copy.deepcopy(raw["contracts"][0])
    contract["id"] = "c-nobody"
    contract["account"] = "nobody"
    for line in contract["lines"]:
        line["id"] += "-copy"
        for ms in line.get("milestones", ()):
            ms["id"] += "-copy"
    _insert(draw, raw, "contracts", contract)
    return "c-nobody"


def _missing_fx_for_receipt(draw: st.DrawFn, raw: Raw) -> str:
    # nothing quotes CHF: converting this receipt to any contract currency must fail
    expense = _new_expense(raw, "e-chf", currency="CHF", amount="40.00")
    _insert(draw, raw, "expenses", expense)
    return "e-chf"


def _missing_fx_for_rate_card(draw: st.DrawFn, raw: Raw) -> str:
    raw["rate_cards"].append(
        {"id": "card-chf", "currency": "CHF", "entries": [{"default": True, "rate": "150.00"}]}
    )
    contract = draw(st.sampled_from(raw["contracts"]))
    contract["lines"].append(
        {"id": "tm-chf", "model": "time_and_materials", "rate_card": "card-chf"}
    )
    raw["projects"].append({"id": "p-chf", "contract_line": "tm-chf"})
    _insert(draw, raw, "time_entries", _new_time(raw, "t-chf", project="p-chf"))
    return "t-chf"


def _hours_not_a_number(draw: st.DrawFn, raw: Raw) -> str:
    hours = draw(st.sampled_from(["7,5", "seven", "NaN", "inf", "", True]))
    _insert(draw, raw, "time_entries", _new_time(raw, "t-nan", hours=hours))
    return "t-nan"


def _misspelt_key(draw: st.DrawFn, raw: Raw) -> str:
    entry = _new_time(raw, "t-typo")
    entry[draw(st.sampled_from(["hour", "billabel", "staus"]))] = entry.pop("hours")
    _insert(draw, raw, "time_entries", entry)
    return "t-typo"


def _unknown_milestone(draw: st.DrawFn, raw: Raw) -> str:
    _insert(draw, raw, "milestones", {"id": "m-ghost", "status": "accepted"})
    return "m-ghost"


def _bad_milestone_definition(draw: st.DrawFn, raw: Raw) -> str:
    contract = draw(st.sampled_from(raw["contracts"]))
    bad = draw(st.sampled_from([{"percent": "150"}, {"percent": "-5"}, {"amount": "-1.00"}, {}]))
    line: Raw = {"id": "fm-bad", "model": "fixed_milestone", "amount": "100.00"}
    line["milestones"] = [{"id": "ms-ok", "percent": "10"}, {"id": "ms-bad", **bad}]
    _insert(draw, contract, "lines", line)
    return "ms-bad"


MALFORMATIONS = {
    "hours not a number": _hours_not_a_number,
    "misspelt key": _misspelt_key,
    "unknown milestone": _unknown_milestone,
    "bad milestone definition": _bad_milestone_definition,
    "negative hours": _negative_hours,
    "negative expense amount": _negative_expense,
    "unknown person": _unknown_person,
    "unknown project": _unknown_project,
    "unknown rate card": _unknown_rate_card,
    "unknown contract line": _unknown_contract_line,
    "bad date": _bad_date,
    "unknown model": _unknown_model,
    "unknown account": _unknown_account,
    "missing FX rate for a receipt": _missing_fx_for_receipt,
    "missing FX rate for a rate card": _missing_fx_for_rate_card,
}


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, Raw, str]:
    """(what is wrong, the scenario, the id of the offending record)."""
    raw = draw(scenarios())
    what = draw(st.sampled_from(sorted(MALFORMATIONS)))
    record_id = MALFORMATIONS[what](draw, raw)
    return what, raw, record_id


@PROPERTY
@given(malformed())
def test_malformed_scenario_raises_invalid_input_naming_the_record_and_never_yields_a_run(
    case: tuple[str, Raw, str],
) -> None:
    what, raw, record_id = case
    with pytest.raises(InvalidInput) as caught:
        run(raw)
    assert isinstance(caught.value, ScenarioError | BillingInputError)
    assert f"[{record_id}]" in str(caught.value), (what, str(caught.value))
