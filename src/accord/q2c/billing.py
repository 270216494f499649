"""Approved work → billable items → invoice → billing system → ERP receivable → billed.

The billing run reads what the PSA holds — time entries and expenses from
Harvest, through the connector — and maps each back to the canonical project
and person; milestone acceptance comes from the hub's ``milestone`` records; the
rates come from the current version of each canonical contract (so an amendment
counts). The billing engine (:func:`accord.billing.engine.run_billing`, pure and
tested to the cent) turns that into invoices. Each invoice is then issued as
its own checkpointed step:

1. the canonical invoice (lines with their sources, net, tax, gross, and the
   gross in the issuing entity's currency);
2. in Stripe: the customer (once), one invoice item per line plus the VAT,
   and the invoice, finalised;
3. in the ERP: the receivable with its lines and tax, under the customer and
   the contracting entity's subsidiary, numbered as Stripe numbered it (the
   billing system owns the number; the hub's own number leads the memo);
4. the sources marked billed (canonical time entries, expenses and milestones
   carry the invoice), so the next run skips them.

The run is a DBOS workflow with id ``billing-<period end>``: one run per period.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from decimal import Decimal
from typing import Any

from dbos import DBOS, SetWorkflowID

from accord.billing.engine import run_billing
from accord.billing.model import BillingWorld, Expense, Invoice, MilestoneEvent, TimeEntry
from accord.connectors.base import Cursor
from accord.connectors.harvest import mapping as harvest_mapping
from accord.domain.ids import deterministic_id
from accord.errors import InvalidInput
from accord.q2c import context as c
from accord.q2c.amendment import rate_card_from_doc

__all__ = [
    "EXPENSE_PREFIX",
    "TIME_PREFIX",
    "billing_run",
    "collect_world",
    "invoice_id",
    "run_period",
    "source_kind",
]

_CURRENCY_TAG = re.compile(r"\[currency:([A-Z]{3})\]")
TIME_PREFIX = "t-"
"""Canonical id of a PSA time entry: ``t-<Harvest id>``."""
EXPENSE_PREFIX = "x-"
"""Canonical id of a PSA expense: ``x-<Harvest id>``. The engine orders a day's items by
id, so with these prefixes time comes before expenses on the same day — as with the
scenario file's ``t-``/``x-`` ids — and a cap is spent in the same order."""


def source_kind(source: str) -> str:
    """What an invoice line's source is: time entry, expense, milestone or a fee's period."""
    if source.startswith(TIME_PREFIX):
        return "time_entry"
    if source.startswith(EXPENSE_PREFIX):
        return "expense"
    if ":" in source:
        return "period"  # a recurring fee's period (``line:start..end``), not a record
    return "milestone"


def invoice_id(contract: str, period_end: date) -> str:
    return deterministic_id("invoice", contract, period_end.isoformat())


def _trace_of_contract(ctx: c.Q2C, contract: str) -> str | None:
    doc = c.get(ctx, "contract", contract)
    return c.trace_of(str(doc["opportunity"])) if doc and doc.get("opportunity") else None


