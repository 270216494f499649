"""NetSuite records ⇄ Accord's canonical records, as pure functions.

The REST record service speaks JSON in which references are objects
(``{"id": "42"}``), sublists sit under ``{"items": [...]}`` (an invoice's lines
are ``item.items``) and money is a JSON number in the currency's major unit.
Accord keeps money in integer minor units, so numbers are read as
:class:`~decimal.Decimal` (:func:`loads`) and written from Decimal
(:func:`dumps`), never through a float, and a NetSuite amount that does not
fit the currency's minor unit is refused rather than rounded.

The canonical id travels as the record's ``externalId`` (``PUT
/record/v1/{type}/eid:{externalId}`` is NetSuite's upsert), so a record made by
Accord is found again by it. Currencies are records too; :data:`CURRENCY_IDS`
holds the internal ids a standard account gives them (override per account).
Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from accord.domain.model import InvoiceStatus, PaymentStatus
from accord.domain.money import UnknownCurrency, currency_digits
from accord.errors import InvalidInput

__all__ = [
    "CURRENCY_IDS",
    "RECORD_TYPES",
    "SUITEQL_TABLES",
    "account_from_customer",
    "credit_memo_from_canonical",
    "credit_memo_to_canonical",
    "customer_from_account",
    "dumps",
    "from_amount",
    "from_suiteql",
    "invoice_from_canonical",
    "invoice_to_canonical",
    "job_from_project",
    "loads",
    "payment_from_canonical",
    "payment_to_canonical",
    "project_from_job",
    "ref",
    "stamp",
    "suiteql_timestamp",
    "to_amount",
]

RECORD_TYPES = ("customer", "subsidiary", "job", "invoice", "creditMemo", "customerPayment")
"""The record types the connector reads and writes (REST record service names)."""

SUITEQL_TABLES: Mapping[str, tuple[str, str | None]] = {
    "customer": ("customer", None),
    "subsidiary": ("subsidiary", None),
    "job": ("job", None),
    "invoice": ("transaction", "CustInvc"),
    "creditMemo": ("transaction", "CustCred"),
    "customerPayment": ("transaction", "CustPymt"),
}
"""Where SuiteQL finds each record type: its table and, for transactions, the ``type``."""

CURRENCY_IDS: Mapping[str, str] = {"USD": "1", "GBP": "2", "CAD": "3", "EUR": "4", "JPY": "5"}
"""Currency internal ids of a standard account (USD base); an account may differ."""

_STATUS_TO_CANONICAL = {
    "Open": InvoiceStatus.ISSUED,
    "Paid In Full": InvoiceStatus.PAID,
    "Voided": InvoiceStatus.VOID,
    "Pending Approval": InvoiceStatus.DRAFT,
}
_DECIMAL_TOKEN = "\x00decimal:"
_DECIMAL_IN_JSON = re.compile(r'"\\u0000decimal:([-0-9.E+]+)"')


# -- JSON without floats --------------------------------------------------------------


def _mark_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInput(f"not a finite number: {value}", field="amount")
        return f"{_DECIMAL_TOKEN}{value}"
    if isinstance(value, float):
        raise InvalidInput(f"a float reached a NetSuite body: {value!r}", field="amount")
    if isinstance(value, Mapping):
        return {str(k): _mark_decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark_decimals(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """JSON with every :class:`Decimal` written as the exact number it is (floats refused)."""
    text = json.dumps(_mark_decimals(value), separators=(",", ":"))
    return _DECIMAL_IN_JSON.sub(r"\1", text).encode()


def loads(raw: bytes | str) -> Any:
    """JSON with every non-integer number read as a :class:`Decimal`."""
    return json.loads(raw, parse_float=Decimal)


# -- stamps, references, money ---------------------------------------------------------


def stamp(value: str) -> str:
    """A NetSuite date-time as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC: text order is time order."""
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not a date-time: {value!r}", field="lastModifiedDate") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suiteql_timestamp(cursor_value: str) -> str:
    """A cursor value as a SuiteQL timestamp literal (UTC, whole seconds)."""
    moment = datetime.strptime(stamp(cursor_value), "%Y-%m-%dT%H:%M:%SZ")
    return f"TO_TIMESTAMP('{moment:%Y-%m-%d %H:%M:%S}', 'YYYY-MM-DD HH24:MI:SS')"


def ref(value: Any) -> dict[str, str]:
    """A reference as NetSuite writes it: ``{"id": "42"}``."""
    if value is None or str(value).strip() == "":
        raise InvalidInput("a reference needs an internal id", field="id")
    return {"id": str(value)}


def _ref_id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        found = value.get("id")
        return None if found is None else str(found)
    return None if value is None else str(value)


def _digits(currency: str, record: str) -> int:
    try:
        return currency_digits(currency)
    except UnknownCurrency:
        raise InvalidInput(
            f"unknown currency {currency!r}", record=record, field="currency"
        ) from None


def to_amount(
    minor: int, currency: str, *, record: str = "netsuite", field: str = "amount"
) -> Decimal:
    """Integer minor units → NetSuite's major-unit number (``150000`` EUR → ``1500.00``)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidInput(
            f"money must be integer minor units, not {minor!r}", record=record, field=field
        )
    return Decimal(minor).scaleb(-_digits(currency, record))


