"""Credit memos against an issued invoice (DOMAIN.md rule 10).

A credit names the invoice lines it reverses (by source), how much of each
(hours or an amount; all of it by default) and a disposition: ``rebill`` puts
the source back to unbilled so the next run bills it again, ``write_off`` ends
it. Tax is credited at the rate the line was taxed at. The result says what
the invoice still owes; nothing here changes the invoice itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from accord.billing.engine import fmt
from accord.billing.model import Invoice, InvoiceLine, LineKind
from accord.domain.money import Money
from accord.errors import InvalidInput

__all__ = ["CreditLine", "CreditMemo", "CreditRequest", "Disposition", "credit_invoice"]


class Disposition(StrEnum):
    REBILL = "rebill"
    """The source becomes billable again (its invoice-line link is cleared)."""
    WRITE_OFF = "write_off"
    """The value is given up for good; the source stays closed."""


@dataclass(frozen=True, slots=True)
class CreditRequest:
    source: str
    disposition: Disposition
    reason: str
    hours: Decimal | None = None
    """Credit this many hours of a time line at its unit price."""
    amount: Decimal | None = None
    """Credit this net amount; with neither hours nor amount, the whole line."""


@dataclass(frozen=True, slots=True)
class CreditLine:
    source: str
    contract_line: str
    quantity: Decimal
    amount: Money
    tax: Money
    disposition: Disposition
    trace: str


@dataclass(frozen=True, slots=True)
class CreditMemo:
    contract: str
    currency: str
    reason: str
    lines: tuple[CreditLine, ...]
    net: Money
    tax: Money
    gross: Money
    amount_due_before: Money
    amount_due_after: Money
    rebill: tuple[str, ...] = field(default=())
    written_off: tuple[str, ...] = field(default=())


def _find(invoice: Invoice, source: str) -> InvoiceLine:
    for line in invoice.lines:
        if source in line.sources:
            return line
    raise InvalidInput(
        f"no line of the invoice bills {source!r}", record=f"credit[{source}]", field="source"
    )


def credit_invoice(
    invoice: Invoice,
    requests: Sequence[CreditRequest],
    *,
    amount_due: Money | None = None,
    credited_before: Mapping[str, Money] | None = None,
    reason: str = "",
) -> CreditMemo:
    """Build the credit memo for ``requests`` against ``invoice``.

    ``amount_due`` is what the invoice still owes (its gross when omitted);
    ``credited_before`` maps a source to the net already credited on it, so a
    line can never be credited beyond what it billed.
    """
    if not requests:
        raise InvalidInput("a credit memo needs at least one line", record="credit")
    currency = invoice.currency
    due = amount_due if amount_due is not None else invoice.gross
    before = credited_before or {}
    lines = []
    for request in requests:
        line = _find(invoice, request.source)
        record = f"credit[{request.source}]"
        if request.hours is not None:
            if line.kind is not LineKind.TIME:
                raise InvalidInput(
                    "hours can be credited on time lines only", record=record, field="hours"
                )
            quantity = request.hours
            amount = Money.from_decimal(request.hours * line.unit_price, currency)
            how = f"{fmt(request.hours)} h × {fmt(line.unit_price)}"
        elif request.amount is not None:
            quantity = line.quantity
            amount = Money.from_decimal(request.amount, currency)
            how = "amount"
        else:
            quantity = line.quantity
            amount = line.amount
            how = "whole line"
        if amount.minor <= 0:
            raise InvalidInput("credit must be positive", record=record, field="amount")
        open_amount = line.amount - before.get(request.source, Money.zero(currency))
        if amount > open_amount:
            raise InvalidInput(
                f"credit {amount} exceeds the {open_amount} left to credit on this line",
                record=record,
                field="amount",
            )
        tax = amount.times(line.tax_rate)
        lines.append(
            CreditLine(
                request.source,
                line.contract_line,
                quantity,
                amount,
                tax,
                request.disposition,
                f"{how} = {amount.format()} + tax {fmt(line.tax_rate * 100)} % {tax.format()} "
                f"{currency}; {request.disposition.value}: {request.reason}",
            )
        )
    net = Money.sum((line.amount for line in lines), currency)
    tax_total = Money.sum((line.tax for line in lines), currency)
    gross = net + tax_total
    after = due - gross
    refund_note = ""
    if after.minor < 0:
        refund_note = f" ({-after} to refund or leave as customer credit)"
        after = Money.zero(currency)
    return CreditMemo(
        contract=invoice.contract,
        currency=currency,
        reason=reason or "; ".join(dict.fromkeys(r.reason for r in requests)) + refund_note,
        lines=tuple(lines),
        net=net,
        tax=tax_total,
        gross=gross,
        amount_due_before=due,
        amount_due_after=after,
        rebill=tuple(ln.source for ln in lines if ln.disposition is Disposition.REBILL),
        written_off=tuple(ln.source for ln in lines if ln.disposition is Disposition.WRITE_OFF),
    )
