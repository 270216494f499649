"""The Stripe connector: reads ``/v1/events``, verifies signed webhooks, writes idempotently.

Reads. Stripe has no "changed since" filter on its objects, but every change
is an event, so incremental reads page through ``GET /v1/events`` with
``created[gte]`` set to the cursor's second. Events come newest first and many
share one second; the framework skips those already seen by id. A record's id
is therefore the *event* id (two changes of one customer in one second are two
records), its ``data`` the whole event. Stripe keeps events for 30 days: a
cursor older than that needs a full re-read, not this.

Writes. Every create carries the effect's key as ``Idempotency-Key``; within
Stripe's 24 h a retry of a lost response is replayed, not repeated. A second
call that completes a write (finalising an invoice, confirming a payment)
gets its own derived key, so a retry resumes where the first attempt stopped.
Each object is tagged ``metadata[accord_id]`` (and ``metadata[accord_key]``,
the effect key) so that :meth:`StripeConnector.lookup` finds it after the
keys have expired. Customers are found with Stripe's search, which Stripe
documents as eventually consistent (up to a minute): a look-up that misses a
customer created seconds ago falls back to sending again with the same key,
which Stripe replays — so either way one customer is made.

Webhooks. ``Stripe-Signature: t=…,v1=…`` is an HMAC-SHA256 of ``"{t}.{body}"``
under the endpoint's secret; a delivery is refused unless one ``v1`` matches
and ``t`` is within the tolerance (replayed deliveries are refused).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

from accord.connectors.base import (
    Capability,
    Connector,
    Cursor,
    NotSupported,
    Page,
    VendorRecord,
    WebhookEvent,
    WriteRequest,
)
from accord.connectors.stripe import mapping
from accord.errors import InvalidInput
from accord.runtime.effects import EffectOutcome

__all__ = ["API_VERSION", "SIGNATURE_HEADER", "StripeConnector", "encode_form"]

API_VERSION = "2023-08-16"
"""The Stripe API version this connector and its mapping are written for (sent on every call)."""

SIGNATURE_HEADER = "Stripe-Signature"

ACCORD_KEY = "accord_key"
"""Metadata key holding the effect key that created a Stripe object."""

_OBJECTS = ("customer", "invoiceitem", "invoice", "credit_note", "payment_intent")
_LIST_PATHS = {
    "customer": "/v1/customers",
    "invoiceitem": "/v1/invoiceitems",
    "invoice": "/v1/invoices",
    "credit_note": "/v1/credit_notes",
    "payment_intent": "/v1/payment_intents",
}

_Reply = tuple[Mapping[str, Any], bool]
"""A Stripe object and whether Stripe replayed it from its idempotency store."""


def encode_form(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Parameters → Stripe's form encoding with bracket notation.

    ``{"metadata": {"k": "v"}}`` becomes ``metadata[k]=v``, lists become
    ``key[0]``, ``key[1]``; booleans are ``true``/``false`` and ``None`` is left
    out (Stripe reads an empty string as "unset", which must be said on purpose).
    """
    pairs: list[tuple[str, str]] = []

    def walk(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for sub, item in value.items():
                walk(f"{key}[{sub}]", item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(f"{key}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        else:
            pairs.append((key, str(value)))

    for name, value in params.items():
        walk(name, value)
    return pairs


def _search_literal(value: str) -> str:
    """A value quoted for Stripe's search language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class StripeConnector(Connector):
    """Stripe through its REST API; credentials ``api_key`` and ``webhook_secret``."""

    name: ClassVar[str] = "stripe"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.READ, Capability.WEBHOOKS, Capability.WRITE}
    )

    page_size: int = 100
    """Events per page (Stripe allows 1–100)."""
    webhook_tolerance: float = 300.0
    """Seconds a signed delivery stays acceptable; Stripe's libraries default to 300."""

    # -- hooks ------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        key = self.credentials.get("api_key")
        if not key:
            raise InvalidInput("Stripe needs a secret key", record="credentials", field="api_key")
        return {"Authorization": f"Bearer {key}", "Stripe-Version": API_VERSION}

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        """One page of events, newest first, at or after the cursor's second.

        ``object`` is ``event`` for every event, or a Stripe object name
        (``invoice``) for the events about that kind only.
        """
        params: dict[str, Any] = {"limit": self.page_size}
        if cursor.value is not None:
            params["created[gte]"] = mapping.unix_time(cursor.value)
        if object != "event":
            params["type"] = f"{object}.*"
        if page is not None:
            params["starting_after"] = page
        body = self.request("GET", "/v1/events", params=params).json()
        records = [self._record(event) for event in body["data"]]
        more = bool(body.get("has_more")) and bool(records)
        return Page(records, next_page=records[-1].id if more else None)

    @staticmethod
    def _record(event: Mapping[str, Any]) -> VendorRecord:
        obj = event["data"]["object"]
        return VendorRecord(
            object=str(obj.get("object", "")),
            id=str(event["id"]),
            modified=mapping.stamp(int(event["created"])),
            data=event,
            deleted=str(event["type"]).endswith(".deleted"),
        )

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Sequence[WebhookEvent]:
        secret = self.credentials.get("webhook_secret")
        if not secret:
            raise InvalidInput(
                "no webhook signing secret configured", record="credentials", field="webhook_secret"
            )
        header = next(
            (v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None
        )
        if not header:
            raise InvalidInput("missing", record="webhook", field=SIGNATURE_HEADER)
        timestamp: int | None = None
        signatures: list[str] = []
        for part in header.split(","):
            label, _, value = part.strip().partition("=")
            if label == "t":
                try:
                    timestamp = int(value)
                except ValueError:
                    raise InvalidInput(
                        f"unreadable timestamp {value!r}", record="webhook", field=SIGNATURE_HEADER
                    ) from None
            elif label == "v1":
                signatures.append(value)
        if timestamp is None or not signatures:
            raise InvalidInput(
                "needs t= and at least one v1= signature", record="webhook", field=SIGNATURE_HEADER
            )
        signed = f"{timestamp}.".encode() + body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            raise InvalidInput(
                "no signature matches the payload", record="webhook", field=SIGNATURE_HEADER
            )
        skew = abs(now.timestamp() - timestamp)
        if skew > self.webhook_tolerance:
            raise InvalidInput(
                f"timestamp is {skew:.0f} s from now, beyond the {self.webhook_tolerance:.0f} s "
                "tolerance",
                record="webhook",
                field=SIGNATURE_HEADER,
            )
        try:
            event = json.loads(body)
            obj = event["data"]["object"]
            return [
                WebhookEvent(
                    event_id=str(event["id"]),
                    event_type=str(event["type"]),
                    object=str(obj.get("object", "")),
                    data=obj,
                    occurred_at=datetime.fromtimestamp(int(event["created"]), UTC),
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not a Stripe event: {exc}", record="webhook") from exc

    def write(self, request: WriteRequest) -> EffectOutcome:
        """Create (or update a customer); ``request.object`` is the Stripe object name.

        ``request.data`` holds canonical fields plus the Stripe ids they refer to
        (``customer``, ``invoice``); see :mod:`accord.connectors.stripe.mapping`.
        An invoice is finalised unless ``finalize`` is false; a payment intent
        is confirmed when ``payment_method`` is given. The outcome is marked
        replayed when Stripe answered every call from its idempotency store.
        """
        data = request.data
        reply: _Reply
        match (request.object, request.operation):
            case ("customer", "create"):
                reply = self._post("/v1/customers", mapping.customer_params(data), request)
            case ("customer", "update"):
                if not request.external_id:
                    raise InvalidInput("an update needs the customer id", field="external_id")
                path = f"/v1/customers/{request.external_id}"
                params = mapping.customer_params(data, partial=True)
                reply = self._post(path, params, request, tag=False)
            case ("invoiceitem", "create"):
                reply = self._post("/v1/invoiceitems", mapping.invoice_item_params(data), request)
            case ("invoice", "create"):
                reply = self._post("/v1/invoices", mapping.invoice_params(data), request)
                reply = self._finish_invoice(reply, request)
            case ("credit_note", "create"):
                reply = self._post("/v1/credit_notes", mapping.credit_note_params(data), request)
            case ("payment_intent", "create"):
                params = mapping.payment_intent_params(data)
                reply = self._post("/v1/payment_intents", params, request)
                reply = self._finish_payment(reply, request)
            case _:
                raise NotSupported(
                    f"stripe cannot {request.operation} {request.object!r} "
                    f"[{request.idempotency_key}]; objects: {', '.join(_OBJECTS)}"
                )
        obj, replayed = reply
        return EffectOutcome(str(obj["id"]), mapping.summary(obj), replayed=replayed)

    def lookup(self, request: WriteRequest) -> EffectOutcome | None:
        """The object an earlier attempt of ``request`` created, if Stripe has it.

        Customers are searched by ``metadata[accord_id]``; other objects are
        listed under their customer or invoice (Stripe's lists are consistent,
        its search is not) and matched by ``metadata[accord_key]``. A found
        invoice or payment that the earlier attempt left half done is finished
        with the same derived key the write would use.
        """
        if request.operation != "create":
            return None  # an update is safe to send again
        data = request.data
        customer = {"customer": str(data.get("customer"))}
        found: Mapping[str, Any] | None = None
        match request.object:
            case "customer":
                accord_id = data.get("id")
                query = (
                    f"metadata['{mapping.ACCORD_ID}']:{_search_literal(str(accord_id))}"
                    if accord_id
                    else f"metadata['{ACCORD_KEY}']:{_search_literal(request.idempotency_key)}"
                )
                found = self._search("/v1/customers/search", query, request.priority)
            case "invoiceitem" if data.get("customer"):
                found = self._find_listed("/v1/invoiceitems", customer, request)
            case "invoice" if data.get("customer"):
                found = self._find_listed("/v1/invoices", customer, request)
                if found is not None:
                    found, _ = self._finish_invoice((found, True), request)
            case "credit_note" if data.get("invoice"):
                by_invoice = {"invoice": str(data["invoice"])}
                found = self._find_listed("/v1/credit_notes", by_invoice, request)
            case "payment_intent" if data.get("customer"):
                found = self._find_listed("/v1/payment_intents", customer, request)
                if found is not None:
                    found, _ = self._finish_payment((found, True), request)
        if found is None:
            return None
        return EffectOutcome(str(found["id"]), mapping.summary(found), replayed=True)

    # -- calls ------------------------------------------------------------------------

    def _post(
        self,
        path: str,
        params: Mapping[str, Any],
        request: WriteRequest,
        *,
        suffix: str = "",
        tag: bool = True,
    ) -> _Reply:
        """One idempotent POST; ``suffix`` derives the key of a follow-up call.

        Returns the object and whether Stripe answered from its idempotency
        store (``Idempotent-Replayed: true``) rather than acting.
        """
        body = dict(params)
        if tag:
            body["metadata"] = {**body.get("metadata", {}), ACCORD_KEY: request.idempotency_key}
        response = self.request(
            "POST",
            path,
            priority=request.priority,
            content=urlencode(encode_form(body)).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": request.idempotency_key + suffix,
            },
        )
        obj: dict[str, Any] = response.json()
        return obj, response.headers.get("Idempotent-Replayed") == "true"

    def _finish_invoice(self, reply: _Reply, request: WriteRequest) -> _Reply:
        invoice, replayed = reply
        if invoice.get("status") != "draft" or request.data.get("finalize", True) is False:
            return reply
        path = f"/v1/invoices/{invoice['id']}/finalize"
        final, again = self._post(path, {}, request, suffix=":finalize", tag=False)
        return final, replayed and again

    def _finish_payment(self, reply: _Reply, request: WriteRequest) -> _Reply:
        intent, replayed = reply
        method = request.data.get("payment_method")
        if not method or intent.get("status") not in (
            "requires_payment_method",
            "requires_confirmation",
        ):
            return reply
        path = f"/v1/payment_intents/{intent['id']}/confirm"
        params = {"payment_method": method}
        final, again = self._post(path, params, request, suffix=":confirm", tag=False)
        return final, replayed and again

    def _search(self, path: str, query: str, priority: int) -> dict[str, Any] | None:
        body = self.request("GET", path, priority=priority, params={"query": query}).json()
        data: list[dict[str, Any]] = body["data"]
        return data[0] if data else None

    def _listed(
        self, path: str, filters: Mapping[str, str], priority: int
    ) -> Iterator[dict[str, Any]]:
        """Every object of a Stripe list, page after page."""
        params: dict[str, Any] = {**filters, "limit": 100}
        while True:
            body = self.request("GET", path, priority=priority, params=params).json()
            yield from body["data"]
            if not body.get("has_more") or not body["data"]:
                return
            params["starting_after"] = body["data"][-1]["id"]

    def list_objects(
        self, object: str, filters: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every object of one kind as it is now (``GET /v1/{objects}``), newest first.

        Unlike :meth:`read_changes`, which reads the events Stripe keeps for 30
        days, this reads the objects themselves: what a full comparison needs.
        ``object`` is a Stripe object name (``invoice``, ``credit_note``).
        """
        path = _LIST_PATHS.get(object)
        if path is None:
            raise NotSupported(f"stripe does not list {object!r}; objects: {', '.join(_OBJECTS)}")
        return self._listed(path, dict(filters or {}), 5)

    def _find_listed(
        self, path: str, filters: Mapping[str, str], request: WriteRequest
    ) -> dict[str, Any] | None:
        for obj in self._listed(path, filters, request.priority):
            if (obj.get("metadata") or {}).get(ACCORD_KEY) == request.idempotency_key:
                return obj
        return None
