"""Pure functions between Accord's canonical records and Stripe's objects (API 2023-08-16).

Canonical records come in as plain mappings of their fields (what the effect
executor and the canonical-change events carry): money as integer minor units
of an upper-case ISO 4217 currency, dates as ISO text. Stripe wants lower-case
currencies and amounts in "the smallest currency unit", which is the ISO minor
unit except for a few currencies Stripe keeps at two decimals for backwards
compatibility (see :data:`STRIPE_EXTRA_DECIMALS`).

Every object made from a canonical record with an id carries it as
``metadata[accord_id]``, so that a look-up can find it again and a read can
tell whose record it is. Nothing here does I/O; the connector sends what these return.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from accord.domain.model import InvoiceStatus, PaymentStatus
from accord.errors import InvalidInput

__all__ = [
    "ACCORD_ID",
    "CREDIT_NOTE_REASONS",
    "STRIPE_EXTRA_DECIMALS",
    "account_fields",
    "credit_note_fields",
    "credit_note_params",
    "customer_params",
    "from_stripe_amount",
    "from_stripe_currency",
    "invoice_fields",
    "invoice_item_fields",
    "invoice_item_params",
    "invoice_params",
    "payment_fields",
    "payment_intent_params",
    "stamp",
    "summary",
    "to_stripe_amount",
    "to_stripe_currency",
    "unix_time",
]

ACCORD_ID = "accord_id"
"""Metadata key holding the canonical id of the record a Stripe object stands for."""

STRIPE_EXTRA_DECIMALS: Mapping[str, int] = {"ISK": 2, "UGX": 2}
"""Currencies with no ISO minor unit that Stripe still expresses with two decimals
(``ISK 5`` is ``amount=500``); everywhere else Stripe's unit is the ISO minor unit."""

CREDIT_NOTE_REASONS = frozenset(
    {"duplicate", "fraudulent", "order_change", "product_unsatisfactory"}
)
"""The only values Stripe accepts as a credit note's ``reason``; other reasons go in ``memo``."""


# -- units, currencies and stamps ----------------------------------------------------


def to_stripe_currency(currency: str) -> str:
    """``EUR`` → ``eur``: Stripe writes and returns currencies in lower case."""
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput(f"not an ISO 4217 code: {currency!r}", field="currency")
    return currency.lower()


def from_stripe_currency(currency: str) -> str:
    """``eur`` → ``EUR``: canonical records use the upper-case ISO code."""
    return currency.upper()


def _factor(currency: str) -> int:
    return int(10 ** STRIPE_EXTRA_DECIMALS.get(currency.upper(), 0))


def to_stripe_amount(minor: int, currency: str) -> int:
    """Canonical minor units → Stripe's unit for ``currency`` (ISO upper case)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidInput(f"money must be integer minor units, not {minor!r}", field="amount")
    return minor * _factor(currency)


def from_stripe_amount(amount: int, currency: str) -> int:
    """Stripe's unit → canonical minor units; refuses a fraction Accord cannot hold."""
    factor = _factor(currency)
    if amount % factor:
        raise InvalidInput(
            f"{amount} is not a whole {currency.upper()} amount in Stripe's two-decimal form",
            field="amount",
        )
    return amount // factor


