"""Pairs read and healed through the vendor connectors.

A **binding** says how one vendor holds one pair's records: which vendor object
is read, how a record becomes the pair's comparable canonical form (through
the connector's ``mapping.py``, so a field name or a rounding rule is decided
once), which of the pair's fields the vendor carries at all, and how a fix
(one field, or a whole missing record) is written back. The key of every
projected record is the canonical id each vendor keeps beside its own id
(Salesforce ``Accord_Id__c``, NetSuite ``externalId``, Stripe
``metadata[accord_id]``); a record without one is not Accord's and is left out.

Given the hub's store, a side keys each record by the canonical id the hub's
cross-reference (:class:`~accord.store.Xref`) links its vendor id to, and
only falls back to the id the vendor keeps when there is no link: a customer
that was in the ERP before Accord (its ``externalId`` is the ERP's own) or a
CRM account Accord matched but never stamped is still the same record on both
sides. References (an invoice's customer) resolve the same way.

Only the fields both vendors carry are compared: NetSuite keeps no payment
terms on a customer, so ``payment_terms_days`` is not compared between
Salesforce and NetSuite rather than always differing.

Reads go through :class:`~accord.reconcile.sides.ConnectorSide` (and so through
the quota governor); references to other records (an invoice's customer) are
resolved to canonical ids by reading that object once per side. Writes go
through :class:`ReconcileWriter`, the effect executor's vendor for a system, so
a fix is an idempotent effect: the ledger records it first, and every write
here is an upsert or a ``PATCH`` of the same values, safe to repeat.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Engine

from accord.connectors.base import Connector, Cursor, Governor, VendorRecord, WriteRequest
from accord.errors import InvalidInput
from accord.reconcile.pairs import Pair
from accord.reconcile.sides import ConnectorSide, NotComparable
from accord.runtime.effects import Effect, EffectOutcome, Vendor

__all__ = [
    "BINDINGS",
    "CONNECTORS",
    "SOURCE_KEY",
    "Binding",
    "ReconcileWriter",
    "binding_for",
    "build_connector",
    "connector_side",
    "payment_key",
    "read_all",
]


# -- connectors from accord.yaml ------------------------------------------------------------

CONNECTORS: Mapping[str, tuple[str, str, str | None]] = {
    "salesforce": ("accord.connectors.salesforce.connector", "SalesforceConnector", "access_token"),
    "netsuite": ("accord.connectors.netsuite.connector", "NetSuiteConnector", None),
    "stripe": ("accord.connectors.stripe.connector", "StripeConnector", "api_key"),
    "harvest": ("accord.connectors.harvest.connector", "HarvestConnector", "access_token"),
    "tryton": ("accord.connectors.tryton.connector", "TrytonConnector", "password"),
}
"""Connector name → (module, class, the credential ``token_env``/``token_file`` fills)."""


def build_connector(
    system: str,
    connector: str,
    *,
    base_url: str | None,
    token: str | None,
    credentials: Mapping[str, str] | None = None,
    governor: Governor | None = None,
) -> Connector:
    """The connector of a configured system (``systems.<name>`` in ``accord.yaml``)."""
    try:
        module_name, class_name, token_name = CONNECTORS[connector]
    except KeyError:
        raise InvalidInput(
            f"no connector {connector!r} to read through (known: {', '.join(sorted(CONNECTORS))})",
            record=f"systems.{system}",
            field="connector",
        ) from None
    if not base_url:
        raise InvalidInput(
            "a system read by reconciliation needs its base_url",
            record=f"systems.{system}",
            field="base_url",
        )
    given = dict(credentials or {})
    if token_name is not None and token:
        given.setdefault(token_name, token)
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        built: Connector = cls(base_url=base_url, credentials=given, governor=governor)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, record=f"systems.{system}", field=exc.field) from None
    return built


# -- projections -------------------------------------------------------------------------------


class Refs(Protocol):
    """References of one side, each vendor object read once."""

    def __call__(self, object: str) -> Mapping[str, str]:
        """Vendor id → canonical id of every record of ``object``."""
        ...

    def rows(self, object: str) -> Mapping[str, Mapping[str, Any]]:
        """Vendor id → the whole record, for every record of ``object``."""
        ...

    def key(self, object: str, vendor_id: Any, own: Any) -> str | None:
        """The canonical id of the record ``vendor_id`` of ``object``: the one the hub
        linked it to, else ``own`` (the canonical id the vendor keeps, if any)."""
        ...


def _canonical(refs: Refs, object: str, vendor_id: Any) -> Any:
    """The canonical id a reference to ``vendor_id`` of ``object`` stands for; the
    vendor's own value when the hub knows no such record."""
    if vendor_id is None or vendor_id == "":
        return vendor_id
    return refs(object).get(str(vendor_id), vendor_id)