def from_amount(
    value: Any, currency: str, *, record: str = "netsuite", field: str = "amount"
) -> int:
    """NetSuite's number → integer minor units; refuses a fraction of the minor unit."""
    if isinstance(value, float) or isinstance(value, bool):
        raise InvalidInput(f"read as a float, not exact: {value!r}", record=record, field=field)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"not a number: {value!r}", record=record, field=field) from None
    scaled = number.scaleb(_digits(currency, record))
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"{number} has more decimals than {currency} allows", record=record, field=field
        )
    return int(scaled)


def _decimal(value: Any, record: str, field: str) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise InvalidInput(f"must be exact, not {value!r}", record=record, field=field)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"not a number: {value!r}", record=record, field=field) from None
    if not number.is_finite():
        raise InvalidInput(f"not a finite number: {value!r}", record=record, field=field)
    return number


def _required(record: Mapping[str, Any], name: str, what: str) -> Any:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput("is required", record=f"{what}[{record.get('id') or '?'}]", field=name)
    return value


def _currency_id(currency: str, ids: Mapping[str, str], record: str) -> dict[str, str]:
    code = str(currency).upper()
    _digits(code, record)
    if code not in ids:
        raise InvalidInput(
            f"no NetSuite currency record for {code} (known: {', '.join(sorted(ids))})",
            record=record,
            field="currency",
        )
    return {"id": ids[code]}


def _currency_code(value: Any, ids: Mapping[str, str], record: str) -> str:
    internal = _ref_id(value)
    for code, known in ids.items():
        if known == internal:
            return code
    raise InvalidInput(f"unknown currency record {internal!r}", record=record, field="currency")


def _date(value: Any) -> str | None:
    return None if value in (None, "") else str(value)[:10]


# -- accounts and projects ---------------------------------------------------------------


def customer_from_account(
    account: Mapping[str, Any],
    *,
    subsidiary_id: str,
    currency_ids: Mapping[str, str] = CURRENCY_IDS,
) -> dict[str, Any]:
    """A canonical account → the body of a ``customer`` record (without ``externalId``)."""
    record = f"Account[{account.get('id') or '?'}]"
    body: dict[str, Any] = {
        "companyName": str(_required(account, "legal_name", "Account")).strip(),
        "subsidiary": ref(subsidiary_id),
        "isPerson": False,
    }
    if account.get("default_currency"):
        body["currency"] = _currency_id(str(account["default_currency"]), currency_ids, record)
    if account.get("domain"):
        body["url"] = f"https://{account['domain']}"
    if account.get("email"):
        body["email"] = str(account["email"])
    if account.get("status") is not None:
        body["isInactive"] = str(account["status"]) in ("inactive", "merged")
    return body