def collect_world(ctx: c.Q2C) -> BillingWorld:
    """The billing inputs as the systems hold them now: work from the PSA, rates from the
    current contract versions, milestones from the hub. Each source is stored as a
    canonical record carrying its deal's trace id."""
    world = ctx.world
    users, _ = ctx.psa.read_changes("users", Cursor())
    person_of = {r.id: ctx.facts.person_of(r.data.get("email")) for r in users}
    project_of: dict[str, str] = {}
    trace_of_project: dict[str, str | None] = {}
    for known in world.projects.values():
        psa_id = c.external_id(ctx, "project", known.id, c.PSA)
        if psa_id is not None:
            project_of[psa_id] = known.id
            record = c.get(ctx, "project", known.id) or {}
            trace_of_project[known.id] = _trace_of_contract(ctx, str(record.get("contract")))
    time_entries: list[TimeEntry] = []
    rows, _ = ctx.psa.read_changes("time_entries", Cursor())
    for r in sorted(rows, key=lambda r: int(r.id)):
        row = r.data
        project = project_of.get(str((row.get("project") or {}).get("id")))
        person = person_of.get(str((row.get("user") or {}).get("id")))
        if project is None or person is None:
            continue
        canonical = harvest_mapping.time_entry_to_canonical(row)
        entry_id = f"{TIME_PREFIX}{r.id}"
        stored = c.get(ctx, "time_entry", entry_id) or {}
        billed = canonical["billing"] == "billed" or stored.get("billing") == "billed"
        doc = {
            **canonical,
            "project": project,
            "person": person,
            "harvest_id": r.id,
            "billing": "billed" if billed else canonical["billing"],
            "invoice": stored.get("invoice"),
        }
        c.put(ctx, "time_entry", entry_id, doc, system=c.PSA, trace_id=trace_of_project[project])
        c.link(ctx, "time_entry", entry_id, c.PSA, "time_entries", r.id)
        time_entries.append(
            TimeEntry(
                id=entry_id,
                person=person,
                project=project,
                date=date.fromisoformat(str(row["spent_date"])),
                hours=Decimal(canonical["hours"]),
                billable=bool(canonical["billable"]),
                status="approved" if canonical["approval"] == "approved" else "submitted",
                billed=billed,
            )
        )
    expenses: list[Expense] = []
    rows, _ = ctx.psa.read_changes("expenses", Cursor())
    for r in sorted(rows, key=lambda r: int(r.id)):
        row = r.data
        project = project_of.get(str((row.get("project") or {}).get("id")))
        person = person_of.get(str((row.get("user") or {}).get("id")))
        if project is None or person is None:
            continue
        tag = _CURRENCY_TAG.search(str(row.get("notes") or ""))
        currency = tag.group(1) if tag else str((row.get("client") or {}).get("currency"))
        amount = Decimal(str(row["total_cost"])).quantize(Decimal("0.01"))
        entry_id = f"{EXPENSE_PREFIX}{r.id}"
        stored = c.get(ctx, "expense", entry_id) or {}
        billed = bool(row.get("is_billed")) or stored.get("billing") == "billed"
        category = (row.get("expense_category") or {}).get("name")
        doc = {
            "project": project,
            "person": person,
            "harvest_id": r.id,
            "work_date": row.get("spent_date"),
            "amount": {"minor": int(amount.scaleb(2)), "currency": currency},
            "billable": bool(row.get("billable")),
            "approval": "approved" if row.get("is_closed") else "draft",
            "billing": "billed" if billed else "unbilled",
            "category": category,
            "notes": row.get("notes"),
            "invoice": stored.get("invoice"),
        }
        c.put(ctx, "expense", entry_id, doc, system=c.PSA, trace_id=trace_of_project[project])
        c.link(ctx, "expense", entry_id, c.PSA, "expenses", r.id)
        expenses.append(
            Expense(
                id=entry_id,
                person=person,
                project=project,
                date=date.fromisoformat(str(row["spent_date"])),
                amount=amount,
                currency=currency,
                billable=bool(row.get("billable")),
                status="approved" if row.get("is_closed") else "submitted",
                billed=billed,
                category=str(category).lower() if category else None,
            )
        )
    milestones: list[MilestoneEvent] = []
    for event in world.milestones:
        accepted = c.get(ctx, "milestone", event.id)
        if accepted is None:
            milestones.append(event)
            continue
        when = accepted.get("date")
        milestones.append(
            MilestoneEvent(
                event.id, str(accepted["status"]), date.fromisoformat(when) if when else None
            )
        )
    cards = dict(world.rate_cards)
    for contract in world.contracts:
        version = c.get(ctx, "contract", contract.id) or {}
        for card_id, card in version.get("rate_cards", {}).items():
            cards[card_id] = rate_card_from_doc(card)
    contracts = tuple(k for k in world.contracts if c.get(ctx, "contract", k.id) is not None)
    return dataclasses.replace(
        world,
        contracts=contracts,
        rate_cards=cards,
        time_entries=tuple(time_entries),
        expenses=tuple(expenses),
        milestones=tuple(milestones),
    )


