"""The Tryton connector: JSON-RPC to a real ``trytond`` (8.x).

``base_url`` is the database's root, ``http://HOST:PORT/DATABASE/``; calls go
to ``rpc/`` below it. ``credentials`` are ``login`` and ``password``. The
connector logs in with ``common.db.login`` (→ user id and session) and sends
``Authorization: Session base64(login:user_id:session)``; when the session
expires (401) it logs in again once and repeats the call. Every model call
carries the user's context (company, employee, language) from
``res.user.get_preferences``.

What it covers (see :mod:`.mapping` for the fields):

* **read** incrementally — ``account``, ``project``, ``time_entry``,
  ``invoice`` (with its lines), ``payment`` (the move lines that pay
  customer invoices; ``account_invoice`` has no separate payment document),
  ``opportunity``.
  Deleted records are not seen (Tryton keeps no tombstones); reconciliation
  finds them.
* **write** — create, update (``external_id`` = Tryton id) and upsert
  (``external_id`` = the stored reference) of ``account``, ``project``,
  ``time_entry``, ``opportunity`` (not its state, which moves by Tryton's
  buttons) and ``invoice`` (``status: issued`` posts it; its lines are set
  on create only, credit notes and cancelling are not covered); create of
  ``payment`` through Tryton's own *Pay invoice* wizard. Every create is
  look-up-before-create on the stored reference (:mod:`.mapping` names the
  field per object), so a repeat or a lost response makes one record.

Incremental reads follow the SDK's cursor semantics. Tryton can only sort by
real columns and its stamp is ``coalesce(write_date, create_date)``, so a read
first takes one consistent snapshot — ids and stamps of every record changed
since the cursor, in a single call — sorts it by (stamp, id), and then reads
the records page by page. A record that changes during the read gets a stamp
later than everything in the snapshot, so the next read picks it up, and no
record is skipped for having changed while pages were being fetched.

Errors: Tryton's ``UserError``/``UserWarning`` (validation, access, missing
records) → :class:`~accord.errors.InvalidInput`; ``ConcurrencyException``,
"database is locked", 429, 5xx and connection failures →
:class:`~accord.errors.TransientError`.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from accord.connectors.base import (
    Capability,
    Connector,
    Cursor,
    NotSupported,
    Page,
    VendorRecord,
    WriteRequest,
)
from accord.connectors.tryton import mapping
from accord.errors import AccordError, InvalidInput, TransientError
from accord.runtime.effects import EffectOutcome

__all__ = ["TrytonConnector", "TrytonRpcError"]

_OPEN_SNAPSHOTS = 8
"""Reads in progress kept at once; an abandoned one is dropped after this many."""
_TRANSIENT_HINTS = ("database is locked", "OperationalError", "could not serialize")


class TrytonRpcError(InvalidInput):
    """Tryton refused the call (a ``UserError`` or another server exception)."""

    def __init__(self, message: str, *, kind: str, record: str | None = None) -> None:
        super().__init__(message, record=record)
        self.kind = kind
        """Tryton's exception name (``UserError``, ``UserWarning``, …)."""


def _classify_rpc_error(error: Any, model: str | None) -> AccordError:
    """A JSON-RPC ``error`` member as an Accord error."""
    if isinstance(error, list | tuple) and error:
        kind = str(error[0])
        detail = error[1] if len(error) > 1 else ""
        if kind == "UserError" and isinstance(detail, list | tuple):
            message = " - ".join(str(part) for part in detail[:2] if part)
            return TrytonRpcError(message, kind=kind, record=model)
        if kind == "UserWarning" and isinstance(detail, list | tuple):
            message = " - ".join(str(part) for part in detail[1:3] if part)
            return TrytonRpcError(f"warning needs confirmation: {message}", kind=kind, record=model)
        if kind == "ConcurrencyException":
            return TransientError(f"Tryton: concurrent modification: {detail}")
        if kind == "LoginException":
            return TrytonRpcError(f"login refused: {detail}", kind=kind, record=model)
        if any(hint in kind for hint in _TRANSIENT_HINTS):
            return TransientError(f"Tryton: {kind}")
        return TrytonRpcError(f"server error: {kind}", kind="ServerError", record=model)
    return TrytonRpcError(f"unexpected error: {error!r}", kind="ServerError", record=model)