def stamp(unix: int) -> str:
    """A Stripe ``created`` second as ISO 8601 UTC text, which sorts in time order."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix_time(text: str) -> int:
    """Inverse of :func:`stamp` (any ISO 8601 form with an offset or ``Z``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _date(unix: int | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).date().isoformat()


def _ref(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    return str(value["id"])


def _tag(record: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = dict(metadata or {})
    if record.get("id"):
        tags[ACCORD_ID] = str(record["id"])
    return tags


def _required(record: Mapping[str, Any], name: str, what: str) -> Any:
    value = record.get(name)
    if value is None or value == "":
        where = str(record.get("id") or what)
        raise InvalidInput(f"{what} needs {name!r}", record=where, field=name)
    return value


# -- canonical → Stripe (request parameters) ------------------------------------------


def customer_params(account: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """A canonical account → ``POST /v1/customers`` parameters.

    Only what Stripe needs to bill: the legal name (Stripe prints it on the
    invoice), contact details when known, and the canonical id in metadata.
    ``partial`` maps only the fields given, for an update.
    """
    params: dict[str, Any] = {}
    if not partial or "legal_name" in account:
        params["name"] = _required(account, "legal_name", "a customer")
    for field in ("email", "phone", "description"):
        if account.get(field):
            params[field] = str(account[field])
    params["metadata"] = _tag(account)
    return params


def invoice_item_params(line: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical invoice line → ``POST /v1/invoiceitems`` parameters.

    Stripe quantities are integers while canonical quantities are decimals
    (7.5 hours), so the line's total goes as ``amount`` and the quantity stays
    in the description. ``customer`` (and ``invoice`` for a draft) are Stripe ids
    resolved by the caller.
    """
    currency = str(_required(line, "currency", "an invoice item"))
    params: dict[str, Any] = {
        "customer": _required(line, "customer", "an invoice item"),
        "amount": to_stripe_amount(_required(line, "amount", "an invoice item"), currency),
        "currency": to_stripe_currency(currency),
    }
    if line.get("description"):
        params["description"] = str(line["description"])
    if line.get("invoice"):
        params["invoice"] = str(line["invoice"])
    params["metadata"] = _tag(line)
    return params


def invoice_params(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical invoice → ``POST /v1/invoices`` parameters.

    Accord invoices are sent, not charged (``send_invoice`` with the account's
    payment terms), and they take in the customer's pending invoice items
    explicitly: since API 2022-08-01 Stripe leaves them out unless asked. The
    canonical number travels in metadata because Stripe numbers invoices itself.
    """
    currency = str(_required(invoice, "currency", "an invoice"))
    params: dict[str, Any] = {
        "customer": _required(invoice, "customer", "an invoice"),
        "currency": to_stripe_currency(currency),
        "collection_method": "send_invoice",
        "days_until_due": int(invoice.get("payment_terms_days", 30)),
        "pending_invoice_items_behavior": "include",
        "auto_advance": False,
    }
    if invoice.get("description"):
        params["description"] = str(invoice["description"])
    extra = {"accord_number": str(invoice["number"])} if invoice.get("number") else None
    params["metadata"] = _tag(invoice, extra)
    return params


def credit_note_params(memo: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical credit memo → ``POST /v1/credit_notes`` parameters.

    On an open invoice the credit lowers what is due. On a paid one Stripe wants
    the credit settled: ``settle`` says how (``credit_balance`` to the
    customer's balance, ``out_of_band`` when refunded outside Stripe).
    """
    currency = str(_required(memo, "currency", "a credit note"))
    amount = to_stripe_amount(_required(memo, "amount", "a credit note"), currency)
    params: dict[str, Any] = {
        "invoice": _required(memo, "invoice", "a credit note"),
        "amount": amount,
    }
    reason = memo.get("reason")
    if reason in CREDIT_NOTE_REASONS:
        params["reason"] = reason
    elif reason:
        params["memo"] = str(reason)
    settle = memo.get("settle")
    if settle == "credit_balance":
        params["credit_amount"] = amount
    elif settle == "out_of_band":
        params["out_of_band_amount"] = amount
    elif settle is not None:
        raise InvalidInput(f"unknown settlement {settle!r}", record="credit_note", field="settle")
    params["metadata"] = _tag(memo)
    return params


def payment_intent_params(payment: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical payment to collect → ``POST /v1/payment_intents`` parameters.

    The payment method is not sent here: the connector confirms in a second,
    separately idempotent call, so a decline leaves an intent that can be
    confirmed again rather than a failed create.
    """
    currency = str(_required(payment, "currency", "a payment"))
    params: dict[str, Any] = {
        "amount": to_stripe_amount(_required(payment, "amount", "a payment"), currency),
        "currency": to_stripe_currency(currency),
    }
    for field in ("customer", "description"):
        if payment.get(field):
            params[field] = str(payment[field])
    params["metadata"] = _tag(payment)
    return params


# -- Stripe → canonical (fields) ------------------------------------------------------


def account_fields(customer: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe customer → the canonical account fields it informs."""
    currency = customer.get("currency")
    return {
        "external_id": customer["id"],
        "id": (customer.get("metadata") or {}).get(ACCORD_ID),
        "legal_name": customer.get("name"),
        "email": customer.get("email"),
        "default_currency": from_stripe_currency(currency) if currency else None,
    }


def _invoice_status(invoice: Mapping[str, Any]) -> str | None:
    status = invoice.get("status")
    if status == "open":
        partly = invoice.get("amount_paid", 0) > 0
        return (InvoiceStatus.PARTIALLY_PAID if partly else InvoiceStatus.ISSUED).value
    known = {
        "draft": InvoiceStatus.DRAFT,
        "paid": InvoiceStatus.PAID,
        "void": InvoiceStatus.VOID,
        "uncollectible": InvoiceStatus.UNCOLLECTIBLE,
    }
    return known[status].value if status in known else None


def invoice_fields(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe invoice → canonical invoice fields, money in integer minor units.

    ``amount_due`` is what is still owed (Stripe's ``amount_remaining``);
    ``credited`` counts credit notes before and after payment, as the canonical
    invoice does.
    """
    currency = from_stripe_currency(invoice["currency"])

    def money(name: str) -> int:
        return from_stripe_amount(int(invoice.get(name) or 0), currency)

    transitions = invoice.get("status_transitions") or {}
    return {
        "external_id": invoice["id"],
        "id": (invoice.get("metadata") or {}).get(ACCORD_ID),
        "number": invoice.get("number"),
        "customer_external_id": _ref(invoice.get("customer")),
        "currency": currency,
        "status": _invoice_status(invoice),
        "gross": money("total"),
        "amount_paid": money("amount_paid"),
        "amount_due": money("amount_remaining"),
        "credited": money("pre_payment_credit_notes_amount")
        + money("post_payment_credit_notes_amount"),
        "issue_date": _date(transitions.get("finalized_at")),
        "due_date": _date(invoice.get("due_date")),
    }


def invoice_item_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe invoice item → the canonical invoice-line fields it carries."""
    currency = from_stripe_currency(item["currency"])
    return {
        "external_id": item["id"],
        "id": (item.get("metadata") or {}).get(ACCORD_ID),
        "amount": from_stripe_amount(int(item["amount"]), currency),
        "currency": currency,
        "description": item.get("description"),
        "invoice_external_id": _ref(item.get("invoice")),
    }


def credit_note_fields(note: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe credit note → canonical credit-memo fields."""
    currency = from_stripe_currency(note["currency"])
    return {
        "external_id": note["id"],
        "id": (note.get("metadata") or {}).get(ACCORD_ID),
        "number": note.get("number"),
        "invoice_external_id": _ref(note.get("invoice")),
        "amount": from_stripe_amount(int(note["amount"]), currency),
        "currency": currency,
        "status": note.get("status"),
    }


_PAYMENT_STATUS = {
    "succeeded": PaymentStatus.SUCCEEDED,
    "canceled": PaymentStatus.FAILED,
}


def payment_fields(intent: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe payment intent → canonical payment fields.

    Every state short of ``succeeded`` or ``canceled`` is still pending from
    Accord's side: the money has not moved.
    """
    currency = from_stripe_currency(intent["currency"])
    status = _PAYMENT_STATUS.get(str(intent.get("status")), PaymentStatus.PENDING)
    return {
        "external_id": intent["id"],
        "id": (intent.get("metadata") or {}).get(ACCORD_ID),
        "amount": from_stripe_amount(int(intent["amount"]), currency),
        "amount_received": from_stripe_amount(int(intent.get("amount_received") or 0), currency),
        "currency": currency,
        "status": status.value,
        "invoice_external_id": _ref(intent.get("invoice")),
        "customer_external_id": _ref(intent.get("customer")),
    }


_FIELDS = {
    "customer": account_fields,
    "invoice": invoice_fields,
    "invoiceitem": invoice_item_fields,
    "credit_note": credit_note_fields,
    "payment_intent": payment_fields,
}


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical fields of any Stripe object this connector writes, tagged with its kind."""
    kind = str(obj.get("object"))
    convert = _FIELDS.get(kind)
    fields = convert(obj) if convert else {"external_id": obj.get("id")}
    return {"object": kind, **fields}
