"""A stand-in Stripe API, in memory, over real HTTP: Stripe's paths, auth, formats and faults.

Why it exists: the Stripe connector must be proven where Stripe decides
exactly-once delivery and complete reads, without a network or an account.
So this server keeps to Stripe's documented behaviour (API 2023-08-16) in the
places that matter and to its OpenAPI shapes everywhere it answers, so that a
test can validate every exchange against the vendor's own description:

* ``Authorization: Bearer sk_test_…`` (or Basic with the key as user) on every
  call, else 401 with Stripe's error body; live keys are refused.
* Form-encoded bodies in Stripe's bracket notation (``metadata[k]=v``).
* ``Idempotency-Key``: the same key with the same parameters replays the stored
  response with ``Idempotent-Replayed: true``; with other parameters it is a
  400 ``idempotency_error``. Keys are kept 24 hours. Requests refused before
  they run (validation, auth, throttling) store nothing, as at Stripe.
* Every mutation appends events (``customer.created``, ``invoice.finalized``,
  ``invoice.paid``, ``payment_intent.succeeded``, …) listed newest first by
  ``GET /v1/events`` (``created[gte]``, ``starting_after``, ``limit``, ``type``
  with ``*``), kept 30 days, and POSTed to the configured webhook URL signed
  with ``Stripe-Signature: t=…,v1=…``.
* Search (``/v1/customers/search`` and the invoice and payment-intent ones)
  speaks a subset of Stripe's query language (``field:'v'``,
  ``metadata['k']:'v'``, joined by ``AND`` or ``OR``) and can lag behind writes
  (``search_lag``) as Stripe documents it may.
* Faults, drawn per request from :class:`~accord.sandbox.recorder.Faults`:
  added latency, a share answered 500 ``api_error`` without applying anything,
  a share answered 429 with ``Retry-After``, and a share of writes applied and
  then left unanswered (the connection closes before a byte is sent) — plus
  Stripe's test-mode rate limit of 25 reads and 25 writes a second.

Served: ``POST/GET /v1/customers``, ``GET /v1/customers/search``,
``GET/POST /v1/customers/{id}``, ``POST/GET /v1/invoiceitems``,
``POST/GET /v1/invoices``, ``GET /v1/invoices/search``, ``GET /v1/invoices/{id}``,
``POST /v1/invoices/{id}/finalize``, ``POST/GET /v1/credit_notes``,
``POST/GET /v1/payment_intents``, ``GET /v1/payment_intents/search``,
``POST /v1/payment_intents/{id}/confirm``, ``GET /v1/events`` and the single
object ``GET``s. Not modelled: taxes, discounts, prices, charges, customer
balances applied to invoices; unsupported parameters are refused as unknown
rather than silently ignored, so a connector never relies on what this
stand-in does not do.

Finalising an invoice with something due creates its payment intent, as
Stripe does; confirming that intent with a test payment method
(``pm_card_visa``; ``pm_card_chargeDeclined`` declines) pays the invoice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import queue
import random
import re
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.sandbox.recorder import Faults
from accord.sandbox.serving import BackgroundServer

__all__ = [
    "API_VERSION",
    "IDEMPOTENCY_TTL",
    "StripeStandIn",
    "WebhookDelivery",
    "parse_form",
    "sign_payload",
]

API_VERSION = "2023-08-16"
IDEMPOTENCY_TTL = 24 * 3600.0
"""Seconds an idempotency key is remembered (Stripe: at least 24 hours)."""
EVENT_RETENTION = 30 * 24 * 3600
"""Seconds events stay listable (Stripe: 30 days)."""

_DROP_HEADER = b"x-accord-standin-drop"
_WITHHELD = "response withheld: lost-response fault injected by the Stripe stand-in"
_ALPHABET = string.ascii_letters + string.digits
_TEST_METHODS = re.compile(r"^pm_card_[A-Za-z0-9_]+$")


# -- wire helpers -------------------------------------------------------------------------


def parse_form(raw: str | bytes) -> dict[str, Any]:
    """Stripe's bracket notation → nested values (strings; handlers cast per parameter).

    ``metadata[k]=v`` becomes ``{"metadata": {"k": "v"}}``; ``expand[]=a`` and
    ``expand[0]=a`` become lists. Raises :class:`ValueError` when one name is
    used both as a value and as a hash.
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        head, _, rest = key.partition("[")
        parts = [head, *rest[:-1].split("][")] if rest.endswith("]") else [key]
        node = root
        for depth, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if depth == len(parts) - 1:
                if isinstance(node.get(part), dict):
                    raise ValueError(f"{key} is both a value and a hash")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ValueError(f"{key} is both a value and a hash")
                node = child
    return {name: _listify(value) for name, value in root.items()}


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {k: _listify(v) for k, v in value.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value Stripe sends with a webhook delivery."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class _StripeError(Exception):
    """An error answer in Stripe's shape; ``saved`` when Stripe stores it for the key."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        saved: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.saved = saved
        error: dict[str, Any] = {"type": type, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            error["param"] = param
        error.update(extra or {})
        self.body = {"error": error}


def _missing(kind: str, ident: str, param: str = "id") -> _StripeError:
    return _StripeError(
        404 if param == "id" else 400,
        f"No such {kind}: '{ident}'",
        code="resource_missing",
        param=param,
    )


# -- parameter readers --------------------------------------------------------------------


def _allow(params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    known = {*allowed, "expand"}
    for name in params:
        if name not in known:
            raise _StripeError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )


def _str(params: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _StripeError(
                400, f"Missing required param: {name}.", code="parameter_missing", param=name
            )
        return None
    if not isinstance(value, str):
        raise _StripeError(400, f"Invalid string: {name}", code="parameter_invalid_string")
    return value or None


def _int(params: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    text = _str(params, name, required=required)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise _StripeError(
            400, f"Invalid integer: {text}", code="parameter_invalid_integer", param=name
        ) from None


def _bool(params: Mapping[str, Any], name: str) -> bool | None:
    text = _str(params, name)
    if text is None:
        return None
    if text not in ("true", "false"):
        raise _StripeError(400, f"Invalid boolean: {text}", code="parameter_invalid_string")
    return text == "true"


def _limit(params: Mapping[str, Any]) -> int:
    limit = _int(params, "limit")
    if limit is None:
        return 10
    if not 1 <= limit <= 100:
        raise _StripeError(400, "Invalid limit: must be between 1 and 100", param="limit")
    return limit


def _created(obj: Mapping[str, Any]) -> int:
    """When an object was made: ``created``, or ``date`` for invoice items (Stripe's naming)."""
    return int(obj["created"] if "created" in obj else obj["date"])


def _choice(params: Mapping[str, Any], name: str, allowed: Iterable[str]) -> str | None:
    value = _str(params, name)
    options = tuple(allowed)
    if value is not None and value not in options:
        raise _StripeError(
            400,
            f"Invalid {name}: must be one of {', '.join(options)}",
            code="parameter_invalid_string",
            param=name,
        )
    return value


def _currency(params: Mapping[str, Any], *, required: bool) -> str | None:
    value = _str(params, "currency", required=required)
    if value is not None and not re.fullmatch(r"[a-z]{3}", value):
        raise _StripeError(400, f"Invalid currency: {value}", param="currency")
    return value


def _metadata(value: Any, current: Mapping[str, str]) -> dict[str, str]:
    """Stripe's metadata rules: merge, ``""`` unsets a key (or all), 50 keys of 40/500 chars."""
    if value is None:
        return dict(current)
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise _StripeError(400, "Invalid hash", param="metadata")
    merged = dict(current)
    for key, item in value.items():
        if not isinstance(item, str):
            raise _StripeError(400, "Invalid hash", param=f"metadata[{key}]")
        if len(key) > 40 or len(item) > 500:
            raise _StripeError(400, "Metadata keys are at most 40 and values 500 characters")
        if item == "":
            merged.pop(key, None)
        else:
            merged[key] = item
    if len(merged) > 50:
        raise _StripeError(400, "Metadata can hold at most 50 keys", param="metadata")
    return merged


def _address(value: Any) -> dict[str, str | None] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        raise _StripeError(400, "Invalid hash", param="address")
    fields = ("city", "country", "line1", "line2", "postal_code", "state")
    _allow({f"address[{k}]": v for k, v in value.items()}, (f"address[{f}]" for f in fields))
    return {f: value.get(f) or None for f in fields}


# -- state --------------------------------------------------------------------------------


@dataclass
class _Saved:
    digest: str
    status: int
    body: dict[str, Any]
    at: float


@dataclass
class _Ctx:
    """What one request's mutations share: its time, ids and the events it raised."""

    now: int
    request_id: str
    idempotency_key: str | None
    pending_webhooks: int
    events: list[dict[str, Any]] = field(default_factory=list)


_KINDS = ("customer", "invoiceitem", "invoice", "credit_note", "payment_intent")
_PREFIX = {
    "customer": ("cus_", 14),
    "invoiceitem": ("ii_", 24),
    "invoice": ("in_", 24),
    "credit_note": ("cn_", 24),
    "payment_intent": ("pi_", 24),
}
_SEARCHABLE = {
    "customer": ("email", "name", "phone"),
    "invoice": ("customer", "status", "number", "currency"),
    "payment_intent": ("customer", "status", "currency"),
}
_CLAUSE = re.compile(
    r"""^\s*(?:metadata\[(?P<mq>['"])(?P<mkey>[^'"]+)(?P=mq)\]|(?P<field>[a-z_]+))"""
    r"""\s*:\s*'(?P<value>(?:[^'\\]|\\.)*)'\s*$"""
)


class _Store:
    """Objects, events and idempotency records; every public method holds the one lock."""

    def __init__(self, clock: Callable[[], float], seed: int | None, search_lag: float) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.search_lag = search_lag
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _KINDS}
        self.events: list[dict[str, Any]] = []
        self.saved: dict[str, _Saved] = {}
        self.counts: dict[str, int] = dict.fromkeys(_KINDS, 0)
        self._seq: dict[str, int] = {}
        self._searchable_at: dict[str, float] = {}
        self._items: dict[str, list[str]] = {}
        self._terms: dict[str, int | None] = {}
        self._credit_notes: dict[str, int] = {}
        self._random = random.Random(seed)

    # ids and bookkeeping

    def new_id(self, prefix: str, length: int) -> str:
        with self.lock:
            while True:
                ident = prefix + "".join(self._random.choice(_ALPHABET) for _ in range(length))
                if ident not in self._seq:
                    self._seq[ident] = len(self._seq)
                    return ident

    def _key(self, obj: Mapping[str, Any]) -> tuple[int, int]:
        return _created(obj), self._seq[str(obj["id"])]

    def _add(self, kind: str, obj: dict[str, Any]) -> None:
        self.objects[kind][obj["id"]] = obj
        self.counts[kind] += 1
        self._searchable_at[obj["id"]] = self.clock() + self.search_lag

    def _get(self, kind: str, ident: str | None, param: str = "id") -> dict[str, Any]:
        obj = self.objects[kind].get(ident or "")
        if obj is None:
            raise _missing(kind, ident or "", param)
        return obj

    def _emit(
        self,
        ctx: _Ctx,
        type_: str,
        obj: Mapping[str, Any],
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"object": deepcopy(obj)}
        if previous:
            data["previous_attributes"] = deepcopy(dict(previous))
        event = {
            "id": self.new_id("evt_", 24),
            "object": "event",
            "api_version": API_VERSION,
            "created": ctx.now,
            "data": data,
            "livemode": False,
            "pending_webhooks": ctx.pending_webhooks,
            "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            "type": type_,
        }
        self.events.append(event)
        ctx.events.append(deepcopy(event))

    # idempotency

    def execute(
        self,
        handler: _Handler,
        ctx: _Ctx,
        params: dict[str, Any],
        path: Mapping[str, str],
        key: str | None,
        url: str,
    ) -> tuple[int, dict[str, Any], bool]:
        """Run one request; with a key, replay or refuse as Stripe does.

        Returns status, body and whether the answer is a replay.
        """
        with self.lock:
            if key is None:
                return 200, deepcopy(handler(self, ctx, params, path)), False
            if len(key) > 255:
                raise _StripeError(400, "Idempotency keys are at most 255 characters")
            horizon = self.clock() - IDEMPOTENCY_TTL
            for stale in [k for k, s in self.saved.items() if s.at < horizon]:
                del self.saved[stale]
            digest = hashlib.sha256(json.dumps([url, params], sort_keys=True).encode()).hexdigest()
            saved = self.saved.get(key)
            if saved is not None:
                if saved.digest != digest:
                    raise _StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                        type="idempotency_error",
                    )
                return saved.status, deepcopy(saved.body), True
            try:
                body = handler(self, ctx, params, path)
            except _StripeError as exc:
                if exc.saved:
                    self.saved[key] = _Saved(digest, exc.status, deepcopy(exc.body), self.clock())
                raise
            self.saved[key] = _Saved(digest, 200, deepcopy(body), self.clock())
            return 200, deepcopy(body), False

    # reads

    def retrieve(self, kind: str, ident: str) -> dict[str, Any]:
        with self.lock:
            if kind == "event":
                found = next((e for e in self.events if e["id"] == ident), None)
                if found is None:
                    raise _missing("event", ident)
                return deepcopy(found)
            return deepcopy(self._get(kind, ident))

    def page(
        self,
        items: list[dict[str, Any]],
        params: Mapping[str, Any],
        url: str,
        kind: str,
    ) -> dict[str, Any]:
        """A Stripe list object, newest first, cut by ``created`` and the cursor ids."""
        limit = _limit(params)
        created = params.get("created")
        if isinstance(created, str):
            created = {"eq": created}
        if created is not None:
            if not isinstance(created, dict):
                raise _StripeError(400, "Invalid created", param="created")
            bounds = {op: _int(created, op) for op in created}
            checks: dict[str, Callable[[int, int], bool]] = {
                "eq": lambda a, b: a == b,
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
                "lte": lambda a, b: a <= b,
            }
            for op, bound in bounds.items():
                if op not in checks or bound is None:
                    raise _StripeError(400, f"Invalid created[{op}]", param="created")
                items = [i for i in items if checks[op](_created(i), bound)]
        ordered = sorted(items, key=self._key, reverse=True)
        after = _str(params, "starting_after")
        before = _str(params, "ending_before")
        if after is not None:
            anchor = self._anchor(kind, after, "starting_after")
            window = [i for i in ordered if self._key(i) < anchor]
            data, more = window[:limit], len(window) > limit
        elif before is not None:
            anchor = self._anchor(kind, before, "ending_before")
            window = [i for i in ordered if self._key(i) > anchor]
            data, more = window[-limit:], len(window) > limit
        else:
            data, more = ordered[:limit], len(ordered) > limit
        return {"object": "list", "data": deepcopy(data), "has_more": more, "url": url}

    def _anchor(self, kind: str, ident: str, param: str) -> tuple[int, int]:
        if kind == "event":
            found = next((e for e in self.events if e["id"] == ident), None)
        else:
            found = self.objects[kind].get(ident)
        if found is None:
            raise _missing(kind, ident, param)
        return self._key(found)

    def list_objects(self, kind: str, params: Mapping[str, Any], url: str) -> dict[str, Any]:
        with self.lock:
            filters = {
                "customer": ("email", "created", "ending_before", "limit", "starting_after"),
                "invoice": (
                    "collection_method",
                    "created",
                    "customer",
                    "ending_before",
                    "limit",
                    "starting_after",
                    "status",
                ),
                "invoiceitem": (
                    "created",
                    "customer",
                    "ending_before",
                    "invoice",
                    "limit",
                    "pending",
                    "starting_after",
                ),
                "credit_note": ("customer", "ending_before", "invoice", "limit", "starting_after"),
                "payment_intent": (
                    "created",
                    "customer",
                    "ending_before",
                    "limit",
                    "starting_after",
                ),
            }[kind]
            _allow(params, filters)
            items = list(self.objects[kind].values())
            for name in ("email", "customer", "invoice", "status", "collection_method"):
                wanted = _str(params, name) if name in filters else None
                if wanted is not None:
                    items = [i for i in items if i.get(name) == wanted]
            pending = _bool(params, "pending")
            if pending is not None:
                items = [i for i in items if (i.get("invoice") is None) == pending]
            return self.page(items, params, url, kind)

    def list_events(self, params: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            _allow(params, ("created", "ending_before", "limit", "starting_after", "type", "types"))
            oldest = self.clock() - EVENT_RETENTION
            items = [e for e in self.events if e["created"] >= oldest]
            patterns: list[str] = []
            single = _str(params, "type")
            if single is not None:
                patterns.append(single)
            many = params.get("types")
            if many is not None:
                if not isinstance(many, list) or not all(isinstance(t, str) for t in many):
                    raise _StripeError(400, "Invalid array", param="types")
                patterns.extend(many)
            if patterns:
                rules = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in patterns]
                items = [e for e in items if any(r.match(e["type"]) for r in rules)]
            return self.page(items, params, "/v1/events", "event")

    def search(self, kind: str, params: Mapping[str, Any], url: str) -> dict[str, Any]:
        with self.lock:
            _allow(params, ("limit", "page", "query"))
            query = _str(params, "query", required=True) or ""
            limit = _limit(params)
            joiner = " OR " if " OR " in query else " AND "
            if " OR " in query and " AND " in query:
                raise _StripeError(400, "A query cannot mix AND and OR", param="query")
            tests: list[tuple[str | None, str, str]] = []  # (metadata key | None, field, value)
            for clause in query.split(joiner):
                match = _CLAUSE.match(clause)
                if match is None:
                    raise _StripeError(
                        400, f"Unsupported search clause: {clause.strip()!r}", param="query"
                    )
                value = re.sub(r"\\(.)", r"\1", match["value"])
                if match["mkey"] is not None:
                    tests.append((match["mkey"], "metadata", value))
                elif match["field"] in _SEARCHABLE[kind]:
                    tests.append((None, match["field"], value))
                else:
                    raise _StripeError(
                        400, f"Field {match['field']!r} is not searchable", param="query"
                    )
            combine = any if joiner == " OR " else all
            now = self.clock()
            found = [
                o
                for o in self.objects[kind].values()
                if self._searchable_at[o["id"]] <= now and combine(_holds(o, *t) for t in tests)
            ]
            found.sort(key=self._key, reverse=True)
            token = _str(params, "page")
            start = 0
            if token is not None:
                try:
                    start = int(base64.urlsafe_b64decode(token.encode()).decode())
                except ValueError:
                    raise _StripeError(400, "Invalid page", param="page") from None
            window = found[start : start + limit]
            more = start + limit < len(found)
            next_page = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            return {
                "object": "search_result",
                "data": deepcopy(window),
                "has_more": more,
                "next_page": next_page if more else None,
                "url": url,
            }

    # customers

    def create_customer(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        _allow(params, ("address", "description", "email", "metadata", "name", "phone"))
        customer: dict[str, Any] = {
            "id": self.new_id(*_PREFIX["customer"]),
            "object": "customer",
            "address": _address(params.get("address")),
            "balance": 0,
            "created": ctx.now,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": _str(params, "description"),
            "discount": None,
            "email": _str(params, "email"),
            "invoice_prefix": "".join(
                self._random.choice(string.ascii_uppercase + string.digits) for _ in range(8)
            ),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": _metadata(params.get("metadata"), {}),
            "name": _str(params, "name"),
            "next_invoice_sequence": 1,
            "phone": _str(params, "phone"),
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self._add("customer", customer)
        self._emit(ctx, "customer.created", customer)
        return customer

    def update_customer(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        customer = self._get("customer", path["id"])
        _allow(params, ("address", "description", "email", "metadata", "name", "phone"))
        changes: dict[str, Any] = {}
        for name in ("description", "email", "name", "phone"):
            if name in params:
                changes[name] = _str(params, name)
        if "address" in params:
            changes["address"] = _address(params["address"])
        if "metadata" in params:
            changes["metadata"] = _metadata(params["metadata"], customer["metadata"])
        previous = {k: customer[k] for k, v in changes.items() if customer[k] != v}
        customer.update(changes)
        if previous:
            self._emit(ctx, "customer.updated", customer, previous)
        return customer

    # invoice items and invoices

    def create_invoice_item(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        _allow(params, ("amount", "currency", "customer", "description", "invoice", "metadata"))
        customer = self._get("customer", _str(params, "customer", required=True), "customer")
        amount = _int(params, "amount", required=True) or 0
        currency = _currency(params, required=True)
        invoice_id = _str(params, "invoice")
        invoice = None
        if invoice_id is not None:
            invoice = self._get("invoice", invoice_id, "invoice")
            if invoice["status"] != "draft":
                raise _StripeError(
                    400,
                    "You can only add invoice items to draft invoices.",
                    code="invoice_not_editable",
                    param="invoice",
                )
            if invoice["customer"] != customer["id"] or invoice["currency"] != currency:
                raise _StripeError(
                    400, "The invoice item must match the invoice's customer and currency"
                )
        if customer["currency"] is None:
            customer["currency"] = currency
        item = {
            "id": self.new_id(*_PREFIX["invoiceitem"]),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer["id"],
            "date": ctx.now,
            "description": _str(params, "description"),
            "discountable": True,
            "discounts": [],
            "invoice": invoice_id,
            "livemode": False,
            "metadata": _metadata(params.get("metadata"), {}),
            "period": {"end": ctx.now, "start": ctx.now},
            "price": None,
            "proration": False,
            "quantity": 1,
            "subscription": None,
            "tax_rates": [],
            "test_clock": None,
            "unit_amount": amount,
            "unit_amount_decimal": str(amount),
        }
        self._add("invoiceitem", item)
        self._emit(ctx, "invoiceitem.created", item)
        if invoice is not None:
            self._items[invoice["id"]].append(item["id"])
            previous = {"amount_due": invoice["amount_due"], "total": invoice["total"]}
            self._recompute(invoice)
            self._emit(ctx, "invoice.updated", invoice, previous)
        return item

    def _line(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": "il_" + str(item["id"]).removeprefix("ii_"),
            "object": "line_item",
            "amount": item["amount"],
            "amount_excluding_tax": item["amount"],
            "currency": item["currency"],
            "description": item["description"],
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice_item": item["id"],
            "livemode": False,
            "metadata": dict(item["metadata"]),
            "period": dict(item["period"]),
            "price": None,
            "proration": False,
            "proration_details": {"credited_items": None},
            "quantity": 1,
            "subscription": None,
            "tax_amounts": [],
            "tax_rates": [],
            "type": "invoiceitem",
            "unit_amount_excluding_tax": str(item["amount"]),
        }

    def _recompute(self, invoice: dict[str, Any]) -> None:
        items = [self.objects["invoiceitem"][i] for i in self._items[invoice["id"]]]
        total = sum(int(i["amount"]) for i in items)
        lines = invoice["lines"]
        lines["data"] = [self._line(i) for i in items]
        due = max(0, total - invoice["pre_payment_credit_notes_amount"])
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            amount_due=due,
            amount_remaining=max(0, due - invoice["amount_paid"]),
        )

    def create_invoice(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        _allow(
            params,
            (
                "auto_advance",
                "collection_method",
                "currency",
                "customer",
                "days_until_due",
                "description",
                "due_date",
                "metadata",
                "pending_invoice_items_behavior",
            ),
        )
        customer = self._get("customer", _str(params, "customer", required=True), "customer")
        method = (
            _choice(params, "collection_method", ("charge_automatically", "send_invoice"))
            or "charge_automatically"
        )
        days = _int(params, "days_until_due")
        due_date = _int(params, "due_date")
        if method == "send_invoice" and days is None and due_date is None:
            raise _StripeError(
                400,
                "Invoices with collection_method=send_invoice need days_until_due or due_date.",
                param="days_until_due",
            )
        if method == "charge_automatically" and (days is not None or due_date is not None):
            raise _StripeError(
                400,
                "Due dates apply only to invoices with collection_method=send_invoice.",
                param="days_until_due" if days is not None else "due_date",
            )
        behavior = (
            _choice(
                params,
                "pending_invoice_items_behavior",
                ("exclude", "include", "include_and_require"),
            )
            or "exclude"  # the default since API 2022-08-01
        )
        pending = [
            i
            for i in self.objects["invoiceitem"].values()
            if i["customer"] == customer["id"] and i["invoice"] is None
        ]
        currency = (
            _currency(params, required=False)
            or customer["currency"]
            or (pending[0]["currency"] if pending else "usd")
        )
        taken = [i for i in pending if i["currency"] == currency] if behavior != "exclude" else []
        if behavior == "include_and_require" and not taken:
            raise _StripeError(
                400, "Nothing to invoice for customer", code="invoice_no_customer_line_items"
            )
        invoice_id = self.new_id(*_PREFIX["invoice"])
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "IE",
            "account_name": "Accord stand-in",
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": bool(_bool(params, "auto_advance")),
            "automatic_tax": {"enabled": False, "status": None},
            "billing_reason": "manual",
            "charge": None,
            "collection_method": method,
            "created": ctx.now,
            "currency": currency,
            "custom_fields": None,
            "customer": customer["id"],
            "customer_address": deepcopy(customer["address"]),
            "customer_email": customer["email"],
            "customer_name": customer["name"],
            "customer_phone": customer["phone"],
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": _str(params, "description"),
            "discount": None,
            "discounts": [],
            "due_date": due_date if due_date is not None else _due(ctx.now, days),
            "effective_at": None,
            "ending_balance": None,
            "footer": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "last_finalization_error": None,
            "lines": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": _metadata(params.get("metadata"), {}),
            "next_payment_attempt": None,
            "number": None,
            "on_behalf_of": None,
            "paid": False,
            "paid_out_of_band": False,
            "payment_intent": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": ctx.now,
            "period_start": ctx.now,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "quote": None,
            "receipt_number": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subscription": None,
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "tax": None,
            "test_clock": None,
            "total": 0,
            "total_discount_amounts": [],
            "total_excluding_tax": 0,
            "total_tax_amounts": [],
            "transfer_data": None,
            "webhooks_delivered_at": None,
        }
        self._items[invoice_id] = [i["id"] for i in taken]
        self._terms[invoice_id] = days
        for item in taken:
            item["invoice"] = invoice_id
        self._recompute(invoice)
        self._add("invoice", invoice)
        self._emit(ctx, "invoice.created", invoice)
        return invoice

    def finalize_invoice(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        invoice = self._get("invoice", path["id"])
        _allow(params, ("auto_advance",))
        if invoice["status"] != "draft":
            raise _StripeError(
                400,
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        customer = self.objects["customer"][invoice["customer"]]
        sequence = int(customer["next_invoice_sequence"])
        customer["next_invoice_sequence"] = sequence + 1
        auto_advance = _bool(params, "auto_advance")
        terms = self._terms.get(invoice["id"])
        invoice.update(
            number=f"{customer['invoice_prefix']}-{sequence:04d}",
            status="open",
            effective_at=ctx.now,
            hosted_invoice_url=f"https://invoice.stripe.com/i/acct_standin/test_{invoice['id']}",
            invoice_pdf=f"https://pay.stripe.com/invoice/acct_standin/test_{invoice['id']}/pdf",
        )
        if terms is not None:
            invoice["due_date"] = _due(ctx.now, terms)
        if auto_advance is not None:
            invoice["auto_advance"] = auto_advance
        invoice["status_transitions"]["finalized_at"] = ctx.now
        if invoice["amount_due"] > 0:
            intent = self._new_intent(
                ctx,
                amount=invoice["amount_due"],
                currency=invoice["currency"],
                customer=invoice["customer"],
                description=f"Invoice {invoice['number']}",
                metadata={},
                invoice=invoice["id"],
            )
            invoice["payment_intent"] = intent["id"]
            self._emit(ctx, "invoice.finalized", invoice)
        else:
            self._mark_paid(invoice, ctx.now)
            self._emit(ctx, "invoice.finalized", invoice)
            self._emit(ctx, "invoice.paid", invoice)
        return invoice

    @staticmethod
    def _mark_paid(invoice: dict[str, Any], now: int) -> None:
        invoice.update(status="paid", paid=True, amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = now

    # credit notes

    def create_credit_note(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        _allow(
            params,
            (
                "amount",
                "credit_amount",
                "invoice",
                "memo",
                "metadata",
                "out_of_band_amount",
                "reason",
            ),
        )
        invoice = self._get("invoice", _str(params, "invoice", required=True), "invoice")
        amount = _int(params, "amount", required=True) or 0
        reason = _choice(
            params, "reason", ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")
        )
        if invoice["status"] not in ("open", "paid"):
            raise _StripeError(
                400,
                "You can only create credit notes for open or paid invoices.",
                code="invoice_not_editable",
                param="invoice",
            )
        credited = (
            invoice["pre_payment_credit_notes_amount"] + invoice["post_payment_credit_notes_amount"]
        )
        pre_payment = invoice["status"] == "open"
        room = invoice["amount_remaining"] if pre_payment else invoice["total"] - credited
        if amount <= 0 or amount > room:
            raise _StripeError(
                400,
                f"The credit note amount must be positive and at most {room}.",
                param="amount",
            )
        credit = _int(params, "credit_amount") or 0
        out_of_band = _int(params, "out_of_band_amount") or 0
        if not pre_payment and credit + out_of_band != amount:
            raise _StripeError(
                400,
                "For a paid invoice the credit note amount must equal the sum of credit_amount, "
                "refund_amount and out_of_band_amount.",
                param="amount",
            )
        previous = {
            k: invoice[k]
            for k in (
                "amount_due",
                "amount_remaining",
                "pre_payment_credit_notes_amount",
                "post_payment_credit_notes_amount",
                "status",
            )
        }
        count = self._credit_notes.get(invoice["id"], 0) + 1
        self._credit_notes[invoice["id"]] = count
        note_id = self.new_id(*_PREFIX["credit_note"])
        memo = _str(params, "memo")
        note = {
            "id": note_id,
            "object": "credit_note",
            "amount": amount,
            "amount_shipping": 0,
            "created": ctx.now,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "customer_balance_transaction": None,
            "discount_amount": 0,
            "discount_amounts": [],
            "effective_at": ctx.now,
            "invoice": invoice["id"],
            "lines": {
                "object": "list",
                "data": [
                    {
                        "id": "cnli_" + note_id.removeprefix("cn_"),
                        "object": "credit_note_line_item",
                        "amount": amount,
                        "amount_excluding_tax": amount,
                        "description": memo or "Credit",
                        "discount_amount": 0,
                        "discount_amounts": [],
                        "livemode": False,
                        "quantity": 1,
                        "tax_amounts": [],
                        "tax_rates": [],
                        "type": "custom_line_item",
                        "unit_amount": amount,
                        "unit_amount_decimal": str(amount),
                        "unit_amount_excluding_tax": str(amount),
                    }
                ],
                "has_more": False,
                "url": f"/v1/credit_notes/{note_id}/lines",
            },
            "livemode": False,
            "memo": memo,
            "metadata": _metadata(params.get("metadata"), {}),
            "number": f"{invoice['number']}-CN-{count:02d}",
            "out_of_band_amount": out_of_band or None,
            "pdf": f"https://pay.stripe.com/credit_notes/acct_standin/test_{note_id}/pdf",
            "reason": reason,
            "refund": None,
            "shipping_cost": None,
            "status": "issued",
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "tax_amounts": [],
            "total": amount,
            "total_excluding_tax": amount,
            "type": "pre_payment" if pre_payment else "post_payment",
            "voided_at": None,
        }
        if pre_payment:
            invoice["pre_payment_credit_notes_amount"] += amount
            invoice["amount_due"] -= amount
            invoice["amount_remaining"] -= amount
            intent = self.objects["payment_intent"].get(invoice["payment_intent"] or "")
            if invoice["amount_remaining"] == 0:
                self._mark_paid(invoice, ctx.now)
                if intent is not None:
                    intent.update(
                        status="canceled", canceled_at=ctx.now, cancellation_reason="void_invoice"
                    )
            elif intent is not None:
                intent["amount"] = invoice["amount_remaining"]
        else:
            invoice["post_payment_credit_notes_amount"] += amount
            customer = self.objects["customer"][invoice["customer"]]
            customer["balance"] -= credit
        self._add("credit_note", note)
        self._emit(ctx, "credit_note.created", note)
        self._emit(
            ctx, "invoice.updated", invoice, {k: v for k, v in previous.items() if invoice[k] != v}
        )
        if previous["status"] != "paid" and invoice["status"] == "paid":
            self._emit(ctx, "invoice.paid", invoice)
        return note

    # payment intents

    def _new_intent(
        self,
        ctx: _Ctx,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        description: str | None,
        metadata: dict[str, str],
        invoice: str | None = None,
        payment_method: str | None = None,
    ) -> dict[str, Any]:
        intent_id = self.new_id(*_PREFIX["payment_intent"])
        secret = "".join(self._random.choice(_ALPHABET) for _ in range(24))
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{secret}",
            "confirmation_method": "automatic",
            "created": ctx.now,
            "currency": currency,
            "customer": customer,
            "description": description,
            "invoice": invoice,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": payment_method,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        self._add("payment_intent", intent)
        self._emit(ctx, "payment_intent.created", intent)
        return intent

    def create_payment_intent(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        _allow(
            params,
            (
                "amount",
                "confirm",
                "currency",
                "customer",
                "description",
                "metadata",
                "payment_method",
            ),
        )
        amount = _int(params, "amount", required=True) or 0
        currency = _currency(params, required=True) or ""
        if amount < 1:
            raise _StripeError(
                400, "Amount must be at least 1", code="amount_too_small", param="amount"
            )
        customer = _str(params, "customer")
        if customer is not None:
            self._get("customer", customer, "customer")
        method = self._method(params)
        intent = self._new_intent(
            ctx,
            amount=amount,
            currency=currency,
            customer=customer,
            description=_str(params, "description"),
            metadata=_metadata(params.get("metadata"), {}),
            payment_method=method,
        )
        if _bool(params, "confirm"):
            return self._confirm(ctx, intent)
        return intent

    @staticmethod
    def _method(params: Mapping[str, Any]) -> str | None:
        method = _str(params, "payment_method")
        if method is not None and not _TEST_METHODS.match(method):
            raise _missing("PaymentMethod", method, "payment_method")
        return method

    def confirm_payment_intent(
        self, ctx: _Ctx, params: dict[str, Any], path: Mapping[str, str]
    ) -> dict[str, Any]:
        intent = self._get("payment_intent", path["id"])
        _allow(params, ("payment_method",))
        method = self._method(params)
        if method is not None:
            intent["payment_method"] = method
        return self._confirm(ctx, intent)

    def _confirm(self, ctx: _Ctx, intent: dict[str, Any]) -> dict[str, Any]:
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise _StripeError(
                400,
                f"This PaymentIntent's status is {intent['status']}, so it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        method = intent["payment_method"]
        if method is None:
            raise _StripeError(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        if "Declined" in method:
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            }
            intent.update(status="requires_payment_method", last_payment_error=error)
            self._emit(ctx, "payment_intent.payment_failed", intent)
            raise _StripeError(
                402,
                "Your card was declined.",
                type="card_error",
                code="card_declined",
                saved=True,
                extra={"decline_code": "generic_decline", "payment_intent": deepcopy(intent)},
            )
        charge = "ch_" + str(intent["id"]).removeprefix("pi_")
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            latest_charge=charge,
            last_payment_error=None,
        )
        self._emit(ctx, "payment_intent.succeeded", intent)
        invoice = self.objects["invoice"].get(intent["invoice"] or "")
        if invoice is not None and invoice["status"] == "open":
            invoice["amount_paid"] += intent["amount"]
            invoice["amount_remaining"] = max(0, invoice["amount_due"] - invoice["amount_paid"])
            invoice["charge"] = charge
            invoice["attempted"] = True
            invoice["attempt_count"] += 1
            if invoice["amount_remaining"] == 0:
                self._mark_paid(invoice, ctx.now)
                self._emit(ctx, "invoice.payment_succeeded", invoice)
                self._emit(ctx, "invoice.paid", invoice)
        return intent


def _holds(obj: Mapping[str, Any], meta: str | None, name: str, value: str) -> bool:
    """One search clause: ``name:'value'``, or ``metadata['meta']:'value'``."""
    if meta is not None:
        return (obj.get("metadata") or {}).get(meta) == value
    return obj.get(name) == value


def _due(now: int, days: int | None) -> int | None:
    return None if days is None else now + days * 86400


_Handler = Callable[[_Store, _Ctx, dict[str, Any], Mapping[str, str]], dict[str, Any]]


# -- faults and limits --------------------------------------------------------------------


class _RateLimiter:
    """Stripe's per-second budget, counted separately for reads and writes."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._seen: dict[str, deque[float]] = {"read": deque(), "write": deque()}
        self._lock = threading.Lock()

    def admit(self, kind: str) -> float | None:
        """``None`` when the request may run, else the seconds until it could."""
        if self.per_second is None:
            return None
        now = time.monotonic()
        with self._lock:
            seen = self._seen[kind]
            while seen and seen[0] <= now - 1.0:
                seen.popleft()
            if len(seen) >= self.per_second:
                return max(0.001, seen[0] + 1.0 - now)
            seen.append(now)
            return None


class _DropLostResponses:
    """Turns a response marked lost into a connection closed without a byte.

    ASGI has no "abort", but uvicorn's h11 server closes the transport, sending
    nothing, when the application returns a value instead of ``None`` before
    starting a response; the value is a message that ends up in uvicorn's log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return None
        dropped = False

        async def guarded(message: Message) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start":
                dropped = any(name == _DROP_HEADER for name, _ in message.get("headers", ()))
            if not dropped:
                await send(message)

        await self.app(scope, receive, guarded)
        return _WITHHELD if dropped else None


# -- webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One attempt to deliver an event to the webhook endpoint."""

    event_id: str
    status: int | None
    """HTTP status of the endpoint's answer; ``None`` when it could not be reached."""
    error: str | None = None


class _WebhookSender:
    """Delivers events in the background, as Stripe does, signed with the endpoint secret."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._queue: queue.Queue[tuple[str, str, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.deliveries: list[WebhookDelivery] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stripe-webhooks", daemon=True)
        self._thread.start()

    def submit(self, url: str, secret: str, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self._queue.put((url, secret, event))

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    url, secret, event = item
                    payload = json.dumps(event).encode()
                    signature = sign_payload(payload, secret, int(self._clock()))
                    headers = {
                        "Content-Type": "application/json; charset=utf-8",
                        "Stripe-Signature": signature,
                        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    }
                    try:
                        answer = client.post(url, content=payload, headers=headers)
                        delivery = WebhookDelivery(event["id"], answer.status_code)
                    except httpx.HTTPError as exc:
                        delivery = WebhookDelivery(event["id"], None, f"{type(exc).__name__}")
                    self.deliveries.append(delivery)
                finally:
                    self._queue.task_done()


# -- the server ---------------------------------------------------------------------------


class StripeStandIn:
    """The stand-in, served by uvicorn on loopback in a background thread.

    ``faults``, ``webhook_url``, ``webhook_secret`` and ``search_lag`` may be
    changed while it runs. ``clock`` gives the Unix time stamped on objects and
    events and ages idempotency keys and events, so a test can make many
    events share one second or let a key expire. ``rate_limit`` is requests a
    second, per reads and per writes (``None`` lifts it).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        faults: Faults | None = None,
        rate_limit: float | None = 25.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        search_lag: float = 0.0,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        """The one key accepted; ``None`` accepts any ``sk_test_`` key."""
        self.faults = faults or Faults()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret or "whsec_" + "".join(
            random.Random(seed).choice(_ALPHABET) for _ in range(32)
        )
        self._store = _Store(clock, seed, search_lag)
        self._limiter = _RateLimiter(rate_limit)
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._webhooks = _WebhookSender(clock)
        self._served: BackgroundServer | None = None
        self.app = self._build_app()

    # -- what tests look at -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def counts(self) -> dict[str, int]:
        """Objects created so far, per Stripe object type (replays create nothing)."""
        with self._store.lock:
            return dict(self._store.counts)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Every stored object of one type, oldest first (copies)."""
        with self._store.lock:
            return deepcopy(list(self._store.objects[kind].values()))

    def events(self) -> list[dict[str, Any]]:
        """Every event, oldest first (copies)."""
        with self._store.lock:
            return deepcopy(self._store.events)

    @property
    def search_lag(self) -> float:
        """Seconds before a new object shows in search results (Stripe: up to a minute)."""
        return self._store.search_lag

    @search_lag.setter
    def search_lag(self, seconds: float) -> None:
        with self._store.lock:
            self._store.search_lag = seconds

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        return list(self._webhooks.deliveries)

    def flush_webhooks(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook delivery was attempted."""
        return self._webhooks.flush(timeout)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> StripeStandIn:
        self._served = BackgroundServer(
            _DropLostResponses(self.app),
            name="Stripe stand-in",
            host=self.host,
            port=self.port,
            graceful=1,
        )
        self.port = self._served.start()
        self._webhooks.start()
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
        self._webhooks.stop()

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------

    def _roll(self) -> float:
        with self._random_lock:
            return self._random.random()

    def _authenticate(self, header: str | None) -> None:
        if not header:
            raise _StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )
        scheme, _, credential = header.partition(" ")
        token = credential.strip()
        if scheme.lower() == "basic":
            try:
                token = base64.b64decode(token).decode().partition(":")[0]
            except ValueError:
                token = ""
        elif scheme.lower() != "bearer":
            token = ""
        if not token.startswith("sk_test_") or (self.api_key and token != self.api_key):
            shown = f"{token[:8]}{'*' * 12}{token[-4:]}" if len(token) > 12 else "****"
            raise _StripeError(
                401,
                f"Invalid API Key provided: {shown}",
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )

    async def _serve(self, request: Request, handler: _Handler, *, write: bool) -> Response:
        store = self._store
        headers = {"Request-Id": store.new_id("req_", 14), "Stripe-Version": API_VERSION}
        faults = self.faults
        key = request.headers.get("idempotency-key") if write else None
        ctx = _Ctx(
            now=int(store.clock()),
            request_id=headers["Request-Id"],
            idempotency_key=key,
            pending_webhooks=1 if self.webhook_url else 0,
        )
        try:
            self._authenticate(request.headers.get("authorization"))
            if faults.latency:
                await asyncio.sleep(faults.latency)
            wait = self._limiter.admit("write" if write else "read")
            if wait is not None:
                raise _StripeError(
                    429,
                    "Request rate limit exceeded. You can learn more about rate limits here "
                    "https://stripe.com/docs/rate-limits.",
                    code="rate_limit",
                    headers={"Retry-After": f"{wait:.3f}"},
                )
            roll = self._roll()
            if roll < faults.error_rate:
                raise _StripeError(
                    500,
                    "An unknown error occurred while processing your request.",
                    type="api_error",
                )
            if roll < faults.error_rate + faults.throttle_rate:
                raise _StripeError(
                    429,
                    "Too many requests hit the API too quickly.",
                    code="rate_limit",
                    headers={"Retry-After": str(faults.retry_after)},
                )
            raw = await request.body() if write else request.url.query
            try:
                params = parse_form(raw)
            except ValueError as exc:
                raise _StripeError(400, f"Invalid request body: {exc}") from None
            path = dict(request.path_params)
            status, body, replayed = store.execute(
                handler, ctx, params, path, key, request.url.path
            )
        except _StripeError as exc:
            self._deliver(ctx.events)  # a decline is an answer and an event
            return JSONResponse(exc.body, exc.status, headers={**headers, **exc.headers})
        self._deliver(ctx.events)
        if key is not None:
            headers["Idempotency-Key"] = key
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        elif write and self._roll() < faults.lost_response_rate:
            headers[_DROP_HEADER.decode()] = "1"  # applied, but the caller never hears of it
        return JSONResponse(body, status, headers=headers)

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        url = self.webhook_url
        if url and events:
            self._webhooks.submit(url, self.webhook_secret, events)

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        def route(path: str, method: str, handler: _Handler) -> None:
            write = method == "POST"

            async def endpoint(request: Request) -> Response:
                return await self._serve(request, handler, write=write)

            app.add_api_route(path, endpoint, methods=[method])

        def lister(kind: str, url: str) -> _Handler:
            return lambda store, ctx, params, path: store.list_objects(kind, params, url)

        def searcher(kind: str, url: str) -> _Handler:
            return lambda store, ctx, params, path: store.search(kind, params, url)

        def getter(kind: str) -> _Handler:
            return lambda store, ctx, params, path: _no_params(params, store.retrieve, kind, path)

        route("/v1/customers", "POST", _Store.create_customer)
        route("/v1/customers", "GET", lister("customer", "/v1/customers"))
        route("/v1/customers/search", "GET", searcher("customer", "/v1/customers/search"))
        route("/v1/customers/{id}", "GET", getter("customer"))
        route("/v1/customers/{id}", "POST", _Store.update_customer)
        route("/v1/invoiceitems", "POST", _Store.create_invoice_item)
        route("/v1/invoiceitems", "GET", lister("invoiceitem", "/v1/invoiceitems"))
        route("/v1/invoiceitems/{id}", "GET", getter("invoiceitem"))
        route("/v1/invoices", "POST", _Store.create_invoice)
        route("/v1/invoices", "GET", lister("invoice", "/v1/invoices"))
        route("/v1/invoices/search", "GET", searcher("invoice", "/v1/invoices/search"))
        route("/v1/invoices/{id}", "GET", getter("invoice"))
        route("/v1/invoices/{id}/finalize", "POST", _Store.finalize_invoice)
        route("/v1/credit_notes", "POST", _Store.create_credit_note)
        route("/v1/credit_notes", "GET", lister("credit_note", "/v1/credit_notes"))
        route("/v1/credit_notes/{id}", "GET", getter("credit_note"))
        route("/v1/payment_intents", "POST", _Store.create_payment_intent)
        route("/v1/payment_intents", "GET", lister("payment_intent", "/v1/payment_intents"))
        route(
            "/v1/payment_intents/search",
            "GET",
            searcher("payment_intent", "/v1/payment_intents/search"),
        )
        route("/v1/payment_intents/{id}", "GET", getter("payment_intent"))
        route("/v1/payment_intents/{id}/confirm", "POST", _Store.confirm_payment_intent)
        route("/v1/events", "GET", lambda store, ctx, params, path: store.list_events(params))
        route("/v1/events/{id}", "GET", getter("event"))

        async def unrecognised(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
            message = (
                f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/."
            )
            body = {"error": {"type": "invalid_request_error", "message": message}}
            return JSONResponse(body, 404 if status in (404, 405) else status)

        app.add_exception_handler(StarletteHTTPException, unrecognised)
        return app


def _no_params(
    params: Mapping[str, Any],
    retrieve: Callable[[str, str], dict[str, Any]],
    kind: str,
    path: Mapping[str, str],
) -> dict[str, Any]:
    _allow(params, ())
    return retrieve(kind, path["id"])