def _invoice_doc(inv: Invoice, period_end: date) -> dict[str, Any]:
    number = f"{inv.contract.upper()}-{period_end:%Y%m}"
    lines = []
    for index, line in enumerate(inv.lines, 1):
        lines.append(
            {
                "number": index,
                "contract_line": line.contract_line,
                "kind": line.kind.value,
                "quantity": str(line.quantity),
                "unit_price": str(line.unit_price),
                "amount": line.amount.minor,
                "tax": line.tax.minor,
                "tax_rate": str(line.tax_rate),
                "sources": list(line.sources),
                "trace": line.trace,
            }
        )
    return {
        "number": number,
        "contract": inv.contract,
        "entity": inv.entity,
        "billing_key": inv.account,
        "currency": inv.currency,
        "issue_date": inv.issue_date.isoformat(),
        "due_date": inv.due_date.isoformat() if inv.due_date else None,
        "net": inv.net.minor,
        "tax": inv.tax.minor,
        "gross": inv.gross.minor,
        "functional": (
            {"minor": inv.functional.minor, "currency": inv.functional.currency}
            if inv.functional
            else None
        ),
        "reverse_charge": inv.reverse_charge,
        "legend": inv.legend,
        "tax_trace": inv.tax_trace,
        "po_number": inv.po_number,
        "lines": lines,
        "status": "draft",
        "credited": 0,
        "paid": 0,
    }


@c.step(0.2)
def compute_invoices(period_end: str) -> list[str]:
    """Read the work, run the engine, store each draft invoice; the invoice ids."""
    ctx = c.current()
    world = collect_world(ctx)
    run = run_billing(world)
    ids: list[str] = []
    end = date.fromisoformat(period_end)
    for inv in run.invoices:
        iid = invoice_id(inv.contract, end)
        if c.get(ctx, "invoice", iid) is None:
            contract = c.get(ctx, "contract", inv.contract) or {}
            doc = {**_invoice_doc(inv, end), "account": contract.get("account")}
            c.put(
                ctx,
                "invoice",
                iid,
                doc,
                system="accord",
                trace_id=_trace_of_contract(ctx, inv.contract),
                action="invoice.drafted",
            )
        ids.append(iid)
    return ids


