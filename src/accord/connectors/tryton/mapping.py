"""Tryton ⇄ canonical: pure functions, no I/O.

Connector objects and the Tryton models behind them:

================  ===================================  ===================================
object            Tryton model (and filter)            stored external reference
================  ===================================  ===================================
``account``       ``party.party``                      ``code`` (exact)
``project``       ``project.work`` (``type=project``)  ``[accord:REF]`` line in ``comment``
``time_entry``    ``timesheet.line``                   ``[accord:REF]`` at end of ``description``
``invoice``       ``account.invoice`` (``type=out``)   ``reference`` (exact)
``payment``       ``account.move.line`` paying an      ``description`` of its move (exact)
                  invoice (``invoice_payment`` set)
``opportunity``   ``sale.opportunity``                 ``reference`` (exact)
================  ===================================  ===================================

The reference is what look-up-before-create searches: the caller's canonical
``reference`` when it gives one (a customer number, an invoice number), else the
external id of an upsert, else the effect's idempotency key. Party code and
invoice reference are plain fields Tryton users see and search; project works
and timesheet lines have no free reference field that RPC may write (``number``
and ``uuid`` are read-only), so the reference is a marker in their text, which
:func:`strip_marker` removes again on the way back.

Canonical records are plain dicts with the canonical model's field names;
amounts are decimal strings in the record's ``currency`` (never floats), hours
are decimal strings, dates ISO strings, and links to other records carry the
Tryton id as text in ``*_external_id`` (the xref table turns them into
canonical ids).

Tryton's JSON-RPC encodes dates, datetimes, time deltas and decimals as
``{"__class__": ...}`` objects; :func:`to_rpc` and :func:`from_rpc` convert.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from accord.errors import InvalidInput

__all__ = [
    "MODELS",
    "OBJECTS",
    "INVOICE_LINE_FIELDS",
    "READ_FIELDS",
    "ObjectSpec",
    "account_values",
    "from_rpc",
    "invoice_status",
    "invoice_values",
    "date_field",
    "decimal_field",
    "hours_of",
    "marker",
    "marker_of",
    "modified_stamp",
    "parse_stamp",
    "opportunity_values",
    "project_values",
    "reference_domain",
    "reference_of",
    "stamp_domain",
    "strip_marker",
    "time_entry_values",
    "to_canonical",
    "to_rpc",
    "with_marker",
]

# -- RPC value codec ---------------------------------------------------------------


def to_rpc(value: Any) -> Any:
    """Python values → Tryton's JSON classes (recursively)."""
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, Mapping):
        return {str(k): to_rpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rpc(v) for v in value]
    return value


def from_rpc(obj: dict[str, Any]) -> Any:
    """``json.loads`` object hook: Tryton's JSON classes → Python values."""
    kind = obj.get("__class__")
    if kind is None:
        return obj
    if kind == "datetime":
        return dt.datetime(
            obj["year"],
            obj["month"],
            obj["day"],
            obj.get("hour", 0),
            obj.get("minute", 0),
            obj.get("second", 0),
            obj.get("microsecond", 0),
        )
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "time":
        return dt.time(
            obj.get("hour", 0),
            obj.get("minute", 0),
            obj.get("second", 0),
            obj.get("microsecond", 0),
        )
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "bytes":
        return base64.decodebytes(obj["base64"].encode())
    return obj


# -- stamps -----------------------------------------------------------------------


