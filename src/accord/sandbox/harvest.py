"""A stand-in for the Harvest API v2, served over real HTTP with injected faults.

The Harvest connector is tested against this server, so it is faithful where the
connector depends on Harvest's behaviour, and says plainly where it is not.
Shapes follow the OpenAPI description in ``shared/specs/harvest`` (the tests
validate every request and response against it):

* Paths under ``/v2`` for clients, projects, tasks, users, user assignments
  (``/v2/user_assignments`` and ``/v2/projects/{id}/user_assignments``), time
  entries, expenses and expense categories; ``GET`` lists, ``POST`` creates and
  ``PATCH`` updates. Every list is wrapped in Harvest's pagination envelope
  (``per_page``, ``total_pages``, ``total_entries``, ``next_page``,
  ``previous_page``, ``page`` and ``links``), newest first. ``links.next``
  carries a ``cursor`` on the lists whose description declares one (there
  ``page`` is deprecated but still served) and a ``page`` number elsewhere.
* Authentication: ``Authorization: Bearer <token>`` and ``Harvest-Account-Id``
  are required; anything else is a 401 with Harvest's OAuth error body.
  ``User-Agent`` is accepted and remembered (Harvest asks every integration to
  name itself; this server does not refuse a request without one).
* ``updated_at`` has whole seconds, as Harvest returns it, so many records share
  one stamp. ``updated_since`` is inclusive by default; Harvest's documentation
  does not say which, so ``updated_since_inclusive=False`` makes it strict and
  the connector is tested against both.
* The quota: 100 requests per 15 seconds per token and account, refused with 429
  and ``Retry-After`` in whole seconds.
* Errors: 422 ``{"code", "message"}`` for validation (client names are unique,
  required fields, unknown related records, locked entries), 400 for malformed
  JSON or unparseable query parameters, 404 for unknown ids.
* Harvest has no idempotency header. Time entries carry an
  ``external_reference`` that ``GET /v2/time_entries?external_reference_id=``
  finds again; the connector keys its look-ups on it.

Extensions, outside API v2 and kept to in-process helpers so that nobody mistakes
them for Harvest: approval and invoicing happen in Harvest's web UI, so
:meth:`HarvestStandIn.approve` and :meth:`HarvestStandIn.mark_billed` set
``is_closed``, ``is_locked``, ``locked_reason``, ``is_billed`` and ``invoice`` as
Harvest would. The OpenAPI declares approval only through those fields (no
``approval_status``), so that is all this server exposes. Task assignments are
not modelled: ``task_assignment`` is ``null``.

Faults are those of :class:`accord.sandbox.recorder.Faults`, drawn per request:
503s, 429s with ``Retry-After``, added latency, and lost responses — a write is
applied, its status line sent, and the connection dropped before the body.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlparse

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.sandbox.recorder import Faults
from accord.sandbox.serving import BackgroundServer, ServedStandIn

__all__ = [
    "APPROVED_REASON",
    "INVOICED_REASON",
    "Faults",
    "HarvestStandIn",
    "Seeded",
]

APPROVED_REASON = "Item Approved and Locked for this Time Period"
"""``locked_reason`` of an approved time entry or expense (as in Harvest's examples)."""
INVOICED_REASON = "Item Invoiced and Approved and Locked for this Time Period"
"""``locked_reason`` of an invoiced one."""

_UNAUTHORISED = {
    "error": "invalid_token",
    "error_description": (
        "The access token provided is expired, revoked, malformed or invalid for other reasons."
    ),
}
_MAX_PER_PAGE = 2000
# Distinct id ranges per kind, all below 2**31 (the OpenAPI declares most ids int32),
# so that a client id is never mistaken for a project id in a test.
_ID_BASE = {
    "clients": 5_735_000,
    "projects": 14_308_000,
    "tasks": 8_083_000,
    "users": 1_782_000,
    "user_assignments": 125_068_000,
    "time_entries": 636_708_000,
    "expenses": 15_296_000,
    "expense_categories": 4_195_000,
    "invoices": 13_150_000,
}
_BILL_BY = frozenset({"Project", "Tasks", "People", "none"})
_BUDGET_BY = frozenset({"project", "project_cost", "task", "task_fees", "person", "none"})
_DIGITS = re.compile(r"/\d+(?=/|$)")


class _Refused(ValueError):
    """A request Harvest would refuse, with its status and message.

    A ``ValueError`` so that the seeding helpers, which share the routes' checks,
    fail as any helper given bad values does.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ConnectionDropped(Exception):
    """Raised after a response has started, so that uvicorn drops the connection."""


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused(400, f"{name} is not an ISO 8601 date and time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Refused(400, f"{name} is not an ISO 8601 date: {text!r}") from None


# -- typed access to JSON values ------------------------------------------------------


def _invalid(key: str) -> _Refused:
    return _Refused(422, f"{key.replace('_', ' ').capitalize()} is invalid")


def _blank(key: str) -> _Refused:
    return _Refused(422, f"{key.replace('_', ' ').capitalize()} can't be blank")


def _opt_int(values: Mapping[str, Any], key: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(key)
    return value


def _opt_number(values: Mapping[str, Any], key: str) -> float | None:
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(key)
    return float(value)


def _opt_text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(key)
    return value


def _text(values: Mapping[str, Any], key: str) -> str:
    value = _opt_text(values, key)
    if not value or not value.strip():
        raise _blank(key)
    return value


def _flag(values: Mapping[str, Any], key: str) -> bool:
    value = values.get(key)
    if not isinstance(value, bool):
        raise _invalid(key)
    return value


def _spent_date(values: Mapping[str, Any]) -> str:
    text = _text(values, "spent_date")
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise _invalid("spent_date") from None


# -- the resources -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one Harvest resource is written, checked and rendered."""

    writable: Mapping[str, Any]
    """Fields a request may set, with their defaults on create (others are ignored)."""
    required: tuple[str, ...]
    check: Callable[[_Store, dict[str, Any], Mapping[str, Any] | None], None]
    """Validates (and completes) the merged row; the existing row on update."""
    render: Callable[[_Store, Mapping[str, Any]], dict[str, Any]]
    order: Callable[[Mapping[str, Any]], tuple[Any, ...]]


class _Store:
    """Rows of every kind behind one lock; stamps come from an injectable clock."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.rows: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in _ID_BASE}
        self._next = dict(_ID_BASE)

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    def new_id(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind]

    def get(self, kind: str, item_id: int) -> dict[str, Any]:
        row = self.rows[kind].get(item_id)
        if row is None:
            raise _Refused(404, "Not Found")
        return row

    def related(self, kind: str, values: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The row ``values[key]`` names, or a 422 as Harvest answers an unknown reference."""
        item_id = _opt_int(values, key)
        if item_id is None:
            raise _blank(key)
        row = self.rows[kind].get(item_id)
        if row is None:
            raise _Refused(422, f"{key.removesuffix('_id').capitalize()} is not valid")
        return row

    def name_of(self, kind: str, item_id: int | None, *fields: str) -> dict[str, Any] | None:
        row = self.rows[kind].get(item_id) if item_id is not None else None
        if row is None:
            return None
        if kind == "users":
            return {"id": row["id"], "name": f"{row['first_name']} {row['last_name']}"}
        return {"id": row["id"], **{name: row.get(name) for name in fields}}

    def assignment(self, project_id: int, user_id: int) -> dict[str, Any] | None:
        for row in self.rows["user_assignments"].values():
            if row["project_id"] == project_id and row["user_id"] == user_id:
                return row
        return None


def _stamps(row: Mapping[str, Any]) -> dict[str, str]:
    return {"created_at": _stamp(row["created_at"]), "updated_at": _stamp(row["updated_at"])}


def _newest(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["created_at"], row["id"])


def _latest_spent(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["spent_date"], row["created_at"], row["id"])


def _check_client(store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    name = _text(row, "name")
    _opt_text(row, "address")
    _opt_text(row, "currency")
    if not isinstance(row.get("is_active"), bool):
        raise _invalid("is_active")
    folded = name.strip().casefold()
    for other in store.rows["clients"].values():
        if other["id"] != row.get("id") and other["name"].strip().casefold() == folded:
            raise _Refused(422, "Name has already been taken")
    if old is None:
        row["statement_key"] = secrets.token_hex(16)
        row["currency"] = row.get("currency") or "USD"


def _render_client(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "is_active", "address", "statement_key", "currency")
    return {**{key: row.get(key) for key in keys}, **_stamps(row)}


_PROJECT_FIELDS = (
    "name",
    "code",
    "is_active",
    "is_billable",
    "is_fixed_fee",
    "bill_by",
    "hourly_rate",
    "budget",
    "budget_by",
    "budget_is_monthly",
    "notify_when_over_budget",
    "over_budget_notification_percentage",
    "show_budget_to_all",
    "cost_budget",
    "cost_budget_include_expenses",
    "fee",
    "notes",
    "starts_on",
    "ends_on",
)


def _check_project(store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    store.related("clients", row, "client_id")
    _text(row, "name")
    for key in ("code", "notes"):
        _opt_text(row, key)
    for key in ("hourly_rate", "budget", "cost_budget", "fee"):
        _opt_number(row, key)
    for key in ("is_active", "is_billable", "is_fixed_fee"):
        _flag(row, key)
    if row.get("bill_by") not in _BILL_BY:
        raise _invalid("bill_by")
    if row.get("budget_by") not in _BUDGET_BY:
        raise _invalid("budget_by")
    for key in ("starts_on", "ends_on"):
        text = _opt_text(row, key)
        if text is not None:
            try:
                date.fromisoformat(text)
            except ValueError:
                raise _invalid(key) from None


def _render_project(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "client": store.name_of("clients", row["client_id"], "name", "currency"),
        **{key: row.get(key) for key in _PROJECT_FIELDS},
        "over_budget_notification_date": None,
        **_stamps(row),
    }


def _check_task(store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    _text(row, "name")
    _opt_number(row, "default_hourly_rate")
    for key in ("billable_by_default", "is_default", "is_active"):
        _flag(row, key)


def _render_task(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "billable_by_default", "default_hourly_rate", "is_default", "is_active")
    return {**{key: row.get(key) for key in keys}, **_stamps(row)}


_USER_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "telephone",
    "timezone",
    "has_access_to_all_future_projects",
    "is_contractor",
    "is_active",
    "weekly_capacity",
    "default_hourly_rate",
    "cost_rate",
    "roles",
    "access_roles",
)


def _check_user(store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    _text(row, "first_name")
    _text(row, "last_name")
    email = _text(row, "email")
    for key in ("default_hourly_rate", "cost_rate"):
        _opt_number(row, key)
    for other in store.rows["users"].values():
        if other["id"] != row.get("id") and other["email"].casefold() == email.casefold():
            raise _Refused(422, "Email has already been taken")


def _render_user(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        **{key: row.get(key) for key in _USER_FIELDS},
        "avatar_url": None,
        **_stamps(row),
    }


def _check_user_assignment(
    store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None
) -> None:
    store.related("projects", row, "project_id")
    store.related("users", row, "user_id")
    _opt_number(row, "hourly_rate")
    _opt_number(row, "budget")
    if old is None and store.assignment(row["project_id"], row["user_id"]) is not None:
        raise _Refused(422, "User is already assigned to this project")


def _render_user_assignment(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("is_active", "is_project_manager", "use_default_rates", "hourly_rate", "budget")
    return {
        "id": row["id"],
        "project": store.name_of("projects", row["project_id"], "name", "code"),
        "user": store.name_of("users", row["user_id"]),
        **{key: row.get(key) for key in keys},
        **_stamps(row),
    }


def _default_user(store: _Store, row: dict[str, Any]) -> None:
    """Harvest defaults ``user_id`` to the token's user; here, the oldest active user."""
    if row.get("user_id") is None:
        active = sorted(u["id"] for u in store.rows["users"].values() if u["is_active"])
        if not active:
            raise _blank("user_id")
        row["user_id"] = active[0]


def _check_locked(old: Mapping[str, Any] | None) -> None:
    if old is not None and old.get("is_locked"):
        raise _Refused(422, f"This entry is locked and cannot be edited: {old['locked_reason']}")


def _check_time_entry(store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    _check_locked(old)
    store.related("projects", row, "project_id")
    store.related("tasks", row, "task_id")
    _default_user(store, row)
    store.related("users", row, "user_id")
    row["spent_date"] = _spent_date(row)
    _opt_text(row, "notes")
    hours = _opt_number(row, "hours")
    if hours is not None and not 0 <= hours <= 24:
        raise _Refused(422, "Hours must be between 0 and 24")
    reference = row.get("external_reference")
    if reference is not None:
        if not isinstance(reference, dict) or not all(
            value is None or isinstance(value, str) for value in reference.values()
        ):
            raise _invalid("external_reference")
        permalink = reference.get("permalink")
        row["external_reference"] = {
            "id": reference.get("id"),
            "group_id": reference.get("group_id"),
            "account_id": reference.get("account_id"),
            "permalink": permalink,
            "service": urlparse(permalink).hostname if permalink else None,
            "service_icon_url": None,
        }
    if old is None:
        # Without hours or start/end times Harvest starts a timer.
        running = hours is None and row.get("started_time") is None
        row.update(
            is_running=running,
            timer_started_at=store.now() if running else None,
            is_locked=False,
            locked_reason=None,
            is_closed=False,
            is_billed=False,
            invoice=None,
        )
    row["hours"] = round(hours or 0.0, 2)


def _billable_rate(store: _Store, entry: Mapping[str, Any]) -> float | None:
    project = store.rows["projects"][entry["project_id"]]
    if project["bill_by"] == "Project":
        rate: float | None = project.get("hourly_rate")
        return rate
    if project["bill_by"] == "Tasks":
        rate = store.rows["tasks"][entry["task_id"]].get("default_hourly_rate")
        return rate
    if project["bill_by"] == "People":
        assigned = store.assignment(entry["project_id"], entry["user_id"])
        if assigned is not None and not assigned["use_default_rates"]:
            rate = assigned.get("hourly_rate")
            return rate
        rate = store.rows["users"][entry["user_id"]].get("default_hourly_rate")
        return rate
    return None


def _render_time_entry(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    project = store.rows["projects"][row["project_id"]]
    task = store.rows["tasks"][row["task_id"]]
    assigned = store.assignment(row["project_id"], row["user_id"])
    billable = bool(project["is_billable"] and task["billable_by_default"])
    return {
        "id": row["id"],
        "spent_date": row["spent_date"],
        "user": store.name_of("users", row["user_id"]),
        "user_assignment": None if assigned is None else _render_user_assignment(store, assigned),
        "client": store.name_of("clients", project["client_id"], "name"),
        "project": store.name_of("projects", row["project_id"], "name"),
        "task": store.name_of("tasks", row["task_id"], "name"),
        "task_assignment": None,
        "external_reference": row.get("external_reference"),
        "invoice": row.get("invoice"),
        "hours": row["hours"],
        "hours_without_timer": row["hours"],
        "rounded_hours": row["hours"],
        "notes": row.get("notes"),
        "is_locked": row["is_locked"],
        "locked_reason": row["locked_reason"],
        "is_closed": row["is_closed"],
        "is_billed": row["is_billed"],
        "timer_started_at": (
            _stamp(row["timer_started_at"]) if row.get("timer_started_at") else None
        ),
        "started_time": row.get("started_time"),
        "ended_time": row.get("ended_time"),
        "is_running": row["is_running"],
        "billable": billable,
        "budgeted": True,
        "billable_rate": _billable_rate(store, row) if billable else None,
        "cost_rate": store.rows["users"][row["user_id"]].get("cost_rate"),
        **_stamps(row),
    }


def _check_expense_category(
    store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None
) -> None:
    _text(row, "name")
    _opt_text(row, "unit_name")
    _opt_number(row, "unit_price")


def _render_expense_category(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "unit_name", "unit_price", "is_active")
    return {**{key: row.get(key) for key in keys}, **_stamps(row)}


def _check_expense(store: _Store, row: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    _check_locked(old)
    store.related("projects", row, "project_id")
    category = store.related("expense_categories", row, "expense_category_id")
    _default_user(store, row)
    store.related("users", row, "user_id")
    row["spent_date"] = _spent_date(row)
    _opt_text(row, "notes")
    units = _opt_int(row, "units")
    total = _opt_number(row, "total_cost")
    if total is None:
        if units is None or category.get("unit_price") is None:
            raise _blank("total_cost")
        total = units * float(category["unit_price"])
    row["total_cost"] = round(total, 2)
    if not isinstance(row.get("billable"), bool):
        raise _invalid("billable")
    if old is None:
        row.update(is_closed=False, is_locked=False, is_billed=False, locked_reason=None)
        row["invoice"] = None


def _render_expense(store: _Store, row: Mapping[str, Any]) -> dict[str, Any]:
    project = store.rows["projects"][row["project_id"]]
    category = store.rows["expense_categories"][row["expense_category_id"]]
    assigned = store.assignment(row["project_id"], row["user_id"])
    price = category.get("unit_price")
    return {
        "id": row["id"],
        "client": store.name_of("clients", project["client_id"], "name", "currency"),
        "project": store.name_of("projects", row["project_id"], "name", "code"),
        "expense_category": {
            "id": category["id"],
            "name": category["name"],
            "unit_price": None if price is None else f"{price:.2f}",
            "unit_name": category.get("unit_name"),
        },
        "user": store.name_of("users", row["user_id"]),
        "user_assignment": None if assigned is None else _render_user_assignment(store, assigned),
        "receipt": None,
        "invoice": row.get("invoice"),
        "notes": row.get("notes"),
        "units": row.get("units"),
        "total_cost": row["total_cost"],
        "billable": row["billable"],
        "is_closed": row["is_closed"],
        "is_locked": row["is_locked"],
        "is_billed": row["is_billed"],
        "locked_reason": row["locked_reason"],
        "spent_date": row["spent_date"],
        **_stamps(row),
    }


_KINDS: dict[str, _Kind] = {
    "clients": _Kind(
        {"name": None, "is_active": True, "address": None, "currency": None},
        ("name",),
        _check_client,
        _render_client,
        _newest,
    ),
    "projects": _Kind(
        {
            "client_id": None,
            "name": None,
            "code": None,
            "is_active": True,
            "is_billable": None,
            "is_fixed_fee": False,
            "bill_by": None,
            "hourly_rate": None,
            "budget": None,
            "budget_by": None,
            "budget_is_monthly": False,
            "notify_when_over_budget": False,
            "over_budget_notification_percentage": 80.0,
            "show_budget_to_all": False,
            "cost_budget": None,
            "cost_budget_include_expenses": False,
            "fee": None,
            "notes": None,
            "starts_on": None,
            "ends_on": None,
        },
        ("client_id", "name", "is_billable", "bill_by", "budget_by"),
        _check_project,
        _render_project,
        _newest,
    ),
    "tasks": _Kind(
        {
            "name": None,
            "billable_by_default": True,
            "default_hourly_rate": None,
            "is_default": False,
            "is_active": True,
        },
        ("name",),
        _check_task,
        _render_task,
        _newest,
    ),
    "users": _Kind(
        {
            "first_name": None,
            "last_name": None,
            "email": None,
            "telephone": "",
            "timezone": "Etc/UTC",
            "has_access_to_all_future_projects": False,
            "is_contractor": False,
            "is_active": True,
            "weekly_capacity": 126000,
            "default_hourly_rate": None,
            "cost_rate": None,
            "roles": [],
            "access_roles": ["member"],
        },
        ("first_name", "last_name", "email"),
        _check_user,
        _render_user,
        _newest,
    ),
    "user_assignments": _Kind(
        {
            "project_id": None,
            "user_id": None,
            "is_active": True,
            "is_project_manager": False,
            "use_default_rates": True,
            "hourly_rate": None,
            "budget": None,
        },
        ("project_id", "user_id"),
        _check_user_assignment,
        _render_user_assignment,
        _newest,
    ),
    "time_entries": _Kind(
        {
            "user_id": None,
            "project_id": None,
            "task_id": None,
            "spent_date": None,
            "started_time": None,
            "ended_time": None,
            "hours": None,
            "notes": None,
            "external_reference": None,
        },
        ("project_id", "task_id", "spent_date"),
        _check_time_entry,
        _render_time_entry,
        _latest_spent,
    ),
    "expense_categories": _Kind(
        {"name": None, "unit_name": None, "unit_price": None, "is_active": True},
        ("name",),
        _check_expense_category,
        _render_expense_category,
        _newest,
    ),
    "expenses": _Kind(
        {
            "user_id": None,
            "project_id": None,
            "expense_category_id": None,
            "spent_date": None,
            "units": None,
            "total_cost": None,
            "notes": None,
            "billable": True,
        },
        ("project_id", "expense_category_id", "spent_date"),
        _check_expense,
        _render_expense,
        _latest_spent,
    ),
}

# Query filters of each list: parameter -> (parse, predicate on the raw row).
_Filter = Callable[[_Store, Mapping[str, Any], Any], bool]


def _field_is(field: str) -> _Filter:
    return lambda _store, row, value: bool(row.get(field) == value)


def _client_is(store: _Store, row: Mapping[str, Any], value: Any) -> bool:
    return bool(store.rows["projects"][row["project_id"]]["client_id"] == value)


def _reference_is(store: _Store, row: Mapping[str, Any], value: Any) -> bool:
    reference = row.get("external_reference") or {}
    return bool(reference.get("id") == value)


def _from(store: _Store, row: Mapping[str, Any], value: Any) -> bool:
    return bool(row["spent_date"] >= value)


def _to(store: _Store, row: Mapping[str, Any], value: Any) -> bool:
    return bool(row["spent_date"] <= value)


_SOURCE_FILTERS: dict[str, tuple[str, _Filter]] = {
    "user_id": ("int", _field_is("user_id")),
    "client_id": ("int", _client_is),
    "project_id": ("int", _field_is("project_id")),
    "is_billed": ("bool", _field_is("is_billed")),
    "from": ("date", _from),
    "to": ("date", _to),
}
_FILTERS: dict[str, dict[str, tuple[str, _Filter]]] = {
    "clients": {"is_active": ("bool", _field_is("is_active"))},
    "projects": {
        "is_active": ("bool", _field_is("is_active")),
        "client_id": ("int", _field_is("client_id")),
    },
    "tasks": {"is_active": ("bool", _field_is("is_active"))},
    "users": {"is_active": ("bool", _field_is("is_active"))},
    "user_assignments": {
        "is_active": ("bool", _field_is("is_active")),
        "user_id": ("int", _field_is("user_id")),
    },
    "expense_categories": {"is_active": ("bool", _field_is("is_active"))},
    "time_entries": {
        **_SOURCE_FILTERS,
        "task_id": ("int", _field_is("task_id")),
        "external_reference_id": ("text", _reference_is),
        "is_running": ("bool", _field_is("is_running")),
    },
    "expenses": dict(_SOURCE_FILTERS),
}


def _parse_query(kind: str, name: str, text: str) -> Any:
    if kind == "int":
        if not re.fullmatch(r"-?\d+", text):
            raise _Refused(400, f"{name} must be an integer")
        return int(text)
    if kind == "bool":
        if text not in ("true", "false"):
            raise _Refused(400, f"{name} must be true or false")
        return text == "true"
    if kind == "date":
        return _day(text, name).isoformat()
    return text


_CURSOR_KINDS = frozenset(
    {"clients", "projects", "tasks", "users", "user_assignments", "expense_categories"}
)
"""Lists whose description declares a ``cursor`` parameter (and deprecates ``page``)."""


def _cursor(row: Mapping[str, Any]) -> str:
    text = json.dumps([_stamp(row["created_at"]), row["id"]])
    return base64.urlsafe_b64encode(text.encode()).decode()


def _after(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, item_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return _moment(str(stamp), "cursor"), int(item_id)
    except (ValueError, TypeError):
        raise _Refused(400, "cursor is not valid") from None


# -- fault and quota gate --------------------------------------------------------------------


class _Window:
    """A sliding-window request limit per key (Harvest: 100 per 15 s per token)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> float | None:
        """``None`` when the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.seconds - now
            hits.append(now)
            return None


async def _answer(
    send: Send, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(data)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class _Gate:
    """ASGI middleware in front of the routes: counting, auth, quota and faults.

    It sits in front of routing because Harvest checks the token and the quota
    before it looks at what is asked, and because a lost response must be made
    after the write was applied, which only the outermost layer can do.
    """

    def __init__(self, app: ASGIApp, stand_in: HarvestStandIn) -> None:
        self.app = app
        self.stand_in = stand_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stand_in = self.stand_in
        method: str = scope["method"]
        stand_in._count("requests", f"{method} {_DIGITS.sub('/{id}', scope['path'])}")
        faults = stand_in.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if "user-agent" in headers:
            stand_in._saw_agent(headers["user-agent"])
        token = headers.get("authorization", "")
        account = headers.get("harvest-account-id", "")
        if token != f"Bearer {stand_in.token}" or account != stand_in.account_id:
            stand_in._count("unauthorized")
            await _answer(send, 401, _UNAUTHORISED)
            return
        wait = stand_in._window.admit(f"{token}|{account}")
        if wait is not None:
            stand_in._count("throttled")
            after = str(max(1, math.ceil(wait)))
            body = {"code": 429, "message": f"Too Many Requests; retry in {after} seconds"}
            await _answer(send, 429, body, {"Retry-After": after})
            return
        roll = stand_in._roll()
        if roll < faults.error_rate:
            stand_in._count("errors")
            await _answer(send, 503, {"code": 503, "message": "Service Unavailable"})
            return
        if roll < faults.error_rate + faults.throttle_rate:
            stand_in._count("throttled")
            after = f"{faults.retry_after:g}"
            body = {"code": 429, "message": "Too Many Requests"}
            await _answer(send, 429, body, {"Retry-After": after})
            return
        if method not in ("POST", "PATCH") or stand_in._roll() >= faults.lost_response_rate:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = held[0] if held else None
        if start is None or start.get("status", 500) >= 300:
            for message in held:  # a refused write applied nothing: answer it normally
                await send(message)
            return
        stand_in._count("lost")
        await send(start)
        raise _ConnectionDropped("write applied; response deliberately lost")


# -- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    """Ids created by :meth:`HarvestStandIn.seed`, oldest first."""

    clients: tuple[int, ...]
    projects: tuple[int, ...]
    tasks: tuple[int, ...]
    users: tuple[int, ...]
    user_assignments: tuple[int, ...]
    time_entries: tuple[int, ...]
    expense_categories: tuple[int, ...]
    expenses: tuple[int, ...]


def _system_clock() -> datetime:
    return datetime.now(UTC)


class HarvestStandIn(ServedStandIn):
    """The Harvest stand-in, served by uvicorn on loopback in a background thread.

    ``clock`` is read for every ``created_at``/``updated_at``; tests freeze it to
    make many records share one stamp, as they do at Harvest within a second.
    ``faults`` may be replaced at any time; it applies to the next request.
    """

    url_path = "/v2"

    def __init__(
        self,
        *,
        token: str = "sandbox-token",
        account_id: str = "1234567",
        rate_limit: int = 100,
        rate_window: float = 15.0,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], datetime] = _system_clock,
        updated_since_inclusive: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.account_id = account_id
        self.faults = faults or Faults()
        self.updated_since_inclusive = updated_since_inclusive
        self.host = host
        self._store = _Store(clock)
        self._window = _Window(rate_limit, rate_window)
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._agents: set[str] = set()
        self._counter_lock = threading.Lock()
        self._port: int | None = None
        self.app = self._build_app()
        self._served = BackgroundServer(self.app, name="Harvest stand-in", host=self.host)

    # -- observation -----------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """Requests seen: ``requests``, per ``"METHOD /v2/path/{id}"``, ``throttled``,
        ``errors``, ``lost`` and ``unauthorized``."""
        with self._counter_lock:
            return dict(self._counters)

    @property
    def user_agents(self) -> frozenset[str]:
        with self._counter_lock:
            return frozenset(self._agents)

    def records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of ``kind`` as the API renders it, oldest first."""
        spec = _KINDS[kind]
        with self._store.lock:
            rows = sorted(self._store.rows[kind].values(), key=lambda row: row["id"])
            return [spec.render(self._store, row) for row in rows]

    def _count(self, *names: str) -> None:
        with self._counter_lock:
            self._counters.update(names)

    def _saw_agent(self, agent: str) -> None:
        with self._counter_lock:
            self._agents.add(agent)

    def _roll(self) -> float:
        with self._random_lock:
            return self._random.random()

    # -- state, shared by the routes and the seeding helpers --------------------------------

    def create(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a record as ``POST /v2/<kind>`` would, and return it rendered."""
        spec = _KINDS[kind]
        store = self._store
        with store.lock:
            for key in spec.required:
                if body.get(key) is None:
                    raise _blank(key)
            row: dict[str, Any] = copy.deepcopy(dict(spec.writable))
            row.update((key, body[key]) for key in spec.writable if key in body)
            spec.check(store, row, None)
            now = store.now()
            row.update(id=store.new_id(kind), created_at=now, updated_at=now)
            store.rows[kind][row["id"]] = row
            return spec.render(store, row)

    def update(self, kind: str, item_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """Change a record as ``PATCH /v2/<kind>/<id>`` would, and return it rendered."""
        spec = _KINDS[kind]
        store = self._store
        with store.lock:
            old = store.get(kind, item_id)
            row = {**old, **{key: body[key] for key in spec.writable if key in body}}
            spec.check(store, row, old)
            row["updated_at"] = store.now()
            store.rows[kind][item_id] = row
            return spec.render(store, row)

    def _mark(self, kind: str, item_id: int, **fields: Any) -> dict[str, Any]:
        if kind not in ("time_entries", "expenses"):
            raise ValueError(f"only time entries and expenses are approved or billed, not {kind}")
        store = self._store
        with store.lock:
            row = store.get(kind, item_id)
            row.update(fields, updated_at=store.now())
            return _KINDS[kind].render(store, row)

    def approve(self, kind: str, item_id: int) -> dict[str, Any]:
        """Extension: approve a time entry or expense, as Timesheet Approval does in the UI."""
        return self._mark(
            kind, item_id, is_closed=True, is_locked=True, locked_reason=APPROVED_REASON
        )

    def mark_billed(self, kind: str, item_id: int, number: str = "1001") -> dict[str, Any]:
        """Extension: mark a record invoiced (Harvest does so when an invoice takes it)."""
        with self._store.lock:
            invoice = {"id": self._store.new_id("invoices"), "number": number}
            return self._mark(
                kind,
                item_id,
                is_billed=True,
                is_closed=True,
                is_locked=True,
                locked_reason=INVOICED_REASON,
                invoice=invoice,
            )

    def seed(
        self,
        *,
        clients: int = 1,
        projects_per_client: int = 1,
        tasks: int = 1,
        users: int = 1,
        time_entries: int = 0,
        expenses: int = 0,
        spent_date: date = date(2024, 1, 15),
        currency: str = "EUR",
    ) -> Seeded:
        """Create a small, consistent account: every user assigned to every project,
        time entries and expenses spread round-robin over them."""
        with self._store.lock:  # seeded as one step: no request sees half of it
            made: dict[str, list[int]] = {kind: [] for kind in _KINDS}

            def add(kind: str, body: Mapping[str, Any]) -> int:
                item_id = int(self.create(kind, body)["id"])
                made[kind].append(item_id)
                return item_id

            start = len(self._store.rows["clients"])
            for c in range(clients):
                client = add("clients", {"name": f"Client {start + c + 1}", "currency": currency})
                for p in range(projects_per_client):
                    add(
                        "projects",
                        {
                            "client_id": client,
                            "name": f"Project {start + c + 1}.{p + 1}",
                            "code": f"P{start + c + 1:03d}{p + 1}",
                            "is_billable": True,
                            "bill_by": "Project",
                            "hourly_rate": 150.0,
                            "budget_by": "none",
                        },
                    )
            base = len(self._store.rows["users"])
            for u in range(users):
                add(
                    "users",
                    {
                        "first_name": "Person",
                        "last_name": str(base + u + 1),
                        "email": f"person{base + u + 1}@example.com",
                        "cost_rate": 60.0,
                    },
                )
            for _ in range(tasks):
                add("tasks", {"name": f"Task {len(self._store.rows['tasks']) + 1}"})
            for project in made["projects"]:
                for user in made["users"]:
                    add("user_assignments", {"project_id": project, "user_id": user})
            if expenses:
                add("expense_categories", {"name": "Travel", "unit_name": None})
            for i in range(time_entries):
                add(
                    "time_entries",
                    {
                        "project_id": made["projects"][i % len(made["projects"])],
                        "task_id": made["tasks"][i % len(made["tasks"])],
                        "user_id": made["users"][i % len(made["users"])],
                        "spent_date": (spent_date - timedelta(days=i % 5)).isoformat(),
                        "hours": 0.25 * (1 + i % 16),
                        "notes": f"Work item {i + 1}",
                    },
                )
            for i in range(expenses):
                add(
                    "expenses",
                    {
                        "project_id": made["projects"][i % len(made["projects"])],
                        "user_id": made["users"][i % len(made["users"])],
                        "expense_category_id": made["expense_categories"][0],
                        "spent_date": spent_date.isoformat(),
                        "total_cost": 12.5 + i,
                        "notes": f"Taxi {i + 1}",
                    },
                )
            return Seeded(**{kind: tuple(ids) for kind, ids in made.items()})

    # -- HTTP ------------------------------------------------------------------------------

    def _list(self, kind: str, request: Request, **fixed: Any) -> dict[str, Any]:
        """One page of a list, by ``cursor`` where the description declares it, else by
        ``page``. A cursor names the last record returned, so records created or
        deleted meanwhile shift nothing; ``page`` (deprecated there) still works."""
        params = request.query_params
        filters: list[tuple[_Filter, Any]] = [(_field_is(k), v) for k, v in fixed.items()]
        for name, (parse, predicate) in _FILTERS[kind].items():
            if name in params:
                filters.append((predicate, _parse_query(parse, name, params[name])))
        since = params.get("updated_since")
        floor = _moment(since, "updated_since") if since else None
        size = params.get("per_page")
        per_page = _parse_query("int", "per_page", size) if size else _MAX_PER_PAGE
        per_page = min(max(1, per_page), _MAX_PER_PAGE)
        cursored = kind in _CURSOR_KINDS and not fixed
        spec = _KINDS[kind]
        store = self._store
        with store.lock:
            rows = [
                row
                for row in store.rows[kind].values()
                if all(predicate(store, row, value) for predicate, value in filters)
                and (
                    floor is None
                    or row["updated_at"] > floor
                    or (self.updated_since_inclusive and row["updated_at"] == floor)
                )
            ]
            rows.sort(key=spec.order, reverse=True)
            if cursored and params.get("cursor"):
                after = _after(params["cursor"])
                offset = next((i for i, row in enumerate(rows) if _newest(row) < after), len(rows))
            else:
                page = _parse_query("int", "page", params["page"]) if "page" in params else 1
                offset = (max(1, page) - 1) * per_page
            chosen = rows[offset : offset + per_page]
            rendered = [spec.render(store, row) for row in chosen]
        page = offset // per_page + 1
        total_pages = max(1, math.ceil(len(rows) / per_page))
        more = offset + per_page < len(rows)
        kept = [(k, v) for k, v in params.multi_items() if k not in ("page", "per_page", "cursor")]

        def link(**where: str) -> str:
            query = urlencode([*kept, *where.items(), ("per_page", str(per_page))])
            return f"{str(request.base_url).rstrip('/')}{request.url.path}?{query}"

        following: str | None = None
        if more:
            following = link(cursor=_cursor(chosen[-1])) if cursored else link(page=str(page + 1))
        return {
            kind: rendered,
            "per_page": per_page,
            "total_pages": total_pages,
            "total_entries": len(rows),
            "next_page": page + 1 if more else None,
            "previous_page": page - 1 if page > 1 else None,
            "page": page,
            "links": {
                "first": link() if cursored else link(page="1"),
                "next": following,
                "previous": link(page=str(page - 1)) if page > 1 else None,
                "last": link(page=str(total_pages)),
            },
        }

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="Harvest API v2 stand-in", openapi_url=None, docs_url=None, redoc_url=None
        )
        app.add_exception_handler(_Refused, _refused)
        app.add_exception_handler(StarletteHTTPException, _http_error)
        app.add_middleware(_Gate, stand_in=self)

        async def me(request: Request) -> JSONResponse:
            with self._store.lock:
                users = sorted(self._store.rows["users"].values(), key=lambda row: row["id"])
                if not users:
                    raise _Refused(404, "Not Found")
                return JSONResponse(_render_user(self._store, users[0]))

        app.add_api_route("/v2/users/me", me, methods=["GET"])
        for kind in _KINDS:
            self._routes(app, kind)

        async def nested_list(request: Request) -> JSONResponse:
            project = _item_id(request, "project_id")
            with self._store.lock:
                self._store.get("projects", project)
            return JSONResponse(self._list("user_assignments", request, project_id=project))

        async def nested_create(request: Request) -> JSONResponse:
            project = _item_id(request, "project_id")
            body = {**await _body(request), "project_id": project}
            return JSONResponse(self.create("user_assignments", body), status_code=201)

        nested = "/v2/projects/{project_id}/user_assignments"
        app.add_api_route(nested, nested_list, methods=["GET"])
        app.add_api_route(nested, nested_create, methods=["POST"])
        return app

    def _routes(self, app: FastAPI, kind: str) -> None:
        async def listing(request: Request) -> JSONResponse:
            return JSONResponse(self._list(kind, request))

        async def creating(request: Request) -> JSONResponse:
            return JSONResponse(self.create(kind, await _body(request)), status_code=201)

        async def reading(request: Request) -> JSONResponse:
            spec = _KINDS[kind]
            with self._store.lock:
                row = self._store.get(kind, _item_id(request, "item_id"))
                return JSONResponse(spec.render(self._store, row))

        async def updating(request: Request) -> JSONResponse:
            body = await _body(request)
            return JSONResponse(self.update(kind, _item_id(request, "item_id"), body))

        app.add_api_route(f"/v2/{kind}", listing, methods=["GET"])
        if kind == "user_assignments":  # created and changed under their project only
            return
        app.add_api_route(f"/v2/{kind}", creating, methods=["POST"])
        app.add_api_route(f"/v2/{kind}/{{item_id}}", reading, methods=["GET"])
        app.add_api_route(f"/v2/{kind}/{{item_id}}", updating, methods=["PATCH"])


def _item_id(request: Request, name: str) -> int:
    text = str(request.path_params[name])
    if not text.isdigit():
        raise _Refused(404, "Not Found")
    return int(text)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _Refused(400, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "The request body must be a JSON object")
    return body


def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, _Refused)
    return JSONResponse({"code": exc.status, "message": exc.message}, status_code=exc.status)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {"code": exc.status_code, "message": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code)