@dataclass
class _Snapshot:
    object: str
    entries: list[tuple[str, int]]
    """(stamp, id) of every record changed since the cursor, sorted."""


@dataclass
class TrytonConnector(Connector):
    """Tryton over JSON-RPC: reads by modification stamp, writes with references."""

    name: ClassVar[str] = "tryton"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.READ, Capability.WRITE, Capability.UPSERT}
    )

    page_size: int = 200
    language: str = "en"
    _session: tuple[int, str] | None = field(default=None, init=False, repr=False)
    _context: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _defaults: dict[str, int] | None = field(default=None, init=False, repr=False)
    _snapshots: dict[str, _Snapshot] = field(default_factory=dict, init=False, repr=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)

    # -- RPC ----------------------------------------------------------------------------

    def _post(self, method: str, params: Sequence[Any], *, model: str | None) -> Any:
        """One JSON-RPC call; returns ``result`` or raises a classified error."""
        body = json.dumps(
            {"method": method, "params": mapping.to_rpc(list(params)), "id": next(self._ids)}
        )
        headers = {"Content-Type": "application/json"}
        if self._session is not None:
            user_id, session = self._session
            login = self.credentials.get("login", "admin")
            token = base64.b64encode(f"{login}:{user_id}:{session}".encode()).decode()
            headers["Authorization"] = f"Session {token}"
        response = self.request("POST", "rpc/", content=body, headers=headers)
        try:
            payload = json.loads(response.content, object_hook=mapping.from_rpc)
        except ValueError as exc:
            raise TransientError(f"Tryton answered {method} with no JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise TransientError(f"Tryton answered {method} with {type(payload).__name__}")
        if "error" in payload and payload["error"] is not None:
            raise _classify_rpc_error(payload["error"], model)
        return payload.get("result")

    def login(self) -> None:
        """Open a session and load the user's context."""
        self._session = None
        login = self.credentials.get("login", "admin")
        password = self.credentials.get("password", "")
        try:
            result = self._post(
                "common.db.login", [login, {"password": password}, self.language], model=None
            )
        except InvalidInput as exc:
            if _is_unauthorized(exc):
                raise InvalidInput(
                    f"Tryton refused the login of {login!r}", record="credentials"
                ) from exc
            raise
        self._session = (int(result[0]), str(result[1]))
        preferences = self._post("model.res.user.get_preferences", [True, {}], model="res.user")
        self._context = {
            key: preferences[key]
            for key in ("company", "employee", "language")
            if preferences.get(key) is not None
        }

    def call(
        self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None
    ) -> Any:
        """``model.<model>.<method>(*args, context)``, logging in when needed."""
        return self._authenticated(f"model.{model}.{method}", args, context, model=model)

    def _authenticated(
        self, method: str, args: Sequence[Any], context: Mapping[str, Any] | None, *, model: str
    ) -> Any:
        if self._session is None:
            self.login()
        for attempt in (1, 2):
            params = [*args, {**self._context, **(context or {})}]
            try:
                return self._post(method, params, model=model)
            except InvalidInput as exc:
                if attempt == 1 and _is_unauthorized(exc):
                    self.login()  # the session expired: once more with a fresh one
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._session is not None:
            try:
                self._post("common.db.logout", [], model=None)
            except AccordError:
                pass
            self._session = None
        super().close()

    # -- read ---------------------------------------------------------------------------

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        spec = _spec(object)
        if page is None:
            token = uuid.uuid4().hex
            rows = self.call(
                spec.model,
                "search_read",
                [*spec.domain, *mapping.stamp_domain(cursor.value)],
                0,
                None,
                [("id", "ASC")],
                ["id", "create_date", "write_date"],
                context={"active_test": False},
            )
            entries = sorted((mapping.modified_stamp(row), int(row["id"])) for row in rows)
            while len(self._snapshots) >= _OPEN_SNAPSHOTS:  # reads abandoned half-way
                del self._snapshots[next(iter(self._snapshots))]
            self._snapshots[token] = _Snapshot(object, entries)
            offset = 0
        else:
            token, _, start = page.partition(":")
            known = self._snapshots.get(token)
            if known is None or known.object != object or not start.isdigit():
                raise InvalidInput(f"unknown page token {page!r}", record=object)
            offset = int(start)
        snapshot = self._snapshots[token]
        chunk = snapshot.entries[offset : offset + self.page_size]
        stamps = dict((ident, stamp) for stamp, ident in chunk)
        records = self._read(object, [ident for _, ident in chunk])
        found = [
            VendorRecord(object, str(row["id"]), stamps[int(row["id"])], row)
            for row in records
            if int(row["id"]) in stamps  # deleted since the snapshot: gone
        ]
        found.sort(key=lambda record: (record.modified, int(record.id)))
        following = offset + self.page_size
        if following >= len(snapshot.entries):
            del self._snapshots[token]
            return Page(found)
        return Page(found, f"{token}:{following}")

    def _read(self, object: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        spec = _spec(object)
        rows: list[dict[str, Any]] = self.call(
            spec.model,
            "search_read",
            [("id", "in", list(ids))],
            0,
            None,
            [("id", "ASC")],
            mapping.READ_FIELDS[object],
            context={"active_test": False},
        )
        if object == "invoice":
            line_ids = [line for row in rows for line in row.get("lines") or []]
            lines = (
                self.call("account.invoice.line", "read", line_ids, mapping.INVOICE_LINE_FIELDS)
                if line_ids
                else []
            )
            by_id = {line["id"]: line for line in lines}
            for row in rows:
                row["lines"] = [by_id[i] for i in row.get("lines") or [] if i in by_id]
        return rows

    def get(self, object: str, external_id: str) -> dict[str, Any] | None:
        """One record by Tryton id, as read (``None`` when it does not exist)."""
        rows = self._read(object, [_as_id(external_id, object)])
        return rows[0] if rows else None

    # -- write --------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> EffectOutcome:
        spec = _spec(request.object)
        if request.operation not in ("create", "update", "upsert"):
            raise InvalidInput(f"unknown operation {request.operation!r}", record=request.object)
        if request.operation == "update":
            if request.object == "payment":
                raise NotSupported("Tryton payments are posted moves: they are not updated")
            return self._update(
                request.object, _as_id(request.external_id, request.object), request
            )
        reference = _reference(request)
        existing = self._find(request.object, reference)
        if existing is not None:
            if request.operation == "upsert" and request.object != "payment":
                return self._update(request.object, existing, request)
            return self._finish(request, existing, reference, replayed=True)
        if request.object == "payment":
            return self._pay(request, reference)
        values = self._values(request.object, request.data, reference, creating=True)
        created = self.call(spec.model, "create", [values])
        return self._finish(request, int(created[0]), reference, replayed=False)

    def lookup(self, request: WriteRequest) -> EffectOutcome | None:
        """The record an earlier attempt created, found by its stored reference."""
        if request.operation != "create":
            return None  # update and upsert find or overwrite by themselves: safe to send again
        reference = _reference(request)
        found = self._find(request.object, reference)
        if found is None:
            return None
        return self._finish(request, found, reference, replayed=True)

    def _find(self, object: str, reference: str) -> int | None:
        spec = _spec(object)
        fields = ["id", "move.description" if object == "payment" else spec.reference_field]
        rows = self.call(
            spec.model,
            "search_read",
            mapping.reference_domain(object, reference),
            0,
            None,
            [("id", "ASC")],
            fields,
            context={"active_test": False},
        )
        exact = [int(row["id"]) for row in rows if mapping.reference_of(object, row) == reference]
        return exact[0] if exact else None

    def _finish(
        self, request: WriteRequest, ident: int, reference: str, *, replayed: bool
    ) -> EffectOutcome:
        """Complete what the create promised (posting an issued invoice) and report."""
        result: dict[str, Any] = {"object": request.object, "id": ident, "reference": reference}
        if request.object == "invoice" and request.data.get("status") == "issued":
            state = self.call("account.invoice", "read", [ident], ["state", "number"])[0]
            if state["state"] in ("draft", "validated"):
                self.call("account.invoice", "post", [ident])
                state = self.call("account.invoice", "read", [ident], ["state", "number"])[0]
            result.update(state=state["state"], number=state["number"])
        return EffectOutcome(str(ident), result, replayed=replayed)

    def _update(self, object: str, ident: int, request: WriteRequest) -> EffectOutcome:
        spec = _spec(object)
        values = self._values(object, request.data, None, creating=False, current=ident)
        if values:
            self.call(spec.model, "write", [ident], values)
        reference = mapping.reference_of(object, self.get(object, str(ident)) or {})
        return self._finish(request, ident, reference or "", replayed=False)

    def _values(
        self,
        object: str,
        data: Mapping[str, Any],
        reference: str | None,
        *,
        creating: bool,
        current: int | None = None,
    ) -> dict[str, Any]:
        if object == "account":
            return mapping.account_values(data, reference=reference, creating=creating)
        if object == "project":
            comment = None
            if current is not None and "comment" in data:
                comment = self.call("project.work", "read", [current], ["comment"])[0]["comment"]
            return mapping.project_values(
                data,
                reference=reference,
                creating=creating,
                product=self.defaults()["product"],
                current_comment=comment,
            )
        if object == "time_entry":
            work = None
            if creating or "project_external_id" in data:
                work = self._timesheet_work(data.get("project_external_id"))
            description = None
            if current is not None and "activity" in data:
                description = self.call("timesheet.line", "read", [current], ["description"])[0][
                    "description"
                ]
            return mapping.time_entry_values(
                data,
                reference=reference,
                creating=creating,
                timesheet_work=work,
                current_description=description,
            )
        if object == "invoice":
            address = currency = None
            if creating:
                party = _as_id(data.get("account_external_id"), "invoice")
                address = self._invoice_address(party)
                if data.get("currency"):
                    currency = self._currency(str(data["currency"]), object)
            return mapping.invoice_values(
                data,
                reference=reference,
                creating=creating,
                defaults=self.defaults(),
                invoice_address=address,
                currency=currency,
            )
        if object == "opportunity":
            currency = None
            if creating and data.get("currency"):
                currency = self._currency(str(data["currency"]), object)
            return mapping.opportunity_values(
                data, reference=reference, creating=creating, currency=currency
            )
        raise NotSupported(f"tryton cannot write {object!r}")

    # -- helpers that look things up once ----------------------------------------------

    def defaults(self) -> dict[str, int]:
        """Ids the writes need: journal, accounts, payment term and method, product."""
        if self._defaults is not None:
            return self._defaults

        def first(model: str, domain: list[Any], fields: list[str] | None = None) -> Any:
            rows = self.call(model, "search_read", domain, 0, 1, [("id", "ASC")], fields or ["id"])
            if not rows:
                raise InvalidInput(f"Tryton has no {model} matching {domain}", record=model)
            return rows[0]

        product = first("product.product", [("type", "=", "service")], ["id", "default_uom"])
        defaults = {
            "journal": first("account.journal", [("type", "=", "revenue")])["id"],
            "receivable": first(
                "account.account", [("type.receivable", "=", True), ("closed", "!=", True)]
            )["id"],
            "revenue": first(
                "account.account", [("type.revenue", "=", True), ("closed", "!=", True)]
            )["id"],
            "payment_method": first("account.invoice.payment.method", [])["id"],
            "product": product["id"],
            "unit": product["default_uom"],
        }
        terms = self.call(
            "account.invoice.payment_term", "search_read", [], 0, 1, [("id", "ASC")], ["id"]
        )
        if terms:
            defaults["payment_term"] = terms[0]["id"]
        self._defaults = {key: int(value) for key, value in defaults.items()}
        return self._defaults

    def _timesheet_work(self, project: Any) -> int:
        ident = _as_id(project, "time_entry", field="project_external_id")
        rows = self.call("project.work", "read", [ident], ["timesheet_works"])
        if not rows or not rows[0]["timesheet_works"]:
            raise InvalidInput(
                f"project {ident} takes no timesheets",
                record="time_entry",
                field="project_external_id",
            )
        return int(rows[0]["timesheet_works"][0])

    def _invoice_address(self, party: int) -> int:
        rows = self.call("party.party", "read", [party], ["addresses"])
        if not rows or not rows[0]["addresses"]:
            raise InvalidInput(
                f"party {party} has no address to invoice",
                record="invoice",
                field="account_external_id",
            )
        return int(rows[0]["addresses"][0])

    def _currency(self, code: str, object: str) -> int:
        rows = self.call(
            "currency.currency", "search_read", [("code", "=", code)], 0, 1, None, ["id"]
        )
        if not rows:
            raise InvalidInput(f"Tryton has no currency {code}", record=object, field="currency")
        return int(rows[0]["id"])

    def _pay(self, request: WriteRequest, reference: str) -> EffectOutcome:
        """Run Tryton's *Pay invoice* wizard (``account.invoice.pay``) over RPC."""
        data = request.data
        invoice = _as_id(data.get("invoice_external_id"), "payment", field="invoice_external_id")
        amount = mapping.decimal_field(data, "amount", object="payment")
        if amount <= 0:
            raise InvalidInput("must be positive", record="payment", field="amount")
        when = mapping.date_field(data, "received_on", object="payment")
        context = {
            "active_id": invoice,
            "active_ids": [invoice],
            "active_model": "account.invoice",
        }
        wizard = "wizard.account.invoice.pay"
        session, _, _ = self._authenticated(f"{wizard}.create", [], None, model="account.invoice")
        try:
            start = self._authenticated(
                f"{wizard}.execute", [session, {}, "start"], context, model="account.invoice"
            )
            form = _form(start)
            form.update(
                amount=amount,
                description=reference,
                payment_method=self.defaults()["payment_method"],
            )
            if when is not None:
                form["date"] = when
            step = self._authenticated(
                f"{wizard}.execute",
                [session, {"start": form}, "choice"],
                context,
                model="account.invoice",
            )
            if "view" in step:  # less than due: keep the rest open (a partial payment)
                ask = _form(step)
                ask["type"] = "partial"
                self._authenticated(
                    f"{wizard}.execute",
                    [session, {"start": form, "ask": ask}, "pay"],
                    context,
                    model="account.invoice",
                )
        finally:
            try:
                self._authenticated(f"{wizard}.delete", [session], context, model="account.invoice")
            except AccordError:
                pass
        found = self._find("payment", reference)
        if found is None:
            raise TransientError(f"the payment of invoice {invoice} did not appear")
        return self._finish(request, found, reference, replayed=False)


def _spec(object: str) -> mapping.ObjectSpec:
    spec = mapping.OBJECTS.get(object)
    if spec is None:
        raise InvalidInput(
            f"tryton has no object {object!r} (known: {', '.join(mapping.OBJECTS)})",
            record=object,
        )
    return spec


def _as_id(value: Any, object: str, *, field: str = "external_id") -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise InvalidInput(
            f"needs a Tryton id, got {value!r}", record=object, field=field
        ) from None


def _reference(request: WriteRequest) -> str:
    """What the record stores to be found again (see :mod:`.mapping`)."""
    if request.operation == "upsert":
        if not request.external_id:
            raise InvalidInput("an upsert needs the external id", record=request.object)
        return request.external_id
    given = request.data.get("reference")
    return str(given) if given else request.idempotency_key


def _form(step: Any) -> dict[str, Any]:
    """The default values of a wizard's form view, without the ``x.`` display keys."""
    view = step.get("view", {}) if isinstance(step, Mapping) else {}
    defaults = view.get("defaults", {})
    return {key: value for key, value in defaults.items() if not key.endswith(".")}


def _is_unauthorized(error: InvalidInput) -> bool:
    return error.message.split(" ", 1)[0] == "401"
