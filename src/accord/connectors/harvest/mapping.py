"""Harvest ⇄ canonical, as pure functions.

Harvest speaks floats (hours, money) and whole-second UTC stamps; Accord keeps
hours as decimal strings, money as integer minor units, and compares stamps as
text. These functions are the only place where the two meet, so a rounding rule
or a field name is decided once.

Harvest declares approval only through ``is_closed`` ("approved via Timesheet
Approval") with ``is_locked``/``locked_reason``; invoicing through ``is_billed``
and ``invoice``. There is no submitted or rejected state in API v2, so an open
record maps to ``draft``.

Accord's idempotency key travels with the record where Harvest allows: a time
entry's ``external_reference`` (which Harvest can filter on) and a project's
``notes`` (as a ``[accord:<key>]`` marker). A client has neither, and its name is
unique in a Harvest account, so the name is its natural key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from accord.domain.model import ApprovalStatus, BillingStatus
from accord.domain.money import Money, UnknownCurrency
from accord.errors import InvalidInput

__all__ = [
    "REFERENCE_GROUP",
    "REFERENCE_URL",
    "client_from_account",
    "client_to_account",
    "expense_to_canonical",
    "external_reference",
    "has_marker",
    "hours_number",
    "hours_text",
    "marker",
    "money_minor",
    "project_from_canonical",
    "project_to_canonical",
    "stamp",
    "time_entry_from_canonical",
    "time_entry_to_canonical",
    "to_canonical",
    "updated_since",
    "with_marker",
]

REFERENCE_GROUP = "accord"
"""``external_reference.group_id`` of every time entry Accord creates."""
REFERENCE_URL = "https://accord.invalid/effects/"
"""Prefix of ``external_reference.permalink``: Harvest shows it as a link in its UI."""

_HUNDREDTH = Decimal("0.01")
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


# -- stamps ---------------------------------------------------------------------------------


def stamp(value: str) -> str:
    """A Harvest ``updated_at`` as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC.

    One fixed width and zone makes text order time order, which the cursor
    relies on. Fractions of a second are dropped: Harvest sends none, and
    dropping them only merges stamps into one second, which the cursor's
    ``seen`` ids already handle.
    """
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"not an ISO 8601 time: {value!r}", field="updated_at") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_STAMP)


def updated_since(cursor_value: str) -> str:
    """The ``updated_since`` to ask for when resuming at ``cursor_value``.

    Harvest does not document whether ``updated_since`` is inclusive. One
    second earlier returns every record at the cursor's own second either
    way; the connector then drops what is older than the cursor and the
    framework skips the ids it has seen, so nothing is missed or repeated.
    """
    moment = datetime.strptime(stamp(cursor_value), _STAMP).replace(tzinfo=UTC)
    return (moment - timedelta(seconds=1)).strftime(_STAMP)


# -- keys carried in Harvest records --------------------------------------------------------


def marker(key: str) -> str:
    """The text that marks a project's ``notes`` as created by effect ``key``."""
    return f"[accord:{key}]"


def with_marker(notes: str | None, key: str) -> str:
    """``notes`` with the marker of ``key`` appended (once)."""
    tag = marker(key)
    if notes and tag in notes:
        return notes
    return f"{notes}\n{tag}" if notes else tag


def has_marker(notes: str | None, key: str) -> bool:
    return bool(notes) and marker(key) in str(notes)


def external_reference(key: str) -> dict[str, str]:
    """A time entry's ``external_reference`` carrying the idempotency key as its id."""
    return {"id": key, "group_id": REFERENCE_GROUP, "permalink": f"{REFERENCE_URL}{key}"}


# -- numbers ---------------------------------------------------------------------------------


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise InvalidInput(f"not a number: {value!r}", field=field)
    try:
        # str() of a float is its shortest round-trip form: 1.1 stays "1.1".
        return Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"not a number: {value!r}", field=field) from None


def hours_text(value: Any) -> str:
    """Harvest hours (a float) as a decimal string to the hundredth: ``1.5`` → ``"1.50"``."""
    return str(_decimal(value, "hours").quantize(_HUNDREDTH, rounding=ROUND_HALF_UP))


def hours_number(text: str | Decimal) -> float:
    """A decimal hours string as the number Harvest expects; refuses more than two decimals."""
    value = _decimal(text, "hours")
    if value != value.quantize(_HUNDREDTH) or value < 0:
        raise InvalidInput(f"hours must be non-negative with two decimals: {text}", field="hours")
    return float(value)


def rate_number(rate: Decimal) -> float:
    """An hourly rate as the number Harvest expects; refuses more than two decimals."""
    if rate != rate.quantize(_HUNDREDTH) or rate < 0:
        raise InvalidInput(f"a rate must be non-negative with two decimals: {rate}", field="rate")
    return float(rate)


def user_assignment_from_canonical(user_id: int, rate: Decimal | None) -> dict[str, Any]:
    """A person staffed on a project: at the contract's ``rate`` (Harvest bills the project
    "by people"), or at the person's default rate when the contract line has none."""
    body: dict[str, Any] = {"user_id": user_id, "use_default_rates": rate is None}
    if rate is not None:
        body["hourly_rate"] = rate_number(rate)
    return body


def money_minor(amount: Any, currency: str) -> int:
    """A Harvest money float as integer minor units of ``currency`` (half-up)."""
    try:
        return Money.from_decimal(_decimal(amount, "total_cost"), currency).minor
    except UnknownCurrency as exc:
        raise InvalidInput(str(exc), field="currency") from None