Project = Callable[[Mapping[str, Any], Refs], Mapping[str, Any] | None]
Translate = Callable[[str, str, Mapping[str, Any]], WriteRequest]
"""``(operation, key, canonical fields)`` → the vendor write (``update`` or ``create``)."""


@dataclass(frozen=True, slots=True)
class Binding:
    """How one vendor holds one pair's records."""

    object: str
    """The vendor object read (the connector's name for it)."""
    carries: frozenset[str]
    """The pair's fields (and total-grouping columns) this vendor holds."""
    project: Project
    """A vendor record → the canonical comparable form with ``id`` (or ``None``)."""
    translate: Translate | None = None
    """A fix → the vendor write; ``None``: reconciliation does not write this side."""
    references: tuple[str, ...] = field(default=())
    """Vendor objects whose ids the projection turns into canonical ids."""
    also: tuple[str, ...] = field(default=())
    """Further vendor objects read into the same side (Harvest expenses beside time)."""


def _domain(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    return text.removeprefix("www.").rstrip("/") or None


def _period(day: Any) -> str | None:
    return str(day)[:7] if day else None


def _unix_date(value: Any) -> str | None:
    from datetime import UTC, datetime

    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value), UTC).date().isoformat()


# Salesforce ---------------------------------------------------------------------------------

_SF_ACCOUNT_FIELDS = {
    "legal_name": "Name",
    "domain": "Website",
    "default_currency": "CurrencyIsoCode",
    "payment_terms_days": "Payment_Terms_Days__c",
    "status": "Accord_Status__c",
}