def account_from_customer(
    customer: Mapping[str, Any], *, currency_ids: Mapping[str, str] = CURRENCY_IDS
) -> dict[str, Any]:
    """A ``customer`` record → canonical account fields and the references it carries."""
    record = f"customer[{customer.get('id')}]"
    url = customer.get("url")
    domain = re.sub(r"^https?://", "", str(url)).strip("/") if url else None
    currency = customer.get("currency")
    return {
        "id": customer.get("externalId"),
        "external_id": str(customer["id"]),
        "legal_name": customer.get("companyName"),
        "domain": domain or None,
        "email": customer.get("email"),
        "default_currency": _currency_code(currency, currency_ids, record) if currency else None,
        "status": "inactive" if customer.get("isInactive") else "active",
        "subsidiary_external_id": _ref_id(customer.get("subsidiary")),
    }


def job_from_project(project: Mapping[str, Any], *, customer_id: str) -> dict[str, Any]:
    """A canonical project → the body of a ``job`` (project) record under its customer."""
    body: dict[str, Any] = {
        "companyName": str(_required(project, "name", "Project")).strip(),
        "parent": ref(customer_id),
    }
    if project.get("status") in ("completed", "closed"):
        body["isInactive"] = True
    return body


def project_from_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A ``job`` record → canonical project fields and the references it carries."""
    return {
        "id": job.get("externalId"),
        "external_id": str(job["id"]),
        "name": job.get("companyName"),
        "account_external_id": _ref_id(job.get("parent")),
        "active": not job.get("isInactive", False),
    }


# -- invoices, credit memos, payments ------------------------------------------------------


def _lines(
    lines: Sequence[Mapping[str, Any]], currency: str, item_id: str, record: str
) -> list[dict[str, Any]]:
    if not lines:
        raise InvalidInput("has no lines", record=record, field="lines")
    items: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        where = f"{record}.lines[{index}]"
        quantity = _decimal(line.get("quantity", 1), where, "quantity")
        amount = to_amount(_required(line, "amount", where), currency, record=where)
        row: dict[str, Any] = {
            "item": ref(line.get("item_id") or item_id),
            "quantity": quantity,
            "amount": amount,
        }
        if line.get("unit_price") is not None:
            row["rate"] = to_amount(line["unit_price"], currency, record=where, field="unit_price")
        if line.get("description"):
            row["description"] = str(line["description"])
        items.append(row)
    return items


def invoice_from_canonical(
    invoice: Mapping[str, Any],
    *,
    customer_id: str,
    item_id: str,
    subsidiary_id: str | None = None,
    currency_ids: Mapping[str, str] = CURRENCY_IDS,
) -> dict[str, Any]:
    """A canonical invoice → the body of an ``invoice`` record.

    ``invoice`` holds ``currency``, ``lines`` (``description``, ``quantity``,
    ``unit_price`` and ``amount`` in minor units), and optionally ``number``
    (sent as ``tranId`` and ``otherRefNum``), ``issue_date``, ``due_date`` and
    ``memo``. ``customer_id`` is the customer's internal
    id; ``item_id`` the service item billed when a line names none.
    """
    record = f"Invoice[{invoice.get('id') or '?'}]"
    currency = str(_required(invoice, "currency", "Invoice")).upper()
    body: dict[str, Any] = {
        "entity": ref(customer_id),
        "currency": _currency_id(currency, currency_ids, record),
        "item": {"items": _lines(invoice.get("lines") or (), currency, item_id, record)},
    }
    if subsidiary_id:
        body["subsidiary"] = ref(subsidiary_id)
    if invoice.get("number"):
        # the document number; NetSuite keeps a given ``tranId`` where the invoice's
        # numbering allows overriding it, and otherwise numbers the invoice itself, so the
        # number also travels in ``otherRefNum``, which is always kept (and read back first)
        body["tranId"] = str(invoice["number"])
        body["otherRefNum"] = str(invoice["number"])
    if invoice.get("issue_date"):
        body["tranDate"] = str(invoice["issue_date"])
    if invoice.get("due_date"):
        body["dueDate"] = str(invoice["due_date"])
    if invoice.get("memo"):
        body["memo"] = str(invoice["memo"])
    return body


def _sublist(record: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = record.get(name)
    items = value.get("items") if isinstance(value, Mapping) else None
    return list(items) if isinstance(items, list) else []


def invoice_to_canonical(
    invoice: Mapping[str, Any], *, currency_ids: Mapping[str, str] = CURRENCY_IDS
) -> dict[str, Any]:
    """An ``invoice`` record → canonical invoice fields, money in minor units.

    Lines are there when the record was read with ``expandSubResources=true``.
    ``tax`` is the transaction's ``taxTotal`` (a SuiteQL row carries it as
    ``taxtotal``), ``net`` the total without it.
    """
    record = f"invoice[{invoice.get('id')}]"
    currency = _currency_code(invoice.get("currency"), currency_ids, record)

    def money(name: str) -> int:
        value = invoice.get(name)
        return 0 if value is None else from_amount(value, currency, record=record, field=name)

    gross = money("total")
    tax = money("taxTotal")
    remaining = money("amountRemaining") if invoice.get("amountRemaining") is not None else gross
    status = _STATUS_TO_CANONICAL.get(str(invoice.get("status")))
    if status is InvoiceStatus.ISSUED and remaining < gross:
        status = InvoiceStatus.PARTIALLY_PAID
    lines = []
    for index, line in enumerate(_sublist(invoice, "item")):
        where = f"{record}.item[{index}]"
        lines.append(
            {
                "description": line.get("description"),
                "quantity": str(_decimal(line.get("quantity", 1), where, "quantity")),
                "unit_price": None
                if line.get("rate") is None
                else from_amount(line["rate"], currency, record=where, field="rate"),
                "amount": from_amount(line.get("amount", 0), currency, record=where),
                "item_id": _ref_id(line.get("item")),
            }
        )
    return {
        "id": invoice.get("externalId"),
        "external_id": str(invoice["id"]),
        "number": invoice.get("otherRefNum") or invoice.get("tranId"),
        "customer_external_id": _ref_id(invoice.get("entity")),
        "currency": currency,
        "status": status.value if status else None,
        "net": gross - tax,
        "tax": tax,
        "gross": gross,
        "amount_due": remaining,
        "issue_date": _date(invoice.get("tranDate")),
        "due_date": _date(invoice.get("dueDate")),
        "lines": lines,
    }


def credit_memo_from_canonical(
    memo: Mapping[str, Any],
    *,
    customer_id: str,
    item_id: str,
    invoice_id: str | None = None,
    currency_ids: Mapping[str, str] = CURRENCY_IDS,
) -> dict[str, Any]:
    """A canonical credit memo → the body of a ``creditMemo`` record.

    ``invoice_id`` (the credited invoice's internal id) becomes ``createdFrom``,
    and the memo is applied to it; the reason goes in ``memo``.
    """
    record = f"CreditMemo[{memo.get('id') or '?'}]"
    currency = str(_required(memo, "currency", "CreditMemo")).upper()
    body: dict[str, Any] = {
        "entity": ref(customer_id),
        "currency": _currency_id(currency, currency_ids, record),
        "memo": str(_required(memo, "reason", "CreditMemo")),
        "item": {"items": _lines(memo.get("lines") or (), currency, item_id, record)},
    }
    if invoice_id:
        body["createdFrom"] = ref(invoice_id)
    if memo.get("issue_date"):
        body["tranDate"] = str(memo["issue_date"])
    return body


def credit_memo_to_canonical(
    memo: Mapping[str, Any], *, currency_ids: Mapping[str, str] = CURRENCY_IDS
) -> dict[str, Any]:
    """A ``creditMemo`` record → canonical credit-memo fields."""
    record = f"creditMemo[{memo.get('id')}]"
    currency = _currency_code(memo.get("currency"), currency_ids, record)
    return {
        "id": memo.get("externalId"),
        "external_id": str(memo["id"]),
        "customer_external_id": _ref_id(memo.get("entity")),
        "invoice_external_id": _ref_id(memo.get("createdFrom")),
        "currency": currency,
        "reason": memo.get("memo"),
        "total": from_amount(memo.get("total", 0), currency, record=record, field="total"),
        "tax": from_amount(memo.get("taxTotal") or 0, currency, record=record, field="taxTotal"),
        "issue_date": _date(memo.get("tranDate")),
    }


def payment_from_canonical(
    payment: Mapping[str, Any],
    *,
    customer_id: str,
    applications: Mapping[str, int] | None = None,
    currency_ids: Mapping[str, str] = CURRENCY_IDS,
) -> dict[str, Any]:
    """A canonical payment → the body of a ``customerPayment`` record.

    ``applications`` maps invoice internal ids to the minor units applied to each;
    their sum may not exceed the payment.
    """
    record = f"Payment[{payment.get('id') or '?'}]"
    currency = str(_required(payment, "currency", "Payment")).upper()
    amount = _required(payment, "amount", "Payment")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput(
            f"must be positive minor units, not {amount!r}", record=record, field="amount"
        )
    body: dict[str, Any] = {
        "customer": ref(customer_id),
        "currency": _currency_id(currency, currency_ids, record),
        "payment": to_amount(amount, currency, record=record),
    }
    if payment.get("received_on"):
        body["tranDate"] = str(payment["received_on"])
    if payment.get("reference"):
        body["memo"] = str(payment["reference"])
    if applications:
        applied = sum(applications.values())
        if applied > amount:
            raise InvalidInput(
                f"applies {applied} minor units of a payment of {amount}",
                record=record,
                field="applications",
            )
        body["apply"] = {
            "items": [
                {
                    "doc": ref(invoice),
                    "apply": True,
                    "amount": to_amount(minor, currency, record=record, field="applications"),
                }
                for invoice, minor in applications.items()
            ]
        }
    return body


def payment_to_canonical(
    payment: Mapping[str, Any], *, currency_ids: Mapping[str, str] = CURRENCY_IDS
) -> dict[str, Any]:
    """A ``customerPayment`` record → canonical payment fields (NetSuite records received money)."""
    record = f"customerPayment[{payment.get('id')}]"
    currency = _currency_code(payment.get("currency"), currency_ids, record)
    return {
        "id": payment.get("externalId"),
        "external_id": str(payment["id"]),
        "account_external_id": _ref_id(payment.get("customer")),
        "currency": currency,
        "amount": from_amount(payment.get("payment"), currency, record=record, field="payment"),
        "received_on": _date(payment.get("tranDate")),
        "reference": payment.get("memo") or "",
        "status": PaymentStatus.SUCCEEDED.value,
    }


# -- SuiteQL rows ------------------------------------------------------------------------


def from_suiteql(object: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A SuiteQL row (lower-case columns, references as ids) → the record's REST shape.

    SuiteQL flattens a record: ``entity`` is the id itself, not ``{"id": …}``,
    and column names are lower case. This gives the camel-case body the
    ``*_to_canonical`` functions read (without sublists, which SuiteQL does not return).
    """
    names = {
        "id": "id",
        "externalid": "externalId",
        "lastmodifieddate": "lastModifiedDate",
        "companyname": "companyName",
        "name": "name",
        "email": "email",
        "url": "url",
        "isinactive": "isInactive",
        "subsidiary": "subsidiary",
        "currency": "currency",
        "parent": "parent",
        "entity": "entity",
        "customer": "customer",
        "tranid": "tranId",
        "otherrefnum": "otherRefNum",
        "trandate": "tranDate",
        "duedate": "dueDate",
        "status": "status",
        "memo": "memo",
        "createdfrom": "createdFrom",
        "foreigntotal": "total",
        "foreignamountremaining": "amountRemaining",
        "taxtotal": "taxTotal",
        "payment": "payment",
    }
    references = {"subsidiary", "currency", "parent", "entity", "customer", "createdFrom"}
    body: dict[str, Any] = {}
    for column, value in row.items():
        name = names.get(column.lower())
        if name is None:
            continue
        if name in references and value is not None:
            body[name] = {"id": str(value)}
        elif name == "isInactive":
            body[name] = value in (True, "T", "t", "true")
        else:
            body[name] = value
    if object not in SUITEQL_TABLES:
        raise InvalidInput(f"not a NetSuite record type: {object!r}", field="object")
    return body