def _id(ref: Any) -> str | None:
    if isinstance(ref, Mapping) and ref.get("id") is not None:
        return str(ref["id"])
    return None


def _approval(row: Mapping[str, Any]) -> str:
    return (ApprovalStatus.APPROVED if row.get("is_closed") else ApprovalStatus.DRAFT).value


def _billing(row: Mapping[str, Any]) -> str:
    return (BillingStatus.BILLED if row.get("is_billed") else BillingStatus.UNBILLED).value


# -- Harvest → canonical ----------------------------------------------------------------------


def client_to_account(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Harvest client as canonical account fields."""
    return {
        "legal_name": row.get("name"),
        "default_currency": row.get("currency"),
        "address": row.get("address"),
        "status": "active" if row.get("is_active", True) else "inactive",
    }


def project_to_canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Harvest project; archiving (``is_active: false``) is canonical ``closed``."""
    return {
        "name": row.get("name"),
        "code": row.get("code"),
        "account_ref": _id(row.get("client")),
        "billable": bool(row.get("is_billable")),
        "status": "active" if row.get("is_active", True) else "closed",
        "starts_on": row.get("starts_on"),
        "ends_on": row.get("ends_on"),
        "notes": row.get("notes"),
    }


def time_entry_to_canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Harvest time entry: hours as a decimal string, approval and billing as states."""
    return {
        "person_ref": _id(row.get("user")),
        "project_ref": _id(row.get("project")),
        "task_ref": _id(row.get("task")),
        "work_date": row.get("spent_date"),
        "hours": hours_text(row.get("hours")),
        "billable": bool(row.get("billable")),
        "approval": _approval(row),
        "billing": _billing(row),
        "locked": bool(row.get("is_locked")),
        "invoice_ref": _id(row.get("invoice")),
        "notes": row.get("notes"),
    }


def expense_to_canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Harvest expense; the amount is in its client's currency, as Harvest records it."""
    client = row.get("client")
    currency = client.get("currency") if isinstance(client, Mapping) else None
    if not currency:
        raise InvalidInput("expense has no client currency", field="client.currency")
    category = row.get("expense_category")
    return {
        "person_ref": _id(row.get("user")),
        "project_ref": _id(row.get("project")),
        "work_date": row.get("spent_date"),
        "amount": {"minor": money_minor(row.get("total_cost"), currency), "currency": currency},
        "units": row.get("units"),
        "category": category.get("name") if isinstance(category, Mapping) else None,
        "billable": bool(row.get("billable")),
        "approval": _approval(row),
        "billing": _billing(row),
        "locked": bool(row.get("is_locked")),
        "invoice_ref": _id(row.get("invoice")),
        "notes": row.get("notes"),
    }


def _assignment(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "person_ref": _id(row.get("user")),
        "project_ref": _id(row.get("project")),
        "active": bool(row.get("is_active", True)),
        "project_manager": bool(row.get("is_project_manager")),
    }


def _task(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": row.get("name"),
        "billable": bool(row.get("billable_by_default")),
        "active": bool(row.get("is_active", True)),
    }


def _person(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": f"{row.get('first_name', '')} {row.get('last_name', '')}".strip(),
        "email": row.get("email"),
        "status": "active" if row.get("is_active", True) else "inactive",
    }


_TO_CANONICAL = {
    "clients": client_to_account,
    "projects": project_to_canonical,
    "tasks": _task,
    "users": _person,
    "user_assignments": _assignment,
    "time_entries": time_entry_to_canonical,
    "expenses": expense_to_canonical,
}


def to_canonical(object: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical fields of one Harvest record of list ``object`` (``"time_entries"``…)."""
    try:
        convert = _TO_CANONICAL[object]
    except KeyError:
        raise InvalidInput(f"no mapping for Harvest {object!r}", field="object") from None
    return convert(row)


# -- canonical → Harvest request bodies ---------------------------------------------------------


def _present(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def client_from_account(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A create or update body for ``/v2/clients`` from canonical account fields."""
    status = fields.get("status")
    return _present(
        {
            "name": fields.get("legal_name"),
            "currency": fields.get("default_currency"),
            "address": fields.get("address"),
            "is_active": None if status is None else status == "active",
        }
    )


def project_from_canonical(fields: Mapping[str, Any], *, client_id: int) -> dict[str, Any]:
    """A create body for ``/v2/projects``; billing by project rate, no Harvest budget.

    Budgets and rates stay in Accord's contracts; Harvest only needs to know
    whether time on the project is billable.
    """
    status = fields.get("status")
    return _present(
        {
            "client_id": client_id,
            "name": fields.get("name"),
            "code": fields.get("code"),
            "is_billable": bool(fields.get("billable", True)),
            "bill_by": "Project",
            "budget_by": "none",
            "is_active": None if status is None else status == "active",
            "starts_on": fields.get("starts_on"),
            "ends_on": fields.get("ends_on"),
            "notes": fields.get("notes"),
        }
    )


def time_entry_from_canonical(
    fields: Mapping[str, Any], *, project_id: int, task_id: int, user_id: int | None = None
) -> dict[str, Any]:
    """A create body for ``/v2/time_entries``; Harvest ids come from the caller's xref."""
    hours = fields.get("hours")
    return _present(
        {
            "project_id": project_id,
            "task_id": task_id,
            "user_id": user_id,
            "spent_date": fields.get("work_date"),
            "hours": None if hours is None else hours_number(str(hours)),
            "notes": fields.get("notes"),
        }
    )
