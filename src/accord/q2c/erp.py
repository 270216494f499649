"""The ERP side of quote to cash (NetSuite): canonical in the ledger, NetSuite on the wire.

Effects to the ERP are recorded in the ledger in canonical form — integer minor
units, plain strings — and turned into NetSuite bodies (exact decimals) only
when sent, by :class:`ErpVendor`, with :mod:`accord.connectors.netsuite.mapping`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accord.connectors.base import ConnectorVendor, Cursor, WriteRequest
from accord.connectors.netsuite import mapping
from accord.connectors.netsuite.connector import NetSuiteConnector
from accord.errors import InvalidInput
from accord.runtime.effects import Effect, EffectOutcome

__all__ = ["ErpVendor", "erp_customers"]


def _body(request: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(request["object"])
    doc: Mapping[str, Any] = request["canonical"]
    refs: Mapping[str, Any] = request.get("refs", {})
    if kind == "customer":
        return mapping.customer_from_account(doc, subsidiary_id=str(refs["subsidiary"]))
    if kind == "job":
        return mapping.job_from_project(doc, customer_id=str(refs["customer"]))
    if kind == "invoice":
        return mapping.invoice_from_canonical(
            doc,
            customer_id=str(refs["customer"]),
            item_id=str(refs["item"]),
            subsidiary_id=str(refs["subsidiary"]),
        )
    if kind == "creditMemo":
        invoice = refs.get("invoice")
        return mapping.credit_memo_from_canonical(
            doc,
            customer_id=str(refs["customer"]),
            item_id=str(refs["item"]),
            invoice_id=str(invoice) if invoice else None,
        )
    if kind == "customerPayment":
        return mapping.payment_from_canonical(
            doc,
            customer_id=str(refs["customer"]),
            applications={str(k): int(v) for k, v in refs.get("applications", {}).items()},
        )
    raise InvalidInput(f"no ERP mapping for {kind!r}", field="object")


class ErpVendor(ConnectorVendor):
    """A NetSuite connector behind the effect executor, mapping canonical requests."""

    def __init__(self, connector: NetSuiteConnector) -> None:
        super().__init__(connector)
        self.batch_size = 0

    def _write(self, effect: Effect) -> WriteRequest:
        request = effect.request
        if "canonical" not in request:
            return self._request(effect)
        return WriteRequest(
            object=str(request["object"]),
            operation=str(request.get("operation", "upsert")),
            data=_body(request),
            idempotency_key=effect.key,
            external_id=request.get("external_id"),
            priority=int(request.get("priority", 5)),
        )

    def perform(self, effect: Effect) -> EffectOutcome:
        return self.connector.write(self._write(effect))

    def lookup(self, effect: Effect) -> EffectOutcome | None:
        return self.connector.lookup(self._write(effect))


def erp_customers(connector: NetSuiteConnector) -> list[dict[str, Any]]:
    """Every customer the ERP has, as canonical account fields with its internal id."""
    records, _ = connector.read_changes("customer", Cursor())
    customers = []
    for record in records:
        fields = mapping.account_from_customer(record.data)
        customers.append(fields)
    return customers