@c.step(0.5)
def issue_invoice(iid: str) -> dict[str, Any]:
    """Issue one drafted invoice in Stripe, post it to the ERP, mark its sources billed."""
    ctx = c.current()
    inv = c.get(ctx, "invoice", iid)
    if inv is None:
        raise RuntimeError(f"invoice {iid} was not drafted")
    trace = _trace_of_contract(ctx, str(inv["contract"]))
    account_id = str(inv["account"])
    account = c.get(ctx, "account", account_id) or {}
    currency = str(inv["currency"])
    customer = c.perform(
        ctx,
        c.PAYMENTS,
        "create_customer",
        (account_id,),
        {
            "object": "customer",
            "operation": "create",
            "priority": 2,
            "data": {"id": account_id, "legal_name": account.get("legal_name")},
        },
        trace_id=trace,
    )
    stripe_customer = str(customer.external_id)
    c.link(ctx, "account", account_id, c.PAYMENTS, "customer", stripe_customer)
    items = [
        (f"{iid}:{line['number']}", int(line["amount"]), f"{line['number']}. {line['trace']}")
        for line in inv["lines"]
    ]
    if int(inv["tax"]):
        items.append((f"{iid}:tax", int(inv["tax"]), f"VAT: {inv['tax_trace']}"))
    for item_id, amount, description in items:
        c.perform(
            ctx,
            c.PAYMENTS,
            "create_invoice_item",
            (item_id,),
            {
                "object": "invoiceitem",
                "operation": "create",
                "priority": 2,
                "data": {
                    "id": item_id,
                    "customer": stripe_customer,
                    "amount": amount,
                    "currency": currency,
                    "description": description[:500],
                },
            },
            trace_id=trace,
        )
    terms = account.get("payment_terms_days")
    if terms is None and inv.get("due_date"):
        terms = (date.fromisoformat(inv["due_date"]) - date.fromisoformat(inv["issue_date"])).days
    issued = c.perform(
        ctx,
        c.PAYMENTS,
        "create_invoice",
        (iid,),
        {
            "object": "invoice",
            "operation": "create",
            "priority": 2,
            "data": {
                "id": iid,
                "customer": stripe_customer,
                "currency": currency,
                "number": inv["number"],
                "payment_terms_days": int(terms or 30),
                "description": f"{inv['number']} ({inv['contract']})",
            },
        },
        trace_id=trace,
    )
    stripe_invoice = str(issued.external_id)
    c.link(ctx, "invoice", iid, c.PAYMENTS, "invoice", stripe_invoice)
    # the billing system owns the invoice number (ownership policy), and Stripe numbers
    # its invoices itself: the ERP gets Stripe's number, the hub's own goes in the memo
    stripe_number = issued.result.get("number")
    if not stripe_number:
        raise InvalidInput(
            "Stripe returned the finalised invoice without its number",
            record=f"invoice {iid} (stripe {stripe_invoice})",
            field="number",
        )
    memo = inv.get("legend") or inv["tax_trace"]
    erp_customer = c.external_id(ctx, "account", account_id, c.ERP)
    lines = [
        {"description": f"{line['contract_line']} {line['kind']}", "amount": int(line["amount"])}
        for line in inv["lines"]
    ]
    if int(inv["tax"]):
        lines.append(
            {"description": "VAT", "amount": int(inv["tax"]), "item_id": ctx.erp.tax_item_id}
        )
    posted = c.perform(
        ctx,
        c.ERP,
        "post_invoice",
        (iid,),
        {
            "object": "invoice",
            "operation": "upsert",
            "external_id": iid,
            "priority": 2,
            "canonical": {
                "id": iid,
                "currency": currency,
                "number": str(stripe_number),
                "issue_date": inv["issue_date"],
                "due_date": inv["due_date"],
                "memo": f"{inv['number']}: {memo}" if memo else str(inv["number"]),
                "lines": lines,
            },
            "refs": {
                "customer": erp_customer,
                "item": ctx.erp.item_id,
                "subsidiary": ctx.erp.subsidiaries[str(inv["entity"])],
            },
        },
        trace_id=trace,
    )
    c.link(ctx, "invoice", iid, c.ERP, "invoice", str(posted.external_id))
    billed = mark_billed(ctx, iid, inv, trace)
    c.put(
        ctx,
        "invoice",
        iid,
        {
            **inv,
            "status": "open",
            "stripe_id": stripe_invoice,
            "stripe_number": str(stripe_number),
            "erp_id": str(posted.external_id),
        },
        system="accord",
        trace_id=trace,
        action="invoice.issued",
    )
    return {"invoice": iid, "stripe": stripe_invoice, "erp": posted.external_id, "billed": billed}


def mark_billed(ctx: c.Q2C, iid: str, inv: dict[str, Any], trace: str | None) -> int:
    """Every source of the invoice is billed by it (time, expense or milestone)."""
    count = 0
    for line in inv["lines"]:
        for source in line["sources"]:
            kind = source_kind(source)
            if kind == "period":
                continue  # a fee for the period, not a source record
            doc = c.get(ctx, kind, source) or {"status": "accepted"}
            if kind == "milestone":
                doc = {**doc, "status": "billed", "invoice": iid}
            else:
                doc = {**doc, "billing": "billed", "invoice": iid}
            c.put(ctx, kind, source, doc, system="accord", trace_id=trace, action=f"{kind}.billed")
            count += 1
    return count


@DBOS.workflow()
def billing_run(period_end: str) -> list[dict[str, Any]]:
    ids = compute_invoices(period_end)
    return [issue_invoice(iid) for iid in ids]


def run_period(period_end: date) -> list[dict[str, Any]]:
    """Run (or return the recorded result of) the billing run of one period."""
    with SetWorkflowID(f"billing-{period_end.isoformat()}"):
        result: list[dict[str, Any]] = billing_run(period_end.isoformat())
    return result
