"""Payments, credit memos and write-offs: from the billing system to the ERP, CRM and PSA.

* **Payment.** A paid invoice in Stripe (its ``invoice.paid`` event, read
  through the connector) becomes a canonical payment, a ``customerPayment``
  applied to the receivable in the ERP, the account's status in the CRM and
  the project's billing status in the hub. For an invoice in a currency other
  than the issuing entity's, the realised exchange difference is computed:
  the gross at the payment-date rate minus the gross as booked at the invoice
  rate, in the entity's currency (positive: a gain).
* **Credit memo.** A credit on part of an invoice goes to Stripe as a credit
  note and to the ERP as a credit memo applied to the invoice. A ``rebill``
  credit re-opens its sources, so the next billing run bills them again.
* **Write-off.** What a customer will not pay goes to the ERP as a credit memo
  with the reason ``write-off``; Stripe is left alone.

Each is a DBOS workflow with an id from the business key (``payment-<Stripe
invoice>``, ``credit-<invoice>-<reason>``, ``write-off-<invoice>``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dbos import DBOS, SetWorkflowID

from accord.connectors.base import Cursor
from accord.connectors.stripe import mapping as stripe_mapping
from accord.domain.ids import deterministic_id
from accord.domain.money import Money
from accord.errors import InvalidInput
from accord.q2c import context as c
from accord.q2c.billing import source_kind

__all__ = [
    "apply_payment",
    "credit_invoice",
    "issue_credit_memo",
    "paid_invoices",
    "realised_fx",
    "sync_payments",
    "write_off",
]


def realised_fx(gross: Money, booked: Money, rate: Decimal) -> tuple[Money, Money]:
    """(the payment in the entity's currency at ``rate``, the realised gain or loss)."""
    settled = gross.convert(rate, booked.currency)
    return settled, settled - booked


def paid_invoices(ctx: c.Q2C) -> list[dict[str, Any]]:
    """Stripe's ``invoice.paid`` events, newest state per invoice."""
    records, _ = ctx.payments.read_changes("invoice", Cursor())
    paid: dict[str, dict[str, Any]] = {}
    for record in records:
        event = record.data
        if event.get("type") != "invoice.paid":
            continue
        obj = event["data"]["object"]
        paid[str(obj["id"])] = stripe_mapping.invoice_fields(obj)
    return [paid[k] for k in sorted(paid)]


def sync_payments(ctx: c.Q2C) -> list[dict[str, Any]]:
    """Poll the billing system and run every paid invoice's payment workflow."""
    results = []
    for fields in paid_invoices(ctx):
        with SetWorkflowID(f"payment-{fields['external_id']}"):
            results.append(apply_payment(fields))
    return results


@c.step(0.5)
def record_payment(fields: dict[str, Any]) -> dict[str, Any]:
    ctx = c.current()
    iid = c.canonical_id(ctx, c.PAYMENTS, "invoice", str(fields["external_id"]))
    if iid is None:
        raise InvalidInput("paid invoice unknown to the hub", record=str(fields["external_id"]))
    inv = c.get(ctx, "invoice", iid) or {}
    contract = c.get(ctx, "contract", str(inv["contract"])) or {}
    trace = c.trace_of(str(contract["opportunity"])) if contract.get("opportunity") else None
    currency = str(inv["currency"])
    amount = int(fields["amount_paid"])
    payment_id = deterministic_id("payment", str(fields["external_id"]))
    paid_on = ctx.facts.payment_date
    entity = ctx.world.entities[str(inv["entity"])]
    fx: dict[str, Any] | None = None
    memo = f"Stripe {fields['external_id']}"
    if currency != entity.currency and inv.get("functional"):
        booked = Money(int(inv["functional"]["minor"]), str(inv["functional"]["currency"]))
        rate = ctx.facts.settlement_rates[(currency, entity.currency)]
        settled, difference = realised_fx(Money(amount, currency), booked, rate)
        fx = {
            "booked": booked.minor,
            "settled": settled.minor,
            "difference": difference.minor,
            "currency": booked.currency,
            "rate": str(rate),
            "kind": "gain" if difference.minor >= 0 else "loss",
        }
        memo += f"; realised FX {fx['kind']} {abs(difference).format()} {booked.currency}"
    account_id = str(inv["account"])
    erp_customer = c.external_id(ctx, "account", account_id, c.ERP)
    erp_invoice = c.external_id(ctx, "invoice", iid, c.ERP)
    posted = c.perform(
        ctx,
        c.ERP,
        "apply_payment",
        (payment_id,),
        {
            "object": "customerPayment",
            "operation": "upsert",
            "external_id": payment_id,
            "priority": 1,
            "canonical": {
                "id": payment_id,
                "currency": currency,
                "amount": amount,
                "received_on": paid_on.isoformat(),
                "reference": memo,
            },
            "refs": {"customer": erp_customer, "applications": {erp_invoice: amount}},
        },
        trace_id=trace,
    )
    c.link(ctx, "payment", payment_id, c.PAYMENTS, "invoice_payment", str(fields["external_id"]))
    c.link(ctx, "payment", payment_id, c.ERP, "customerPayment", str(posted.external_id))
    c.put(
        ctx,
        "payment",
        payment_id,
        {
            "invoice": iid,
            "account": account_id,
            "currency": currency,
            "amount": amount,
            "received_on": paid_on.isoformat(),
            "stripe_invoice": fields["external_id"],
            "erp_id": str(posted.external_id),
            "fx": fx,
        },
        system=c.PAYMENTS,
        trace_id=trace,
        action="payment.applied",
    )
    status = "paid" if amount >= int(inv["gross"]) - int(inv.get("credited", 0)) else "partly_paid"
    c.put(
        ctx,
        "invoice",
        iid,
        {**inv, "status": status, "paid": amount, "paid_on": paid_on.isoformat()},
        system=c.PAYMENTS,
        trace_id=trace,
        action="invoice.paid",
    )
    return {
        "payment": payment_id,
        "invoice": iid,
        "account": account_id,
        "status": status,
        "trace": trace,
        "fx": fx,
    }


@c.step(0.5)
def report_status(paid: dict[str, Any]) -> None:
    """The account's status in the CRM, the projects' billing status in the hub."""
    ctx = c.current()
    account = str(paid["account"])
    salesforce = c.external_id(ctx, "account", account, c.CRM)
    if salesforce is not None:
        c.perform(
            ctx,
            c.CRM,
            "payment_status",
            (account, str(paid["invoice"]), str(paid["status"])),
            {
                "object": "Account",
                "operation": "update",
                "external_id": salesforce,
                "data": {"ERP_Status__c": f"invoice {paid['status']}"},
            },
            trace_id=paid["trace"],
        )
    inv = c.get(ctx, "invoice", str(paid["invoice"])) or {}
    for project in ctx.world.projects.values():
        record = c.get(ctx, "project", project.id)
        if record and record.get("contract") == inv.get("contract"):
            c.put(
                ctx,
                "project",
                project.id,
                {**record, "billing_status": str(paid["status"])},
                system="accord",
                trace_id=paid["trace"],
                action="project.billing_status",
            )


@DBOS.workflow()
def apply_payment(fields: dict[str, Any]) -> dict[str, Any]:
    paid = record_payment(fields)
    report_status(paid)
    return paid


def _credit_lines(inv: dict[str, Any], kind: str) -> tuple[list[dict[str, Any]], int, int]:
    lines = [line for line in inv["lines"] if line["kind"] == kind]
    if not lines:
        raise InvalidInput(f"the invoice has no {kind} line", record=str(inv["number"]))
    net = sum(int(line["amount"]) for line in lines)
    tax = sum(int(line["tax"]) for line in lines)
    return lines, net, tax


@c.step(0.5)
def credit_step(iid: str, kind: str, reason: str) -> dict[str, Any]:
    ctx = c.current()
    inv = c.get(ctx, "invoice", iid)
    if inv is None:
        raise InvalidInput("no such invoice", record=iid)
    contract = c.get(ctx, "contract", str(inv["contract"])) or {}
    trace = c.trace_of(str(contract["opportunity"])) if contract.get("opportunity") else None
    lines, net, tax = _credit_lines(inv, kind)
    memo_id = deterministic_id("credit_memo", iid, kind, reason)
    currency = str(inv["currency"])
    stripe_invoice = c.external_id(ctx, "invoice", iid, c.PAYMENTS)
    paid = inv.get("status") in ("paid", "partly_paid")
    stripe_reason = reason if reason in stripe_mapping.CREDIT_NOTE_REASONS else None
    note = c.perform(
        ctx,
        c.PAYMENTS,
        "credit_note",
        (memo_id,),
        {
            "object": "credit_note",
            "operation": "create",
            "priority": 2,
            "data": {
                "id": memo_id,
                "invoice": stripe_invoice,
                "amount": net + tax,
                "currency": currency,
                "reason": stripe_reason or reason,
                **({"settle": "credit_balance"} if paid else {}),
            },
        },
        trace_id=trace,
    )
    erp_lines = [
        {"description": f"credit {line['contract_line']} {line['kind']}", "amount": line["amount"]}
        for line in lines
    ]
    if tax:
        erp_lines.append({"description": "VAT", "amount": tax, "item_id": ctx.erp.tax_item_id})
    erp = c.perform(
        ctx,
        c.ERP,
        "credit_memo",
        (memo_id,),
        {
            "object": "creditMemo",
            "operation": "upsert",
            "external_id": memo_id,
            "canonical": {
                "id": memo_id,
                "currency": currency,
                "reason": reason,
                "issue_date": ctx.facts.payment_date.isoformat(),
                "lines": erp_lines,
            },
            "refs": {
                "customer": c.external_id(ctx, "account", str(inv["account"]), c.ERP),
                "item": ctx.erp.item_id,
                "invoice": c.external_id(ctx, "invoice", iid, c.ERP),
            },
        },
        trace_id=trace,
    )
    c.link(ctx, "credit_memo", memo_id, c.PAYMENTS, "credit_note", str(note.external_id))
    c.link(ctx, "credit_memo", memo_id, c.ERP, "creditMemo", str(erp.external_id))
    sources = [s for line in lines for s in line["sources"]]
    c.put(
        ctx,
        "credit_memo",
        memo_id,
        {
            "invoice": iid,
            "reason": reason,
            "currency": currency,
            "net": net,
            "tax": tax,
            "gross": net + tax,
            "sources": sources,
            "stripe_id": str(note.external_id),
            "erp_id": str(erp.external_id),
        },
        system="accord",
        trace_id=trace,
        action="credit_memo.issued",
    )
    credited = int(inv.get("credited", 0)) + net + tax
    c.put(ctx, "invoice", iid, {**inv, "credited": credited}, system="accord", trace_id=trace)
    if reason == "rebill":
        for source in sources:
            entity = source_kind(source)
            if entity in ("time_entry", "expense"):
                doc = c.get(ctx, entity, source) or {}
                c.put(
                    ctx,
                    entity,
                    source,
                    {**doc, "billing": "unbilled", "invoice": None},
                    system="accord",
                    trace_id=trace,
                    action=f"{entity}.reopened",
                )
    return {"credit_memo": memo_id, "invoice": iid, "gross": net + tax, "currency": currency}


@DBOS.workflow()
def credit_invoice(iid: str, kind: str, reason: str) -> dict[str, Any]:
    return credit_step(iid, kind, reason)


def issue_credit_memo(iid: str, kind: str, reason: str) -> dict[str, Any]:
    """Credit an invoice's lines of one ``kind`` (with their VAT), once."""
    with SetWorkflowID(f"credit-{iid}-{kind}-{reason}"):
        result: dict[str, Any] = credit_invoice(iid, kind, reason)
    return result


@c.step(0.5)
def write_off_step(iid: str, amount: int, reason: str) -> dict[str, Any]:
    ctx = c.current()
    inv = c.get(ctx, "invoice", iid)
    if inv is None:
        raise InvalidInput("no such invoice", record=iid)
    open_amount = int(inv["gross"]) - int(inv.get("credited", 0)) - int(inv.get("paid", 0))
    if not 0 < amount <= open_amount:
        raise InvalidInput(
            f"write-off {amount} outside 1..{open_amount}", record=iid, field="amount"
        )
    contract = c.get(ctx, "contract", str(inv["contract"])) or {}
    trace = c.trace_of(str(contract["opportunity"])) if contract.get("opportunity") else None
    memo_id = deterministic_id("write_off", iid, str(amount))
    erp = c.perform(
        ctx,
        c.ERP,
        "write_off",
        (memo_id,),
        {
            "object": "creditMemo",
            "operation": "upsert",
            "external_id": memo_id,
            "canonical": {
                "id": memo_id,
                "currency": inv["currency"],
                "reason": f"write-off: {reason}",
                "issue_date": ctx.facts.payment_date.isoformat(),
                "lines": [{"description": "write-off", "amount": amount}],
            },
            "refs": {
                "customer": c.external_id(ctx, "account", str(inv["account"]), c.ERP),
                "item": ctx.erp.item_id,
                "invoice": c.external_id(ctx, "invoice", iid, c.ERP),
            },
        },
        trace_id=trace,
    )
    c.put(
        ctx,
        "write_off",
        memo_id,
        {"invoice": iid, "amount": amount, "reason": reason, "erp_id": str(erp.external_id)},
        system="accord",
        trace_id=trace,
        action="invoice.written_off",
    )
    return {"write_off": memo_id, "amount": amount}


@DBOS.workflow()
def write_off_workflow(iid: str, amount: int, reason: str) -> dict[str, Any]:
    return write_off_step(iid, amount, reason)


def write_off(iid: str, amount: int, reason: str) -> dict[str, Any]:
    """Write off ``amount`` minor units of an invoice in the ERP, once."""
    with SetWorkflowID(f"write-off-{iid}-{amount}"):
        result: dict[str, Any] = write_off_workflow(iid, amount, reason)
    return result