def _sf_account(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.salesforce.mapping import account_to_canonical

    account = account_to_canonical(row)
    key = refs.key("Account", row.get("Id"), account.get("accord_id"))
    if not key:
        return None
    return {
        "id": key,
        "legal_name": account["legal_name"],
        "domain": _domain(account["domain"]),
        "default_currency": account["default_currency"],
        "payment_terms_days": account["payment_terms_days"],
        "status": account["status"],
    }


def _sf_account_write(operation: str, key: str, data: Mapping[str, Any]) -> WriteRequest:
    from accord.connectors.salesforce.mapping import account_from_canonical

    if operation == "create":
        fields = account_from_canonical(data)
    else:
        fields = {}
        for name, value in data.items():
            if name not in _SF_ACCOUNT_FIELDS:
                raise InvalidInput("Salesforce holds no such account field", record=key, field=name)
            if name == "payment_terms_days" and value is not None:
                value = int(value)
            fields[_SF_ACCOUNT_FIELDS[name]] = value
    # an upsert by Accord_Id__c: creates the account, or sets just these fields
    return WriteRequest("Account", "upsert", fields, idempotency_key="", external_id=key)


# NetSuite -------------------------------------------------------------------------------------

_NS_SUBSIDIARY = "1"
"""The subsidiary a customer created by reconciliation belongs to (NetSuite's first)."""


def _ns_account(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.netsuite.mapping import account_from_customer

    account = account_from_customer(row)
    key = refs.key("customer", row.get("id"), account.get("id"))
    if not key:
        return None
    return {
        "id": key,
        "legal_name": account["legal_name"],
        "domain": _domain(account["domain"]),
        "default_currency": account["default_currency"],
        "status": account["status"],
    }


def _ns_customer_fields(key: str, data: Mapping[str, Any]) -> dict[str, Any]:
    from accord.connectors.netsuite.mapping import CURRENCY_IDS, ref

    body: dict[str, Any] = {}
    for name, value in data.items():
        if name == "legal_name":
            body["companyName"] = value
        elif name == "domain":
            body["url"] = f"https://{value}" if value else None
        elif name == "default_currency":
            if value not in CURRENCY_IDS:
                raise InvalidInput(
                    f"NetSuite has no currency {value!r}", record=key, field="default_currency"
                )
            body["currency"] = ref(CURRENCY_IDS[value])
        elif name == "status":
            body["isInactive"] = str(value) in ("inactive", "merged")
        else:
            raise InvalidInput("NetSuite holds no such customer field", record=key, field=name)
    return body


def _ns_account_write(operation: str, key: str, data: Mapping[str, Any]) -> WriteRequest:
    from accord.connectors.netsuite.mapping import customer_from_account

    if operation == "create":
        body = customer_from_account({**data, "id": key}, subsidiary_id=_NS_SUBSIDIARY)
        return WriteRequest("customer", "upsert", body, idempotency_key="", external_id=key)
    # a PATCH by external id: the same values again change nothing
    body = _ns_customer_fields(key, data)
    return WriteRequest("customer", "update", body, idempotency_key="", external_id=f"eid:{key}")


def _ns_invoice(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.netsuite.mapping import invoice_to_canonical

    invoice = invoice_to_canonical(row)
    key = refs.key("invoice", row.get("id"), invoice.get("id"))
    if not key:
        return None
    customer = invoice["customer_external_id"]
    return {
        "id": key,
        "number": invoice["number"],
        "account_id": _canonical(refs, "customer", customer),
        "currency": invoice["currency"],
        "net": invoice["net"],
        "tax": invoice["tax"],
        "gross": invoice["gross"],
        "amount_due": invoice["amount_due"],
        "status": invoice["status"],
        "period": _period(invoice["issue_date"]),
    }


def _ns_payment(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.netsuite.mapping import payment_to_canonical

    payment = payment_to_canonical(row)
    key = refs.key("customerPayment", row.get("id"), payment.get("id"))
    if not key:
        return None
    customer = payment["account_external_id"]
    return {
        "id": key,
        "account_id": _canonical(refs, "customer", customer),
        "currency": payment["currency"],
        "amount": payment["amount"],
        "status": payment["status"],
        "period": _period(payment["received_on"]),
    }


def _ns_credit_memo(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.netsuite.mapping import credit_memo_to_canonical

    memo = credit_memo_to_canonical(row)
    key = refs.key("creditMemo", row.get("id"), memo.get("id"))
    if not key:
        return None
    customer = memo["customer_external_id"]
    invoice = memo["invoice_external_id"]
    return {
        "id": key,
        "invoice_id": _canonical(refs, "invoice", invoice),
        "account_id": _canonical(refs, "customer", customer),
        "currency": memo["currency"],
        "amount": memo["total"],
        "period": _period(memo["issue_date"]),
    }


def _ns_project(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.netsuite.mapping import project_from_job

    job = project_from_job(row)
    key = refs.key("job", row.get("id"), job.get("id"))
    if not key:
        return None
    customer = job["account_external_id"]
    return {
        "id": key,
        "name": job["name"],
        "account_id": _canonical(refs, "customer", customer),
        "status": "active" if job["active"] else "closed",
    }


def _ns_project_write(operation: str, key: str, data: Mapping[str, Any]) -> WriteRequest:
    if operation == "create":
        account = data.get("account_id")
        if not account:
            raise InvalidInput(
                "a NetSuite job needs its customer, and the PSA's project names none"
                " that Accord knows: create it from the project's account",
                record=key,
                field="account_id",
            )
        body: dict[str, Any] = {
            "companyName": str(data.get("name") or "").strip() or key,
            "parent": {"externalId": str(account)},
            "isInactive": str(data.get("status")) != "active",
        }
        return WriteRequest("job", "upsert", body, idempotency_key="", external_id=key)
    body = {}
    for name, value in data.items():
        if name == "name":
            body["companyName"] = value
        elif name == "status":
            body["isInactive"] = str(value) != "active"
        else:
            raise InvalidInput("NetSuite holds no such job field", record=key, field=name)
    return WriteRequest("job", "update", body, idempotency_key="", external_id=f"eid:{key}")


# Stripe ----------------------------------------------------------------------------------------


def _stripe_invoice(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.stripe.mapping import from_stripe_amount, invoice_fields

    invoice = invoice_fields(row)
    key = refs.key("invoice", row.get("id"), invoice.get("id"))
    if not key or invoice["status"] in (None, "draft"):
        return None  # a draft is not issued yet: nothing to agree on
    customer = invoice["customer_external_id"]
    # Stripe's ``tax`` is the invoice's tax (none: no tax); net is the total without it
    tax = from_stripe_amount(int(row.get("tax") or 0), invoice["currency"])
    return {
        "id": key,
        "number": invoice["number"],
        "account_id": _canonical(refs, "customer", customer),
        "currency": invoice["currency"],
        "net": invoice["gross"] - tax,
        "tax": tax,
        "gross": invoice["gross"],
        "amount_due": invoice["amount_due"],
        "status": invoice["status"],
        "period": _period(invoice["issue_date"]),
    }


def payment_key(invoice_external_id: str) -> str:
    """The canonical id of the payment of a Stripe invoice (as quote to cash derives it)."""
    from accord.domain.ids import deterministic_id

    return deterministic_id("payment", invoice_external_id)


def _stripe_payment(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    """A Stripe invoice with money received → the payment the ERP must hold for it."""
    from accord.connectors.stripe.mapping import invoice_fields

    invoice = invoice_fields(row)
    if not invoice.get("id") or invoice["amount_paid"] <= 0:
        return None
    customer = invoice["customer_external_id"]
    paid_at = (row.get("status_transitions") or {}).get("paid_at")
    paid_on = _unix_date(paid_at) or invoice["issue_date"]
    return {
        "id": payment_key(str(invoice["external_id"])),
        "invoice_id": invoice["id"],
        "account_id": _canonical(refs, "customer", customer),
        "currency": invoice["currency"],
        "amount": invoice["amount_paid"],
        "status": "succeeded",
        "period": _period(paid_on),
    }


def _stripe_credit_note(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    from accord.connectors.stripe.mapping import credit_note_fields

    note = credit_note_fields(row)
    key = refs.key("credit_note", row.get("id"), note.get("id"))
    if not key:
        return None
    customer = row.get("customer")
    issued = _unix_date(row.get("effective_at") or row.get("created"))
    invoice = note["invoice_external_id"]
    return {
        "id": key,
        "invoice_id": _canonical(refs, "invoice", invoice),
        "account_id": _canonical(refs, "customer", customer),
        "currency": note["currency"],
        "amount": note["amount"],
        "status": note["status"],
        "period": _period(issued),
    }


SOURCE_KEY = "accord_source"
"""Stripe invoice-item metadata naming the PSA record the line bills (``harvest:time_entry:42``)."""


def _stripe_billed_line(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    """A Stripe invoice item on an issued invoice, keyed by the work it bills."""
    from accord.connectors.stripe.mapping import invoice_item_fields

    source = (row.get("metadata") or {}).get(SOURCE_KEY)
    if not source:
        return None  # not a line billing PSA work (a fee, a tax line)
    item = invoice_item_fields(row)
    invoice = refs.rows("invoice").get(item["invoice_external_id"] or "")
    if invoice is None or invoice.get("status") in ("draft", "void"):
        return None  # pending, on a draft, or voided: not billed (yet)
    customer = row.get("customer")
    return {
        "id": str(source),
        "account_id": _canonical(refs, "customer", customer),
        "currency": item["currency"],
        "amount": item["amount"],
    }


# Harvest ---------------------------------------------------------------------------------------


def _harvest_project(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    """A Harvest project, keyed by its ``code`` (Accord sets it to the canonical project id)."""
    from accord.connectors.harvest.mapping import project_to_canonical

    project = project_to_canonical(row)
    key = refs.key("projects", row.get("id"), project.get("code"))
    if not key:
        return None
    return {"id": key, "name": project["name"], "status": project["status"]}


def _harvest_work(row: Mapping[str, Any], refs: Refs) -> Mapping[str, Any] | None:
    """Approved billable time or an approved billable expense, valued in its client's currency."""
    from accord.connectors.harvest.mapping import hours_text, money_minor
    from accord.domain.money import Money

    if not row.get("is_closed") or not row.get("billable"):
        return None  # not approved, or not billable: nothing to invoice
    client = row.get("client") or {}
    where = f"harvest {row.get(_OBJECT)} {row.get('id')}"
    if row.get(_OBJECT) == "expenses":
        currency = client.get("currency")
        if not currency:
            raise InvalidInput("the expense's client has no currency", record=where, field="client")
        amount = money_minor(row.get("total_cost"), str(currency))
        key = f"harvest:expense:{row['id']}"
    else:
        found = refs.rows("clients").get(str(client.get("id")))
        currency = (found or {}).get("currency")
        if not currency:
            raise InvalidInput(
                "the time entry's client has no currency", record=where, field="client"
            )
        rate = row.get("billable_rate")
        key = f"harvest:time_entry:{row['id']}"
        if rate is None:
            # the PSA leaves pricing to Accord's rate cards: what the time is worth is the
            # billing engine's to say, and an unbilled entry has no price anywhere yet
            raise NotComparable(
                "billable time without a billable rate in the PSA: its value cannot be"
                " compared (rates are kept in Accord's rate cards)",
                key=key,
            )
        value = Decimal(hours_text(row.get("hours"))) * Decimal(str(rate))
        amount = Money.from_decimal(value, str(currency)).minor
    return {
        "id": key,
        "currency": currency,
        "amount": amount,
        "period": _period(row.get("spent_date")),
    }


_INVOICE_FIELDS = frozenset(
    {"number", "account_id", "currency", "net", "tax", "gross", "amount_due", "status", "period"}
)
_MONEY_MOVES = frozenset({"account_id", "currency", "amount", "period"})

BINDINGS: Mapping[tuple[str, str], Binding] = {
    ("accounts", "salesforce"): Binding(
        "Account",
        frozenset(_SF_ACCOUNT_FIELDS),
        _sf_account,
        _sf_account_write,
    ),
    ("accounts", "netsuite"): Binding(
        "customer",
        frozenset({"legal_name", "domain", "default_currency", "status"}),
        _ns_account,
        _ns_account_write,
    ),
    ("projects", "harvest"): Binding("projects", frozenset({"name", "status"}), _harvest_project),
    ("projects", "netsuite"): Binding(
        "job",
        frozenset({"name", "account_id", "status"}),
        _ns_project,
        _ns_project_write,
        references=("customer",),
    ),
    ("invoices", "stripe"): Binding(
        "invoice", _INVOICE_FIELDS, _stripe_invoice, references=("customer",)
    ),
    ("invoices", "netsuite"): Binding(
        "invoice", _INVOICE_FIELDS, _ns_invoice, references=("customer",)
    ),
    # a Stripe payment is the money received on an invoice; NetSuite's SuiteQL rows hold no
    # applications (a sublist), so the payment's invoice is matched through its key only
    ("payments", "stripe"): Binding(
        "invoice", _MONEY_MOVES | {"invoice_id", "status"}, _stripe_payment
    ),
    ("payments", "netsuite"): Binding(
        "customerPayment", _MONEY_MOVES | {"status"}, _ns_payment, references=("customer",)
    ),
    # NetSuite's credit memos carry no status this connector reads
    ("credit_memos", "stripe"): Binding(
        "credit_note", _MONEY_MOVES | {"invoice_id", "status"}, _stripe_credit_note
    ),
    ("credit_memos", "netsuite"): Binding(
        "creditMemo", _MONEY_MOVES | {"invoice_id"}, _ns_credit_memo
    ),
    # the PSA knows no account ids and an invoice line no work period: both compare
    # currency and amount, and total them per currency
    ("billable_work", "harvest"): Binding(
        "time_entries",
        frozenset({"currency", "amount", "period"}),
        _harvest_work,
        also=("expenses",),
    ),
    ("billable_work", "stripe"): Binding(
        "invoiceitem", frozenset({"account_id", "currency", "amount"}), _stripe_billed_line
    ),
}
"""(pair, connector) → how that vendor holds the pair's records."""


def binding_for(pair: Pair, connector: str) -> Binding:
    """The binding of ``pair`` on ``connector``, or an error naming what is supported."""
    try:
        return BINDINGS[(pair.name, connector)]
    except KeyError:
        known = sorted(c for p, c in BINDINGS if p == pair.name)
        raise InvalidInput(
            f"pair {pair.name!r} cannot be read through the {connector} connector"
            f" (supported: {', '.join(known) or 'none yet'})",
            record=f"reconcile.sources.{pair.name}",
            field="system",
        ) from None


_REFERENCE_KEYS: Mapping[tuple[str, str], Callable[[Mapping[str, Any]], str | None]] = {
    ("stripe", "customer"): lambda row: (row.get("metadata") or {}).get("accord_id"),
    ("stripe", "invoice"): lambda row: (row.get("metadata") or {}).get("accord_id"),
    ("netsuite", "customer"): lambda row: row.get("externalId"),
    ("netsuite", "invoice"): lambda row: row.get("externalId"),
    ("salesforce", "Account"): lambda row: row.get("Accord_Id__c"),
}


def read_all(connector: Connector, object: str) -> list[VendorRecord]:
    """Every record of ``object`` as it is now, through ``connector``.

    Stripe's change feed is its events, kept 30 days, so Stripe objects are
    listed (``GET /v1/invoices``); the others are read from the beginning.
    """
    from accord.connectors.stripe.connector import StripeConnector
    from accord.connectors.stripe.mapping import stamp

    if isinstance(connector, StripeConnector):
        return [
            VendorRecord(object, str(obj["id"]), stamp(int(obj.get("created") or 0)), obj)
            for obj in connector.list_objects(object)
        ]
    records, _ = connector.read_changes(object, Cursor())
    return records


class _Links:
    """Vendor id → canonical id as the hub's cross-reference links them, each looked up once."""

    def __init__(self, store: Engine, system: str) -> None:
        self.store = store
        self.system = system
        self._known: dict[tuple[str, str], str | None] = {}

    def resolve(self, object: str, vendor_ids: Iterable[str]) -> dict[str, str]:
        """The linked canonical id of each of ``vendor_ids`` that has one (one connection)."""
        from accord.store import Xref

        wanted = [i for i in dict.fromkeys(vendor_ids) if (object, i) not in self._known]
        if wanted:
            with self.store.connect() as conn:
                xref = Xref(conn)
                for vendor_id in wanted:
                    link = xref.by_external(self.system, object, vendor_id)
                    self._known[(object, vendor_id)] = None if link is None else link.canonical_id
        found: dict[str, str] = {}
        for vendor_id in vendor_ids:
            canonical = self._known[(object, vendor_id)]
            if canonical is not None:
                found[vendor_id] = canonical
        return found


class _References:
    """Vendor id → canonical id (or the whole record) per referenced object, read once."""

    def __init__(self, connector: Connector, links: _Links | None = None) -> None:
        self.connector = connector
        self.links = links
        self._rows: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._maps: dict[str, dict[str, str]] = {}

    def key(self, object: str, vendor_id: Any, own: Any) -> str | None:
        if self.links is not None and vendor_id not in (None, ""):
            linked = self.links.resolve(object, [str(vendor_id)]).get(str(vendor_id))
            if linked:
                return linked
        return str(own) if own not in (None, "") else None

    def rows(self, object: str) -> Mapping[str, Mapping[str, Any]]:
        """Every record of ``object`` by vendor id."""
        found = self._rows.get(object)
        if found is None:
            found = {r.id: r.data for r in read_all(self.connector, object)}
            self._rows[object] = found
        return found

    def __call__(self, object: str) -> Mapping[str, str]:
        found = self._maps.get(object)
        if found is None:
            canonical = _REFERENCE_KEYS.get((self.connector.name, object))
            if canonical is None:
                raise InvalidInput(
                    f"{self.connector.name} has no canonical id on {object!r}", field=object
                )
            rows = self.rows(object)
            linked = {} if self.links is None else self.links.resolve(object, list(rows))
            found = {}
            for vendor_id, data in rows.items():
                value = linked.get(vendor_id) or canonical(data)
                if value:
                    found[vendor_id] = str(value)
            self._maps[object] = found
        return found


_OBJECT = "_accord_object"
"""Set on each record of a side read from several vendor objects: the object it came from."""


def _reader(connector: Connector, binding: Binding) -> Callable[[], list[VendorRecord]] | None:
    """A full reader for vendors and sides that need one; ``None``: read incrementally."""
    from accord.connectors.stripe.connector import StripeConnector

    if not binding.also and not isinstance(connector, StripeConnector):
        return None

    def read() -> list[VendorRecord]:
        if not binding.also:
            return read_all(connector, binding.object)
        records = []
        for object in (binding.object, *binding.also):
            for record in read_all(connector, object):
                data = {**record.data, _OBJECT: object}
                records.append(VendorRecord(object, f"{object}/{record.id}", record.modified, data))
        return records

    return read


def connector_side(
    pair: Pair,
    connector: Connector,
    *,
    name: str | None = None,
    store: Engine | None = None,
) -> ConnectorSide:
    """One side of ``pair`` read through ``connector``, projected onto the pair's fields.

    With ``store`` (the hub's database) records and references are keyed by the
    canonical ids the hub's cross-reference links their vendor ids to; without
    it, by the canonical id each vendor record keeps (and records without one
    are left out).
    """
    binding = binding_for(pair, connector.name)
    links = None if store is None else _Links(store, connector.name)
    refs = _References(connector, links)

    def project(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return binding.project(data, refs)

    return ConnectorSide(
        connector,
        binding.object,
        project,
        name=name or connector.name,
        carries=binding.carries,
        reader=_reader(connector, binding),
    )


# -- writes --------------------------------------------------------------------------------------


class ReconcileWriter(Vendor):
    """The effect executor's vendor for a system that reconciliation heals.

    An effect's request (from :meth:`accord.reconcile.heal.Healer.effect`) names
    the pair's entity type, ``update`` or ``create``, the record's canonical id
    and the canonical fields; the pair's binding turns it into the vendor's
    upsert or ``PATCH``, which the connector sends through the quota governor.
    """

    def __init__(self, connector: Connector, pairs: Sequence[Pair]) -> None:
        self.connector = connector
        self._translate: dict[str, Translate] = {}
        for pair in pairs:
            binding = BINDINGS.get((pair.name, connector.name))
            if binding is not None and binding.translate is not None:
                self._translate[pair.entity_type] = binding.translate

    def request(self, effect: Effect) -> WriteRequest:
        body = effect.request
        entity = str(body.get("object"))
        translate = self._translate.get(entity)
        if translate is None:
            raise InvalidInput(
                f"reconciliation does not write {entity!r} to {self.connector.name}",
                record=effect.key,
                field="object",
            )
        key = str(body.get("external_id") or "")
        if not key:
            raise InvalidInput("a reconciliation fix needs the record's id", record=effect.key)
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise InvalidInput("a reconciliation fix needs its fields", record=key, field="data")
        made = translate(str(body.get("operation", "update")), key, data)
        return WriteRequest(
            made.object,
            made.operation,
            made.data,
            idempotency_key=effect.key,
            external_id=made.external_id,
            priority=made.priority,
        )

    def perform(self, effect: Effect) -> EffectOutcome:
        return self.connector.write(self.request(effect))

    def lookup(self, effect: Effect) -> EffectOutcome | None:
        return self.connector.lookup(self.request(effect))

    def close(self) -> None:
        self.connector.close()
