"""A stand-in for NetSuite's SuiteTalk REST web services, over real HTTP, with injected faults.

NetSuite publishes no machine-readable description of its REST API (each
account serves its own metadata catalogue), so this stand-in keeps to what
NetSuite documents, and says where it simplifies:

* **Auth.** Token-based authentication: every request carries ``Authorization:
  OAuth realm="ACCOUNT", …`` signed with HMAC-SHA256 (RFC 5849, verified with
  :mod:`accord.connectors.netsuite.auth`). A wrong realm, key, token or
  signature, an unsupported method, a timestamp more than ``timestamp_tolerance``
  seconds from the stand-in's clock, or a nonce already used by that token is a
  401 ``INVALID_LOGIN``.
* **Records** under ``/services/rest/record/v1``: ``subsidiary``, ``customer``,
  ``job`` (project), ``invoice``, ``creditMemo`` and ``customerPayment``, each
  with ``id`` (internal id), ``externalId`` and ``lastModifiedDate`` (whole
  seconds, UTC). References are ``{"id": …}``; an invoice's and a credit
  memo's lines are the ``item`` sublist (``{"items": [...]}``); a payment's
  applications the ``apply`` sublist. Money is a JSON number in major units,
  read and written as exact decimals. Subsidiary ``1``, currencies ``1`` USD,
  ``2`` GBP, ``3`` CAD, ``4`` EUR, ``5`` JPY and service items ``1`` and ``2`` exist
  from the start. A line's tax is its ``tax1Amt``, added on top of its
  ``amount``; a transaction's read-only ``taxTotal`` is their sum and its
  ``total`` the lines' amounts plus ``taxTotal`` (tax codes and rates are not
  modelled: the amount of tax is given).
* ``POST /record/v1/{type}`` creates: ``204`` with the new record's URL in
  ``Location``. ``GET``, ``PATCH`` (``204``) and ``DELETE`` (``204``) on
  ``/record/v1/{type}/{id}``, and the same with ``eid:{externalId}`` in place of
  the id. ``PUT /record/v1/{type}/eid:{externalId}`` upserts: it creates the
  record with that external id, or updates the one that has it; ``204`` with
  ``Location`` either way. ``expandSubResources=true`` on a ``GET`` returns
  sublists inline, otherwise as links.
* ``GET /record/v1/{type}?q=…&limit=&offset=`` lists ids and links (``items``,
  ``count``, ``hasMore``, ``offset``, ``totalResults``, ``links`` with ``next``);
  ``q`` supports ``lastModifiedDate ON_OR_AFTER|AFTER|ON_OR_BEFORE|BEFORE "…"``
  and ``externalId IS "…"``, joined by ``AND``.
* ``POST /services/rest/query/v1/suiteql?limit=&offset=`` with ``Prefer:
  transient`` runs one SuiteQL shape: ``SELECT * FROM {table} [WHERE c AND …]
  ORDER BY lastmodifieddate, id`` with conditions ``type = 'CustInvc'``,
  ``lastmodifieddate >=|>|= TO_TIMESTAMP('…', 'YYYY-MM-DD HH24:MI:SS')``, ``id >
  N`` and one parenthesised ``OR`` of those. Tables are ``subsidiary``,
  ``customer``, ``job`` and ``transaction`` (``type`` ``CustInvc``, ``CustCred``,
  ``CustPymt``). Rows are flat: lower-case columns (``foreigntotal``,
  ``foreignamountremaining``, ``taxtotal``), references as ids,
  checkboxes ``T``/``F``, no sublists. ``limit`` is at most 1,000 and ``offset``
  a multiple of it, as NetSuite requires.
* **Errors** are NetSuite's body ``{"type", "title", "status", "o:errorDetails":
  [{"detail", "o:errorCode"}]}``: ``USER_ERROR`` (a required or unknown field,
  a bad value), ``INVALID_KEY_OR_REF`` (a reference to nothing),
  ``NONEXISTENT_ID`` (404), ``INVALID_PARAMETER`` (bad query parameters or
  SuiteQL), ``INVALID_CONTENT`` (a body that is not JSON), ``INVALID_LOGIN``
  (401).
* **Concurrency.** The account has ``concurrency`` slots (15 by default); a
  request arriving while all are taken is refused at once with ``429
  SSS_REQUEST_LIMIT_EXCEEDED``, as NetSuite does (without ``Retry-After``).

Not modelled: the metadata catalogue, custom fields and records, workflows and
scripts, role permissions, approval routing, multi-book accounting, SuiteQL
beyond the shape above, and date formats by user preference (dates and
date-times are ISO 8601). Faults are those of
:class:`accord.sandbox.recorder.Faults`: added latency (inside a concurrency
slot), 503s, 429s with ``Retry-After``, and writes applied whose response is
lost (the connection closes before a byte is sent).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.connectors.netsuite import auth
from accord.connectors.netsuite.mapping import dumps, loads
from accord.errors import InvalidInput
from accord.sandbox.recorder import Faults
from accord.sandbox.serving import BackgroundServer, ServedStandIn

__all__ = ["CURRENCIES", "FIELDS", "ITEMS", "Faults", "NetSuiteStandIn", "error_body"]

RECORD_PREFIX = "/services/rest/record/v1"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
MAX_LIMIT = 1000

CURRENCIES: Mapping[str, str] = {"1": "USD", "2": "GBP", "3": "CAD", "4": "EUR", "5": "JPY"}
ITEMS: Mapping[str, str] = {"1": "Professional Services", "2": "Expense Reimbursement"}

# field kinds: text, bool, date, number, lines, apply, or ("ref", target)
_Kind = str | tuple[str, str]
FIELDS: Mapping[str, Mapping[str, _Kind]] = {
    "subsidiary": {
        "name": "text",
        "country": "text",
        "currency": ("ref", "currency"),
        "isInactive": "bool",
    },
    "customer": {
        "companyName": "text",
        "subsidiary": ("ref", "subsidiary"),
        "currency": ("ref", "currency"),
        "email": "text",
        "url": "text",
        "phone": "text",
        "isPerson": "bool",
        "isInactive": "bool",
    },
    "job": {
        "companyName": "text",
        "parent": ("ref", "customer"),
        "isInactive": "bool",
    },
    "invoice": {
        "entity": ("ref", "customer"),
        "subsidiary": ("ref", "subsidiary"),
        "currency": ("ref", "currency"),
        "tranDate": "date",
        "dueDate": "date",
        "otherRefNum": "text",
        "memo": "text",
        "item": "lines",
    },
    "creditMemo": {
        "entity": ("ref", "customer"),
        "subsidiary": ("ref", "subsidiary"),
        "currency": ("ref", "currency"),
        "createdFrom": ("ref", "invoice"),
        "tranDate": "date",
        "memo": "text",
        "item": "lines",
    },
    "customerPayment": {
        "customer": ("ref", "customer"),
        "currency": ("ref", "currency"),
        "payment": "number",
        "tranDate": "date",
        "memo": "text",
        "apply": "apply",
    },
}
"""Writable fields of every record type (``id``, ``externalId``, ``lastModifiedDate``,
and the computed ``tranId``, ``total``, ``taxTotal``, ``amountRemaining``, ``status``
are read-only)."""
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "subsidiary": ("name",),
    "customer": ("companyName", "subsidiary"),
    "job": ("companyName", "parent"),
    "invoice": ("entity", "item"),
    "creditMemo": ("entity", "item"),
    "customerPayment": ("customer", "payment"),
}
_TRANSACTIONS: Mapping[str, tuple[str, str]] = {
    "invoice": ("CustInvc", "INV"),
    "creditMemo": ("CustCred", "CM"),
    "customerPayment": ("CustPymt", "PYMT"),
}
_TABLES = {"subsidiary", "customer", "job", "transaction"}
_LINE_FIELDS = {"item", "quantity", "rate", "amount", "description", "tax1Amt"}
_APPLY_FIELDS = {"doc", "apply", "amount"}
_READ_ONLY = {"id", "externalId", "lastModifiedDate", "links", "tranId", "total", "taxTotal"}
_READ_ONLY |= {"amountRemaining", "status", "refName"}
_TITLES = {
    400: ("Bad Request", "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1"),
    401: ("Unauthorized", "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2"),
    404: ("Not Found", "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5"),
    405: ("Method Not Allowed", "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.6"),
    429: ("Too Many Requests", "https://www.rfc-editor.org/rfc/rfc6585.html#section-4"),
    500: ("Internal Server Error", "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1"),
    503: ("Service Unavailable", "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.4"),
}
_LOGIN_DETAIL = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI "
    "at Setup > Users/Roles > User Management > View Login Audit Trail."
)
_SINGULAR = "application/vnd.oracle.resource+json; type=singular"
_COLLECTION = "application/vnd.oracle.resource+json; type=collection"
_ERROR = "application/vnd.oracle.resource+json; type=error"
_WITHHELD = "response withheld: lost-response fault injected by the NetSuite stand-in"

_TS = r"TO_TIMESTAMP\(\s*'([^']+)'\s*,\s*'YYYY-MM-DD HH24:MI:SS'\s*\)"
_SUITEQL = re.compile(
    r"^\s*SELECT\s+\*\s+FROM\s+(?P<table>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"\s+ORDER\s+BY\s+lastmodifieddate(?:\s+ASC)?\s*,\s*id(?:\s+ASC)?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = [
    ("type", re.compile(r"^type\s*=\s*'(\w+)'$", re.IGNORECASE)),
    ("stamp", re.compile(rf"^lastmodifieddate\s*(>=|>|=)\s*{_TS}$", re.IGNORECASE)),
    ("id", re.compile(r"^id\s*(>=|>|=)\s*(\d+)$", re.IGNORECASE)),
]
_LIST_Q = re.compile(
    r'^\s*(lastModifiedDate|externalId)\s+(ON_OR_AFTER|AFTER|ON_OR_BEFORE|BEFORE|IS)\s+"([^"]*)"\s*$'
)
_ID_SEGMENT = re.compile(r"^/(?P<type>\w+)/(?P<ident>eid:[^/]+|\d+)(?P<rest>/.*)?$")


class _Refused(Exception):
    """A request NetSuite would refuse: status, error code and detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def error_body(status: int, code: str, detail: str) -> dict[str, Any]:
    """NetSuite's error body (RFC 9457 problem details with ``o:errorDetails``)."""
    title, kind = _TITLES.get(status, ("Error", "about:blank"))
    return {
        "type": kind,
        "title": title,
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    }