def _format_stamp(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds")


def modified_stamp(record: Mapping[str, Any]) -> str:
    """Tryton's own modification stamp, ``write_date`` or else ``create_date``.

    Fixed-width ISO text with microseconds, so that it sorts in time order.
    """
    value = record.get("write_date") or record.get("create_date")
    if not isinstance(value, dt.datetime):
        raise InvalidInput("record has no create_date", record=str(record.get("id")))
    return _format_stamp(value)


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def stamp_domain(since: str | None) -> list[Any]:
    """Records modified at or after ``since``.

    ``write_date >= since OR create_date >= since`` equals
    ``coalesce(write_date, create_date) >= since`` because a record is never
    written before it is created.
    """
    if since is None:
        return []
    at = parse_stamp(since)
    return [["OR", ("write_date", ">=", at), ("create_date", ">=", at)]]


# -- objects ------------------------------------------------------------------------


class ObjectSpec:
    """How one connector object sits in Tryton."""

    __slots__ = ("domain", "model", "reference_field", "uses_marker")

    def __init__(
        self,
        model: str,
        domain: Sequence[Any],
        reference_field: str,
        *,
        uses_marker: bool = False,
    ) -> None:
        self.model = model
        self.domain = list(domain)
        self.reference_field = reference_field
        self.uses_marker = uses_marker


OBJECTS: dict[str, ObjectSpec] = {
    "account": ObjectSpec("party.party", [], "code"),
    "project": ObjectSpec("project.work", [("type", "=", "project")], "comment", uses_marker=True),
    "time_entry": ObjectSpec("timesheet.line", [], "description", uses_marker=True),
    "invoice": ObjectSpec("account.invoice", [("type", "=", "out")], "reference"),
    "payment": ObjectSpec(
        "account.move.line", [("invoice_payment", "!=", None)], "move.description"
    ),
    "opportunity": ObjectSpec("sale.opportunity", [], "reference"),
}
MODELS = {name: spec.model for name, spec in OBJECTS.items()}

_STAMPS = ["create_date", "write_date"]
READ_FIELDS: dict[str, list[str]] = {
    "account": ["name", "code", "active", *_STAMPS],
    "project": [
        "name",
        "number",
        "party",
        "comment",
        "project_invoice_method",
        "status.rec_name",
        "timesheet_works",
        *_STAMPS,
    ],
    "time_entry": ["work", "work.origin", "employee", "date", "duration", "description", *_STAMPS],
    "invoice": [
        "number",
        "reference",
        "description",
        "party",
        "currency.code",
        "invoice_date",
        "state",
        "untaxed_amount",
        "tax_amount",
        "total_amount",
        "amount_to_pay",
        "payment_lines",
        "lines",
        *_STAMPS,
    ],
    "payment": [
        "invoice_payment",
        "party",
        "debit",
        "credit",
        "date",
        "currency.code",
        "move.description",
        *_STAMPS,
    ],
    "opportunity": [
        "number",
        "reference",
        "party",
        "description",
        "amount",
        "currency.code",
        "start_date",
        "end_date",
        "state",
        "conversion_probability",
        *_STAMPS,
    ],
}
INVOICE_LINE_FIELDS = ["invoice", "description", "quantity", "unit_price", "amount"]

# -- references ---------------------------------------------------------------------

_MARKER = re.compile(r"\s*\[accord:([^\]\s]+)\]\s*$")


def marker(reference: str) -> str:
    return f"[accord:{reference}]"


def with_marker(text: str | None, reference: str) -> str:
    body = strip_marker(text)
    return f"{body} {marker(reference)}".strip() if body else marker(reference)


def strip_marker(text: str | None) -> str:
    """The text without its trailing ``[accord:REF]`` marker."""
    return _MARKER.sub("", text or "")


def marker_of(text: str | None) -> str | None:
    found = _MARKER.search(text or "")
    return found.group(1) if found else None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def reference_domain(object: str, reference: str) -> list[Any]:
    """The search domain that finds the record carrying ``reference``.

    Marker searches use ``like`` with Tryton's backslash escape, so the ``_``
    of a key is not a wildcard; the connector still re-checks candidates with
    :func:`reference_of` for an exact match.
    """
    spec = OBJECTS[object]
    if spec.uses_marker:
        pattern = "%" + _escape_like(marker(reference))
        return [*spec.domain, (spec.reference_field, "like", pattern)]
    return [*spec.domain, (spec.reference_field, "=", reference)]


def reference_of(object: str, record: Mapping[str, Any]) -> str | None:
    spec = OBJECTS[object]
    if spec.uses_marker:
        return marker_of(record.get(spec.reference_field))
    if object == "payment":
        move = record.get("move.") or {}
        return move.get("description") if isinstance(move, Mapping) else None
    value = record.get(spec.reference_field)
    return str(value) if value else None


# -- Tryton → canonical ---------------------------------------------------------------


def _ref(value: Any) -> str | None:
    """A Many2One value (id, or ``None``) as the external id text."""
    return None if value in (None, False) else str(value)


def _related(record: Mapping[str, Any], name: str, field: str) -> Any:
    nested = record.get(f"{name}.")
    return nested.get(field) if isinstance(nested, Mapping) else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else None


def _amount(value: Any) -> str:
    return str(Decimal(value or 0))


def hours_of(duration: dt.timedelta | None) -> str:
    """A Tryton duration as decimal hours, exact to the second."""
    if duration is None:
        return "0"
    hours = Decimal(int(round(duration.total_seconds()))) / Decimal(3600)
    return str(hours.quantize(Decimal("0.000001")).normalize())


def invoice_status(record: Mapping[str, Any]) -> str:
    """Tryton's invoice state as a canonical invoice status."""
    state = record.get("state")
    if state in ("draft", "validated"):
        return "draft"
    if state == "cancelled":
        return "void"
    if state == "paid":
        return "paid"
    due = Decimal(record.get("amount_to_pay") or 0)
    total = Decimal(record.get("total_amount") or 0)
    if record.get("payment_lines") and due < total:
        return "partially_paid"
    return "issued"


def _origin_id(origin: Any, model: str) -> str | None:
    if isinstance(origin, str) and origin.startswith(f"{model},"):
        _, _, ident = origin.partition(",")
        return ident if ident.lstrip("-").isdigit() and int(ident) >= 0 else None
    return None


def to_canonical(object: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A Tryton record (as read by the connector) as a canonical dict."""
    if object == "account":
        return {
            "legal_name": record.get("name"),
            "reference": record.get("code"),
            "active": bool(record.get("active", True)),
        }
    if object == "project":
        status = _related(record, "status", "rec_name")
        return {
            "name": record.get("name"),
            "number": record.get("number"),
            "account_external_id": _ref(record.get("party")),
            "invoice_method": record.get("project_invoice_method"),
            "status": str(status).lower() if status else None,
            "comment": strip_marker(record.get("comment")),
            "reference": marker_of(record.get("comment")),
        }
    if object == "time_entry":
        return {
            "project_external_id": _origin_id(_related(record, "work", "origin"), "project.work"),
            "person_external_id": _ref(record.get("employee")),
            "work_date": _iso(record.get("date")),
            "hours": hours_of(record.get("duration")),
            "activity": strip_marker(record.get("description")),
            "reference": marker_of(record.get("description")),
        }
    if object == "invoice":
        lines = record.get("lines")
        return {
            "number": record.get("number"),
            "reference": record.get("reference"),
            "description": record.get("description"),
            "account_external_id": _ref(record.get("party")),
            "currency": _related(record, "currency", "code"),
            "issue_date": _iso(record.get("invoice_date")),
            "status": invoice_status(record),
            "untaxed": _amount(record.get("untaxed_amount")),
            "tax": _amount(record.get("tax_amount")),
            "total": _amount(record.get("total_amount")),
            "amount_due": _amount(record.get("amount_to_pay")),
            "lines": [
                {
                    "description": line.get("description") or "",
                    "quantity": str(Decimal(str(line.get("quantity") or 0))),
                    "unit_price": _amount(line.get("unit_price")),
                    "amount": _amount(line.get("amount")),
                }
                for line in (lines or [])
                if isinstance(line, Mapping)
            ],
        }
    if object == "payment":
        received = Decimal(record.get("credit") or 0) - Decimal(record.get("debit") or 0)
        return {
            "invoice_external_id": _ref(record.get("invoice_payment")),
            "account_external_id": _ref(record.get("party")),
            "amount": str(received),
            "currency": _related(record, "currency", "code"),
            "received_on": _iso(record.get("date")),
            "reference": reference_of("payment", record) or "",
        }
    if object == "opportunity":
        amount = record.get("amount")
        return {
            "name": record.get("description") or record.get("number"),
            "number": record.get("number"),
            "reference": record.get("reference"),
            "account_external_id": _ref(record.get("party")),
            "currency": _related(record, "currency", "code"),
            "estimated_amount": None if amount is None else _amount(amount),
            "start_date": _iso(record.get("start_date")),
            "close_date": _iso(record.get("end_date")),
            "stage": record.get("state"),
            "status": _OPPORTUNITY_STATUS.get(str(record.get("state")), "open"),
        }
    raise InvalidInput(f"unknown Tryton object {object!r}", record=object)


_OPPORTUNITY_STATUS = {"won": "won", "lost": "lost", "cancelled": "lost"}
"""Tryton's lead, opportunity and converted are all still open deals."""


# -- canonical → Tryton ---------------------------------------------------------------


def _int_id(data: Mapping[str, Any], key: str, *, object: str) -> int:
    value = data.get(key)
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise InvalidInput(f"needs a Tryton id, got {value!r}", record=object, field=key) from None


def decimal_field(data: Mapping[str, Any], key: str, *, object: str) -> Decimal:
    value = data.get(key)
    if isinstance(value, float) or value is None or isinstance(value, bool):
        raise InvalidInput(f"needs a decimal string, got {value!r}", record=object, field=key)
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise InvalidInput(f"not a decimal: {value!r}", record=object, field=key) from None


def date_field(data: Mapping[str, Any], key: str, *, object: str) -> dt.date | None:
    value = data.get(key)
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"not an ISO date: {value!r}", record=object, field=key) from None


def _required_text(data: Mapping[str, Any], key: str, *, object: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("is required", record=object, field=key)
    return value.strip()


def account_values(
    data: Mapping[str, Any], *, reference: str | None, creating: bool
) -> dict[str, Any]:
    """A canonical account as ``party.party`` values (with one address on create)."""
    values: dict[str, Any] = {}
    if creating or "legal_name" in data:
        values["name"] = _required_text(data, "legal_name", object="account")
    if "active" in data:
        values["active"] = bool(data["active"])
    if creating:
        values["code"] = reference
        address = {
            key: data[key] for key in ("street", "postal_code", "city") if data.get(key) is not None
        }
        values["addresses"] = [["create", [address]]]
    return values


def project_values(
    data: Mapping[str, Any],
    *,
    reference: str | None,
    creating: bool,
    product: int | None,
    current_comment: str | None = None,
) -> dict[str, Any]:
    """A canonical project as ``project.work`` values."""
    values: dict[str, Any] = {}
    if creating or "name" in data:
        values["name"] = _required_text(data, "name", object="project")
    if creating or "account_external_id" in data:
        values["party"] = _int_id(data, "account_external_id", object="project")
    if creating:
        values.update(
            type="project",
            timesheet_available=True,
            project_invoice_method=data.get("invoice_method") or "timesheet",
        )
        if product is not None:
            values["product"] = product
    elif "invoice_method" in data:
        values["project_invoice_method"] = data["invoice_method"]
    if creating or "comment" in data:
        keep = reference if creating else marker_of(current_comment)
        comment = str(data.get("comment") or "")
        values["comment"] = with_marker(comment, keep) if keep else comment
    return values


def time_entry_values(
    data: Mapping[str, Any],
    *,
    reference: str | None,
    creating: bool,
    timesheet_work: int | None,
    current_description: str | None = None,
) -> dict[str, Any]:
    """A canonical time entry as ``timesheet.line`` values.

    ``timesheet_work`` is the ``timesheet.work`` of the project (resolved by the
    connector, since a line points at it rather than at the project).
    """
    values: dict[str, Any] = {}
    if timesheet_work is not None:
        values["work"] = timesheet_work
    if data.get("person_external_id") is not None:
        values["employee"] = _int_id(data, "person_external_id", object="time_entry")
    if creating or "work_date" in data:
        values["date"] = date_field(data, "work_date", object="time_entry")
        if values["date"] is None:
            raise InvalidInput("is required", record="time_entry", field="work_date")
    if creating or "hours" in data:
        hours = decimal_field(data, "hours", object="time_entry")
        if hours < 0 or hours > 24:
            raise InvalidInput(
                f"must be between 0 and 24, got {hours}", record="time_entry", field="hours"
            )
        values["duration"] = dt.timedelta(seconds=int(round(hours * 3600)))
    if creating or "activity" in data:
        keep = reference if creating else marker_of(current_description)
        activity = str(data.get("activity") or "")
        values["description"] = with_marker(activity, keep) if keep else activity
    return values


def invoice_values(
    data: Mapping[str, Any],
    *,
    reference: str | None,
    creating: bool,
    defaults: Mapping[str, int],
    invoice_address: int | None,
    currency: int | None,
) -> dict[str, Any]:
    """A canonical customer invoice as ``account.invoice`` values (draft).

    ``defaults`` carries the ids the connector found once: ``journal``
    (revenue), ``receivable`` and ``revenue`` accounts, ``payment_term`` and
    ``product`` (service by the hour). Posting (``status: issued``) is a
    separate call the connector makes after the create.
    """
    values: dict[str, Any] = {}
    if creating:
        values.update(
            type="out",
            party=_int_id(data, "account_external_id", object="invoice"),
            invoice_address=invoice_address,
            account=defaults["receivable"],
            journal=defaults["journal"],
            reference=reference,
        )
        if currency is not None:
            values["currency"] = currency
        if "payment_term" in defaults:
            values["payment_term"] = defaults["payment_term"]
    if "issue_date" in data:
        values["invoice_date"] = date_field(data, "issue_date", object="invoice")
    if "description" in data:
        values["description"] = data["description"]
    lines = data.get("lines")
    if creating and not lines:
        raise InvalidInput("needs at least one line", record="invoice", field="lines")
    if lines is not None:
        if not creating:
            raise InvalidInput(
                "lines of an existing invoice are not rewritten", record="invoice", field="lines"
            )
        values["lines"] = [
            [
                "create",
                [
                    {
                        "type": "line",
                        "description": _required_text(line, "description", object="invoice"),
                        "quantity": float(decimal_field(line, "quantity", object="invoice")),
                        "unit_price": decimal_field(line, "unit_price", object="invoice"),
                        "account": defaults["revenue"],
                        "product": defaults.get("product"),
                        "unit": defaults.get("unit"),
                    }
                    for line in lines
                ],
            ]
        ]
    return values


def opportunity_values(
    data: Mapping[str, Any], *, reference: str | None, creating: bool, currency: int | None
) -> dict[str, Any]:
    """A canonical opportunity as ``sale.opportunity`` values.

    Its state moves only through Tryton's buttons (lead → opportunity →
    converted, won, lost), which this mapping does not drive.
    """
    values: dict[str, Any] = {}
    if creating:
        values["reference"] = reference
        values["start_date"] = (
            date_field(data, "start_date", object="opportunity") or dt.date.today()
        )
        if currency is not None:
            values["currency"] = currency
    if creating or "name" in data:
        values["description"] = _required_text(data, "name", object="opportunity")
    if data.get("account_external_id") is not None:
        values["party"] = _int_id(data, "account_external_id", object="opportunity")
    if "estimated_amount" in data:
        values["amount"] = decimal_field(data, "estimated_amount", object="opportunity")
    if "close_date" in data:
        values["end_date"] = date_field(data, "close_date", object="opportunity")
    return values