def _system_clock() -> datetime:
    return datetime.now(UTC)


def _render_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_moment(text: str, field: str) -> datetime:
    value = text.strip()
    try:
        if re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", value):
            month, day, year = (int(part) for part in value.split("/"))
            return datetime(year, month, day, tzinfo=UTC)
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(
            400, "INVALID_PARAMETER", f"Invalid date value for {field}: {text}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _Refused(400, "USER_ERROR", f"Invalid number value for field {field}: {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise _Refused(400, "USER_ERROR", f"Invalid number value for field {field}")
    return number


class NetSuiteStandIn(ServedStandIn):
    """The NetSuite stand-in, served by uvicorn on loopback in a background thread.

    ``clock`` stamps ``lastModifiedDate`` and judges OAuth timestamps; tests
    freeze it so that many records share one stamp. ``faults`` and
    ``concurrency`` may be changed at any time.
    """

    def __init__(
        self,
        *,
        account_id: str = "1234567",
        consumer_key: str = "sandbox-consumer-key",
        consumer_secret: str = "sandbox-consumer-secret",
        token_id: str = "sandbox-token-id",
        token_secret: str = "sandbox-token-secret",
        concurrency: int = 15,
        timestamp_tolerance: float = 300.0,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], datetime] = _system_clock,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_id = account_id
        self.realm = account_id.strip().upper().replace("-", "_")
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.token_id = token_id
        self.token_secret = token_secret
        self.concurrency = concurrency
        self.timestamp_tolerance = timestamp_tolerance
        self.faults = faults or Faults()
        self.host = host
        self._clock = clock
        self._lock = threading.RLock()
        self._rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in FIELDS}
        self._next = 100
        self._numbers: Counter[str] = Counter()
        self._nonces: dict[tuple[str, str], float] = {}
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        self._inflight = 0
        self.peak_inflight = 0
        """The most requests ever in flight at once (refused ones included)."""
        self.app = self._build_app()
        self._served = BackgroundServer(
            _Gate(self.app, self), name="NetSuite stand-in", host=host, port=port, graceful=1
        )
        self._port: int | None = None
        self._rows["subsidiary"]["1"] = {
            "id": "1",
            "externalId": None,
            "name": "Parent Company",
            "country": "US",
            "currency": {"id": "1"},
            "isInactive": False,
            "lastModifiedDate": self._now(),
        }

    @property
    def credentials(self) -> dict[str, str]:
        """The token-based-auth credentials this stand-in accepts, as a connector takes them."""
        return {
            "account_id": self.account_id,
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "token_id": self.token_id,
            "token_secret": self.token_secret,
        }

    def now(self) -> float:
        """The stand-in's clock as epoch seconds (what a signer's clock must agree with)."""
        return self._clock().timestamp()

    # -- observation -----------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """``requests``; per ``"METHOD /path"`` with ``/services/rest`` dropped and the
        type, id and external id as ``{type}``, ``{id}`` and ``eid:{value}``;
        ``unauthorized``, ``over_concurrency``, ``errors``, ``throttled``, ``lost``."""
        with self._counter_lock:
            return dict(self._counters)

    def records(self, record_type: str) -> list[dict[str, Any]]:
        """Every record of a type, as ``GET …?expandSubResources=true`` renders it, by id."""
        with self._lock:
            rows = sorted(self._rows[self._type(record_type)].values(), key=lambda r: int(r["id"]))
            return [self._render(record_type, row, "", expand=True) for row in rows]

    def _count(self, *names: str) -> None:
        with self._counter_lock:
            self._counters.update(names)

    def _roll(self) -> float:
        with self._random_lock:
            return self._random.random()

    # -- auth --------------------------------------------------------------------------------

    def verify(self, method: str, url: str, header: str | None) -> None:
        """Check one request's OAuth 1.0a signature, timestamp and nonce; raise if refused."""
        if not header:
            raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL)
        try:
            oauth = auth.parse_authorization(header)
        except InvalidInput:
            raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL) from None
        if (
            oauth.realm != self.realm
            or oauth.consumer_key != self.consumer_key
            or oauth.token != self.token_id
            or oauth.signature_method != auth.SIGNATURE_METHOD
            or oauth.version != "1.0"
        ):
            raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL)
        expected = auth.sign(
            auth.base_string(method, url, oauth.protocol()), self.consumer_secret, self.token_secret
        )
        if not hmac.compare_digest(expected, oauth.signature):
            raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL)
        try:
            stamp = int(oauth.timestamp)
        except ValueError:
            raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL) from None
        now = self.now()
        if abs(now - stamp) > self.timestamp_tolerance:
            raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL)
        with self._lock:
            horizon = now - 2 * self.timestamp_tolerance
            if len(self._nonces) > 10_000:
                self._nonces = {k: t for k, t in self._nonces.items() if t >= horizon}
            key = (oauth.token, oauth.nonce)
            if key in self._nonces:
                raise _Refused(401, "INVALID_LOGIN", _LOGIN_DETAIL)
            self._nonces[key] = stamp

    # -- state -------------------------------------------------------------------------------

    @staticmethod
    def _type(name: str) -> str:
        if name not in FIELDS:
            raise _Refused(404, "INVALID_RCRD_TYPE", f"Record type '{name}' does not exist.")
        return name

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _find(self, record_type: str, ident: str) -> dict[str, Any]:
        rows = self._rows[self._type(record_type)]
        if ident.startswith("eid:"):
            value = ident[4:]
            for row in rows.values():
                if row.get("externalId") == value:
                    return row
        elif ident in rows:
            return rows[ident]
        raise _Refused(
            404,
            "NONEXISTENT_ID",
            f"The record instance does not exist. Provide a valid record instance ID: {ident}.",
        )

    def _exists(self, target: str, ident: str) -> bool:
        if target == "currency":
            return ident in CURRENCIES
        if target == "item":
            return ident in ITEMS
        return ident in self._rows[target]

    def _reference(self, value: Any, target: str, field: str) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise _Refused(
                400, "USER_ERROR", f"Invalid value for field {field}: expected a reference"
            )
        if value.get("id") is not None:
            ident = str(value["id"])
        elif value.get("externalId") is not None and target in self._rows:
            found = [
                r for r in self._rows[target].values() if r.get("externalId") == value["externalId"]
            ]
            if not found:
                raise _Refused(
                    400,
                    "INVALID_KEY_OR_REF",
                    f"Invalid {field} reference key {value['externalId']}.",
                )
            ident = str(found[0]["id"])
        else:
            raise _Refused(
                400, "USER_ERROR", f"Invalid value for field {field}: a reference needs id"
            )
        if not self._exists(target, ident):
            raise _Refused(400, "INVALID_KEY_OR_REF", f"Invalid {field} reference key {ident}.")
        return {"id": ident}

    def _lines(self, value: Any, field: str) -> list[dict[str, Any]]:
        items = value.get("items") if isinstance(value, Mapping) else None
        if not isinstance(items, list) or not items:
            raise _Refused(400, "USER_ERROR", f"You must enter at least one line item for {field}.")
        lines: list[dict[str, Any]] = []
        for index, line in enumerate(items):
            where = f"{field}.items[{index}]"
            if not isinstance(line, Mapping):
                raise _Refused(400, "USER_ERROR", f"Invalid value for {where}")
            unknown = sorted(set(line) - _LINE_FIELDS)
            if unknown:
                raise _Refused(400, "USER_ERROR", f"Unknown field {unknown[0]} in {where}.")
            if line.get("item") is None:
                raise _Refused(400, "USER_ERROR", f"Please enter value(s) for: Item ({where}).")
            quantity = _number(line.get("quantity", 1), f"{where}.quantity")
            rate = None if line.get("rate") is None else _number(line["rate"], f"{where}.rate")
            if line.get("amount") is not None:
                amount = _number(line["amount"], f"{where}.amount")
            elif rate is not None:
                amount = quantity * rate
            else:
                raise _Refused(400, "USER_ERROR", f"Please enter value(s) for: Amount ({where}).")
            row: dict[str, Any] = {
                "item": self._reference(line["item"], "item", f"{where}.item"),
                "quantity": quantity,
                "amount": amount,
            }
            if rate is not None:
                row["rate"] = rate
            if line.get("tax1Amt") is not None:
                row["tax1Amt"] = _number(line["tax1Amt"], f"{where}.tax1Amt")
            if line.get("description") is not None:
                row["description"] = str(line["description"])
            lines.append(row)
        return lines

    def _applications(self, value: Any) -> list[dict[str, Any]]:
        items = value.get("items") if isinstance(value, Mapping) else None
        if not isinstance(items, list):
            raise _Refused(400, "USER_ERROR", "Invalid value for field apply")
        applied: list[dict[str, Any]] = []
        for index, entry in enumerate(items):
            where = f"apply.items[{index}]"
            if not isinstance(entry, Mapping) or set(entry) - _APPLY_FIELDS:
                raise _Refused(400, "USER_ERROR", f"Invalid value for {where}")
            if entry.get("apply") is False:
                continue
            applied.append(
                {
                    "doc": self._reference(entry.get("doc"), "invoice", f"{where}.doc"),
                    "apply": True,
                    "amount": _number(entry.get("amount"), f"{where}.amount"),
                }
            )
        return applied

    def _values(self, record_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Checked and normalised field values of one write (no side effects)."""
        allowed = FIELDS[record_type]
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key in _READ_ONLY:
                continue
            kind = allowed.get(key)
            if kind is None:
                raise _Refused(
                    400, "USER_ERROR", f"Unknown field {key} on record type {record_type}."
                )
            if value is None:
                clean[key] = None
            elif isinstance(kind, tuple):
                clean[key] = self._reference(value, kind[1], key)
            elif kind == "text":
                clean[key] = str(value)
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise _Refused(400, "USER_ERROR", f"Invalid boolean value for field {key}")
                clean[key] = value
            elif kind == "date":
                try:
                    clean[key] = date.fromisoformat(str(value)[:10]).isoformat()
                except ValueError:
                    raise _Refused(
                        400, "USER_ERROR", f"Invalid date value for field {key}"
                    ) from None
            elif kind == "number":
                clean[key] = _number(value, key)
            elif kind == "lines":
                clean[key] = self._lines(value, key)
            else:
                clean[key] = self._applications(value)
        return clean

    def _derive(self, record_type: str, row: dict[str, Any]) -> None:
        """Defaults and computed fields: subsidiary and currency from the customer, totals."""
        customer_key = "customer" if record_type == "customerPayment" else "entity"
        if record_type in _TRANSACTIONS:
            customer = self._rows["customer"][row[customer_key]["id"]]
            if row.get("currency") is None:
                row["currency"] = copy.deepcopy(customer.get("currency") or {"id": "1"})
            if record_type != "customerPayment" and row.get("subsidiary") is None:
                row["subsidiary"] = copy.deepcopy(customer["subsidiary"])
            row.setdefault("tranDate", self._now().date().isoformat())
        if record_type in ("invoice", "creditMemo"):
            row["taxTotal"] = _tax(row["item"])
            row["total"] = _net(row["item"]) + row["taxTotal"]

    def _settle(self, record_type: str, row: Mapping[str, Any]) -> None:
        """Apply a new payment or credit memo to its invoices; refuse over-application."""
        if record_type == "customerPayment":
            entries = row.get("apply") or []
            total = sum((entry["amount"] for entry in entries), Decimal(0))
            if total > row["payment"]:
                raise _Refused(400, "USER_ERROR", "The total applied exceeds the payment amount.")
            targets = [(entry["doc"]["id"], entry["amount"]) for entry in entries]
        elif record_type == "creditMemo" and row.get("createdFrom"):
            invoice = self._rows["invoice"][row["createdFrom"]["id"]]
            targets = [(invoice["id"], min(row["total"], invoice["amountRemaining"]))]
        else:
            return
        totals: dict[str, Decimal] = {}
        for invoice_id, amount in targets:
            totals[invoice_id] = totals.get(invoice_id, Decimal(0)) + amount
        for invoice_id, amount in totals.items():
            invoice = self._rows["invoice"][invoice_id]
            if amount > invoice["amountRemaining"]:
                raise _Refused(
                    400,
                    "USER_ERROR",
                    f"Amount applied to invoice {invoice_id} exceeds the amount remaining.",
                )
        now = self._now()
        for invoice_id, amount in totals.items():
            invoice = self._rows["invoice"][invoice_id]
            invoice["amountRemaining"] -= amount
            invoice["status"] = "Paid In Full" if invoice["amountRemaining"] == 0 else "Open"
            invoice["lastModifiedDate"] = now

    def create(
        self, record_type: str, values: Mapping[str, Any], external_id: str | None = None
    ) -> dict[str, Any]:
        """Create a record as ``POST /record/v1/{type}`` would; returns the stored row."""
        with self._lock:
            self._type(record_type)
            clean = self._values(record_type, values)
            missing = [key for key in _REQUIRED[record_type] if clean.get(key) in (None, "")]
            if missing:
                raise _Refused(
                    400, "USER_ERROR", f"Please enter value(s) for: {', '.join(missing)}."
                )
            external = external_id if external_id is not None else values.get("externalId")
            if external is not None:
                external = str(external)
                if any(r.get("externalId") == external for r in self._rows[record_type].values()):
                    raise _Refused(
                        400,
                        "DUP_RCRD",
                        f"A {record_type} record with this external ID already exists.",
                    )
            self._next += 1
            row: dict[str, Any] = {**clean, "id": str(self._next), "externalId": external}
            self._derive(record_type, row)
            if record_type in _TRANSACTIONS:
                kind, prefix = _TRANSACTIONS[record_type]
                self._numbers[kind] += 1
                row["tranId"] = f"{prefix}{self._numbers[kind]:05d}"
            if record_type == "invoice":
                row["amountRemaining"] = row["total"]
                row["status"] = "Open"
            self._settle(record_type, row)  # checks every target before it changes any
            row["lastModifiedDate"] = self._now()
            self._rows[record_type][row["id"]] = row
            return row

    def update(self, record_type: str, ident: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Change a record as ``PATCH /record/v1/{type}/{id}`` would (``eid:`` accepted)."""
        with self._lock:
            row = self._find(record_type, ident)
            clean = self._values(record_type, values)
            for key in _REQUIRED[record_type]:
                if key in clean and clean[key] in (None, ""):
                    raise _Refused(400, "USER_ERROR", f"Please enter value(s) for: {key}.")
            if record_type in ("creditMemo", "customerPayment") and (
                set(clean) & {"item", "apply", "payment", "createdFrom"}
            ):
                raise _Refused(
                    400,
                    "USER_ERROR",
                    "This stand-in does not re-apply a changed payment or credit memo.",
                )
            if record_type == "invoice" and "item" in clean:
                paid = row["total"] - row["amountRemaining"]
                total = _net(clean["item"]) + _tax(clean["item"])
                if total < paid:
                    raise _Refused(400, "USER_ERROR", "The new total is below what was applied.")
            row.update(clean)
            self._derive(record_type, row)
            if record_type == "invoice":
                paid = row["total"] - row.get("amountRemaining", row["total"])
                row["amountRemaining"] = row["total"] - max(paid, Decimal(0))
            row["lastModifiedDate"] = self._now()
            return row

    def upsert(
        self, record_type: str, external_id: str, values: Mapping[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        """Create or update by external id; returns (created, row)."""
        with self._lock:
            self._type(record_type)
            if "externalId" in values and values["externalId"] != external_id:
                raise _Refused(400, "USER_ERROR", "externalId in the body does not match the URL.")
            try:
                self._find(record_type, f"eid:{external_id}")
            except _Refused:
                return True, self.create(record_type, values, external_id)
            return False, self.update(record_type, f"eid:{external_id}", values)

    def delete(self, record_type: str, ident: str) -> None:
        with self._lock:
            row = self._find(record_type, ident)
            del self._rows[record_type][row["id"]]

    def seed_customers(self, count: int, *, prefix: str = "cust") -> list[str]:
        """Create ``count`` customers with external ids ``{prefix}-{n}``; their internal ids."""
        with self._lock:
            return [
                self.create(
                    "customer",
                    {
                        "companyName": f"Customer {n}",
                        "subsidiary": {"id": "1"},
                        "currency": {"id": "4"},
                    },
                    f"{prefix}-{n}",
                )["id"]
                for n in range(1, count + 1)
            ]

    # -- rendering ---------------------------------------------------------------------------

    def _ref_out(self, target: str, value: Mapping[str, Any], base: str) -> dict[str, Any]:
        ident = str(value["id"])
        out: dict[str, Any] = {"id": ident}
        if target == "currency":
            out["refName"] = CURRENCIES.get(ident, ident)
        elif target == "item":
            out["refName"] = ITEMS.get(ident, ident)
        else:
            row = self._rows[target].get(ident)
            if row is not None:
                out["refName"] = row.get("companyName") or row.get("name") or row.get("tranId")
        out["links"] = [{"rel": "self", "href": f"{base}{RECORD_PREFIX}/{target}/{ident}"}]
        return out

    def _render(
        self, record_type: str, row: Mapping[str, Any], base: str, *, expand: bool
    ) -> dict[str, Any]:
        href = f"{base}{RECORD_PREFIX}/{record_type}/{row['id']}"
        out: dict[str, Any] = {"links": [{"rel": "self", "href": href}]}
        for key, value in row.items():
            kind = FIELDS[record_type].get(key)
            if value is None:
                continue
            if isinstance(value, datetime):
                out[key] = _render_stamp(value)
            elif isinstance(kind, tuple):
                out[key] = self._ref_out(kind[1], value, base)
            elif kind in ("lines", "apply"):
                links = [{"rel": "self", "href": f"{href}/{key}"}]
                if not expand:
                    out[key] = {"links": links}
                    continue
                target = "item" if kind == "lines" else "invoice"
                inner = "item" if kind == "lines" else "doc"
                items = []
                for entry in value:
                    rendered = dict(entry)
                    rendered[inner] = self._ref_out(target, entry[inner], base)
                    items.append(rendered)
                out[key] = {
                    "links": links,
                    "items": items,
                    "count": len(items),
                    "hasMore": False,
                    "offset": 0,
                    "totalResults": len(items),
                }
            else:
                out[key] = value
        return out

    def _flat(self, record_type: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """One SuiteQL row: lower-case columns, references as ids, T/F checkboxes, no sublists."""
        out: dict[str, Any] = {"links": []}
        renamed = {"total": "foreigntotal", "amountRemaining": "foreignamountremaining"}
        for key, value in row.items():
            kind = FIELDS[record_type].get(key)
            if kind in ("lines", "apply"):
                continue
            column = renamed.get(key, key.lower())
            if value is None:
                out[column] = None
            elif isinstance(value, datetime):
                out[column] = _render_stamp(value)
            elif isinstance(kind, tuple):
                out[column] = str(value["id"])
            elif isinstance(value, bool):
                out[column] = "T" if value else "F"
            else:
                out[column] = value
        if record_type in _TRANSACTIONS:
            out["type"] = _TRANSACTIONS[record_type][0]
            if record_type == "customerPayment":
                out["foreigntotal"] = row["payment"]
        return out

    # -- lists and queries ---------------------------------------------------------------------

    @staticmethod
    def _paging(params: Mapping[str, str], *, multiple: bool) -> tuple[int, int]:
        try:
            limit = int(params.get("limit", MAX_LIMIT))
            offset = int(params.get("offset", 0))
        except ValueError:
            raise _Refused(400, "INVALID_PARAMETER", "limit and offset must be integers.") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _Refused(
                400, "INVALID_PARAMETER", f"The limit must be between 1 and {MAX_LIMIT}."
            )
        if offset < 0 or (multiple and offset % limit):
            raise _Refused(
                400, "INVALID_PARAMETER", "The offset must be a non-negative multiple of the limit."
            )
        return limit, offset

    @staticmethod
    def _collection(
        items: list[dict[str, Any]], total: int, limit: int, offset: int, url: str
    ) -> dict[str, Any]:
        has_more = offset + len(items) < total
        links = [{"rel": "self", "href": f"{url}?limit={limit}&offset={offset}"}]
        if has_more:
            links.append({"rel": "next", "href": f"{url}?limit={limit}&offset={offset + limit}"})
        return {
            "links": links,
            "count": len(items),
            "hasMore": has_more,
            "items": items,
            "offset": offset,
            "totalResults": total,
        }

    def list_records(
        self, record_type: str, params: Mapping[str, str], base: str
    ) -> dict[str, Any]:
        limit, offset = self._paging(params, multiple=False)
        tests: list[Callable[[Mapping[str, Any]], bool]] = []
        query = params.get("q")
        if query:
            for clause in re.split(r"\s+AND\s+", query):
                match = _LIST_Q.match(clause)
                if match is None:
                    raise _Refused(400, "INVALID_PARAMETER", f"Invalid query: {clause}")
                field, operator, text = match.groups()
                tests.append(self._list_test(field, operator, text))
        with self._lock:
            rows = [
                row
                for row in self._rows[self._type(record_type)].values()
                if all(test(row) for test in tests)
            ]
            rows.sort(key=lambda row: int(row["id"]))
            url = f"{base}{RECORD_PREFIX}/{record_type}"
            items = [
                {"links": [{"rel": "self", "href": f"{url}/{row['id']}"}], "id": row["id"]}
                for row in rows[offset : offset + limit]
            ]
        return self._collection(items, len(rows), limit, offset, url)

    @staticmethod
    def _list_test(field: str, operator: str, text: str) -> Callable[[Mapping[str, Any]], bool]:
        if field == "externalId":
            if operator != "IS":
                raise _Refused(400, "INVALID_PARAMETER", f"{operator} does not apply to externalId")
            return lambda row: row.get("externalId") == text
        if operator == "IS":
            raise _Refused(400, "INVALID_PARAMETER", "IS does not apply to lastModifiedDate")
        moment = _parse_moment(text, field)
        compare: dict[str, Callable[[datetime], bool]] = {
            "ON_OR_AFTER": lambda value: value >= moment,
            "AFTER": lambda value: value > moment,
            "ON_OR_BEFORE": lambda value: value <= moment,
            "BEFORE": lambda value: value < moment,
        }
        test = compare[operator]
        return lambda row: test(row["lastModifiedDate"])

    def suiteql(self, query: Any, params: Mapping[str, str], base: str) -> dict[str, Any]:
        if not isinstance(query, str) or not query.strip():
            raise _Refused(400, "INVALID_PARAMETER", "The request body must hold the query in q.")
        limit, offset = self._paging(params, multiple=True)
        match = _SUITEQL.match(query)
        if match is None:
            raise _Refused(
                400,
                "INVALID_PARAMETER",
                "Invalid search query. This stand-in supports SELECT * FROM t [WHERE …] "
                "ORDER BY lastmodifieddate, id.",
            )
        table = match["table"].lower()
        if table not in _TABLES:
            raise _Refused(
                400, "INVALID_PARAMETER", f"Invalid search query. Unknown table {table}."
            )
        test = self._where(match["where"]) if match["where"] else (lambda row: True)
        types = (
            [name for name, (kind, _) in _TRANSACTIONS.items()]
            if table == "transaction"
            else [table]
        )
        with self._lock:
            rows = [self._flat(name, row) for name in types for row in self._rows[name].values()]
            rows = [row for row in rows if test(row)]
            rows.sort(key=lambda row: (row["lastmodifieddate"], int(row["id"])))
            page = rows[offset : offset + limit]
        return self._collection(page, len(rows), limit, offset, f"{base}{SUITEQL_PATH}")

    def _where(self, where: str) -> Callable[[Mapping[str, Any]], bool]:
        """A SuiteQL condition: ``a AND b AND …``, each a comparison or a ``(x OR y)``."""
        tests = [self._condition(part) for part in _split(where, "AND")]
        return lambda row: all(test(row) for test in tests)

    def _condition(self, text: str) -> Callable[[Mapping[str, Any]], bool]:
        text = text.strip()
        if text.startswith("(") and _closing(text, 0) == len(text) - 1:
            inner = text[1:-1]
            alternatives = _split(inner, "OR")
            if len(alternatives) > 1:
                tests = [self._condition(part) for part in alternatives]
                return lambda row: any(test(row) for test in tests)
            return self._where(inner)
        for name, pattern in _CONDITION:
            match = pattern.match(text)
            if match is None:
                continue
            if name == "type":
                kind = match.group(1)
                return lambda row: row.get("type") == kind
            operator, value = match.group(1), match.group(2)
            if name == "stamp":
                moment = _render_stamp(_parse_moment(value.replace(" ", "T"), "lastmodifieddate"))
                return _compare("lastmodifieddate", operator, moment, str)
            return _compare("id", operator, int(value), int)
        raise _Refused(
            400, "INVALID_PARAMETER", f"Invalid search query. Unsupported condition: {text}"
        )

    # -- HTTP --------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="NetSuite REST stand-in", openapi_url=None, docs_url=None, redoc_url=None
        )
        app.router.redirect_slashes = False
        app.add_exception_handler(_Refused, _refused)
        app.add_exception_handler(StarletteHTTPException, _http_error)

        def base(request: Request) -> str:
            return f"{request.url.scheme}://{request.headers.get('host', self.host)}"

        def located(request: Request, record_type: str, ident: str) -> Response:
            href = f"{base(request)}{RECORD_PREFIX}/{record_type}/{ident}"
            return Response(status_code=204, headers={"Location": href})

        async def create(request: Request, record_type: str) -> Response:
            row = self.create(self._type(record_type), await _body(request))
            return located(request, record_type, row["id"])

        async def listing(request: Request, record_type: str) -> Response:
            return _json(
                self.list_records(record_type, dict(request.query_params), base(request)),
                _COLLECTION,
            )

        async def read(request: Request, record_type: str, ident: str) -> Response:
            expand = request.query_params.get("expandSubResources", "false").lower() == "true"
            with self._lock:
                row = self._find(record_type, ident)
                body = self._render(record_type, row, base(request), expand=expand)
            return _json(body, _SINGULAR)

        async def patch(request: Request, record_type: str, ident: str) -> Response:
            row = self.update(record_type, ident, await _body(request))
            return located(request, record_type, row["id"])

        async def put(request: Request, record_type: str, ident: str) -> Response:
            if not ident.startswith("eid:") or len(ident) == 4:
                raise _Refused(
                    400,
                    "INVALID_PARAMETER",
                    "PUT upserts by external ID only: use eid:<externalId>.",
                )
            _, row = self.upsert(record_type, ident[4:], await _body(request))
            return located(request, record_type, row["id"])

        async def remove(request: Request, record_type: str, ident: str) -> Response:
            self.delete(record_type, ident)
            return Response(status_code=204)

        async def suiteql(request: Request) -> Response:
            if "transient" not in request.headers.get("prefer", "").lower():
                raise _Refused(
                    400, "INVALID_PARAMETER", "The request header 'Prefer: transient' is required."
                )
            body = await _body(request)
            answer = self.suiteql(body.get("q"), dict(request.query_params), base(request))
            return _json(answer, _COLLECTION)

        route = app.add_api_route
        route(SUITEQL_PATH, suiteql, methods=["POST"])
        route(f"{RECORD_PREFIX}/{{record_type}}", create, methods=["POST"])
        route(f"{RECORD_PREFIX}/{{record_type}}", listing, methods=["GET"])
        route(f"{RECORD_PREFIX}/{{record_type}}/{{ident}}", read, methods=["GET"])
        route(f"{RECORD_PREFIX}/{{record_type}}/{{ident}}", patch, methods=["PATCH"])
        route(f"{RECORD_PREFIX}/{{record_type}}/{{ident}}", put, methods=["PUT"])
        route(f"{RECORD_PREFIX}/{{record_type}}/{{ident}}", remove, methods=["DELETE"])
        return app


def _net(lines: list[dict[str, Any]]) -> Decimal:
    return sum((line["amount"] for line in lines), Decimal(0))


def _tax(lines: list[dict[str, Any]]) -> Decimal:
    """A transaction's tax: the sum of its lines' ``tax1Amt`` (tax added on top of ``amount``)."""
    return sum((line.get("tax1Amt", Decimal(0)) for line in lines), Decimal(0))


def _closing(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _split(text: str, word: str) -> list[str]:
    """Split on ``word`` (AND, OR) outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    index = 0
    pattern = re.compile(rf"\s+{word}\s+", re.IGNORECASE)
    while index < len(text):
        char = text[index]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0:
            match = pattern.match(text, index)
            if match is not None:
                parts.append(text[start:index])
                start = index = match.end()
                continue
        index += 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _compare(
    column: str, operator: str, value: Any, cast: Callable[[Any], Any]
) -> Callable[[Mapping[str, Any]], bool]:
    tests: dict[str, Callable[[Any], bool]] = {
        ">=": lambda seen: seen >= value,
        ">": lambda seen: seen > value,
        "=": lambda seen: seen == value,
    }
    test = tests[operator]
    return lambda row: row.get(column) is not None and test(cast(row[column]))


def _json(body: Any, content_type: str, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type=content_type)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = loads(raw or b"{}")
    except ValueError:
        raise _Refused(400, "INVALID_CONTENT", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _Refused(400, "INVALID_CONTENT", "The request body must be a JSON object.")
    return body


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refused)
    return _json(error_body(exc.status, exc.code, exc.detail), _ERROR, exc.status)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = "INVALID_PARAMETER" if status != 405 else "METHOD_NOT_ALLOWED"
    detail = f"{request.method} {request.url.path} is not a resource of this service."
    return _json(error_body(status, code, detail), _ERROR, status)


def _route_name(method: str, path: str) -> str:
    path = path.removeprefix("/services/rest")
    if path.startswith("/record/v1"):
        rest = path.removeprefix("/record/v1")
        match = _ID_SEGMENT.match(rest)
        if match is not None:
            ident = "eid:{value}" if match["ident"].startswith("eid:") else "{id}"
            path = f"/record/v1/{{type}}/{ident}{match['rest'] or ''}"
        elif re.fullmatch(r"/\w+", rest):
            path = "/record/v1/{type}"
    return f"{method} {path}"


async def _answer(
    send: Send, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    data = dumps(body)
    raw = [
        (b"content-type", _ERROR.encode()),
        (b"content-length", str(len(data)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class _Gate:
    """The outermost ASGI layer: counting, concurrency slots, auth, faults, lost responses.

    A lost response is a connection closed before a byte is sent: uvicorn does
    that when the application returns a value instead of ``None`` without having
    started a response, so this layer holds the answer to a write and, when the
    fault strikes, returns a value in its place.
    """

    def __init__(self, app: ASGIApp, stand_in: NetSuiteStandIn) -> None:
        self.app = app
        self.stand_in = stand_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return None
        stand_in = self.stand_in
        method: str = scope["method"]
        stand_in._count("requests", _route_name(method, scope["path"]))
        if stand_in._inflight >= stand_in.concurrency:
            stand_in._count("over_concurrency")
            stand_in.peak_inflight = max(stand_in.peak_inflight, stand_in._inflight + 1)
            detail = "Concurrent request limit exceeded. Request blocked."
            await _answer(send, 429, error_body(429, "SSS_REQUEST_LIMIT_EXCEEDED", detail))
            return None
        stand_in._inflight += 1
        stand_in.peak_inflight = max(stand_in.peak_inflight, stand_in._inflight)
        try:
            return await self._serve(scope, receive, send, method)
        finally:
            stand_in._inflight -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send, method: str) -> str | None:
        stand_in = self.stand_in
        faults = stand_in.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}{scope['path']}"
        if query:
            url = f"{url}?{query}"
        try:
            stand_in.verify(method, url, headers.get("authorization"))
        except _Refused as refused:
            stand_in._count("unauthorized")
            await _answer(
                send, refused.status, error_body(refused.status, refused.code, refused.detail)
            )
            return None
        roll = stand_in._roll()
        if roll < faults.error_rate:
            stand_in._count("errors")
            detail = "An unexpected error occurred. Please try again."
            await _answer(send, 503, error_body(503, "UNEXPECTED_ERROR", detail))
            return None
        if roll < faults.error_rate + faults.throttle_rate:
            stand_in._count("throttled")
            detail = "Request limit exceeded. Retry after the indicated time."
            await _answer(
                send,
                429,
                error_body(429, "SSS_REQUEST_LIMIT_EXCEEDED", detail),
                {"Retry-After": f"{faults.retry_after:g}"},
            )
            return None
        write = method in ("POST", "PUT", "PATCH") and not scope["path"].startswith(SUITEQL_PATH)
        if not write or stand_in._roll() >= faults.lost_response_rate:
            await self.app(scope, receive, send)
            return None
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = held[0] if held else None
        if start is None or start.get("status", 500) >= 300:
            for message in held:  # a refused write applied nothing: answer it normally
                await send(message)
            return None
        stand_in._count("lost")
        return _WITHHELD
