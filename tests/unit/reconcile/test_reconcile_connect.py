"""Vendor records projected onto the pairs' comparable form, and fixes turned into vendor writes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from accord.errors import InvalidInput
from accord.reconcile.connect import BINDINGS, ReconcileWriter, binding_for, build_connector
from accord.reconcile.pairs import pair_named
from accord.runtime.effects import Effect


class _Refs:
    def __call__(self, object: str) -> dict[str, str]:
        return {"cus_1": "acc-1", "77": "acc-1"}

    def rows(self, object: str) -> dict[str, dict[str, Any]]:
        return {}


_refs = _Refs()


def test_a_stripe_and_a_netsuite_invoice_project_to_the_same_comparable_form() -> None:
    stripe = BINDINGS[("invoices", "stripe")].project(
        {
            "id": "in_1",
            "object": "invoice",
            "metadata": {"accord_id": "inv-1"},
            "number": "INV-1",
            "customer": "cus_1",
            "currency": "eur",
            "status": "open",
            "total": 123450,
            "tax": 20575,
            "amount_paid": 0,
            "amount_remaining": 123450,
            "status_transitions": {"finalized_at": 1740787200},  # 2025-03-01
        },
        _refs,
    )
    netsuite = BINDINGS[("invoices", "netsuite")].project(
        {
            "id": "901",
            "externalId": "inv-1",
            "otherRefNum": "INV-1",
            "entity": {"id": "77"},
            "currency": {"id": "4"},
            "status": "Open",
            "total": Decimal("1234.50"),
            "taxTotal": Decimal("205.75"),
            "amountRemaining": Decimal("1234.50"),
            "tranDate": "2025-03-01",
        },
        _refs,
    )
    assert (
        stripe
        == netsuite
        == {
            "id": "inv-1",
            "number": "INV-1",
            "account_id": "acc-1",
            "currency": "EUR",
            "net": 102875,
            "tax": 20575,
            "gross": 123450,
            "amount_due": 123450,
            "status": "issued",
            "period": "2025-03",
        }
    )


def test_a_stripe_draft_and_a_record_without_an_accord_id_are_left_out() -> None:
    project = BINDINGS[("invoices", "stripe")].project
    draft = {"id": "in_2", "metadata": {"accord_id": "x"}, "currency": "eur", "status": "draft"}
    assert project(draft, _refs) is None
    assert project({"id": "in_3", "currency": "eur", "status": "open"}, _refs) is None


def test_an_unsupported_pair_and_connector_is_refused_naming_what_is() -> None:
    with pytest.raises(InvalidInput, match="supported: netsuite, salesforce"):
        binding_for(pair_named("accounts"), "stripe")


def test_a_connector_needs_a_known_name_and_a_base_url() -> None:
    with pytest.raises(InvalidInput, match="no connector 'xero'"):
        build_connector("erp", "xero", base_url="https://x", token=None)
    with pytest.raises(InvalidInput) as raised:
        build_connector("crm", "salesforce", base_url=None, token="t")
    assert raised.value.record == "systems.crm" and raised.value.field == "base_url"


def test_a_fix_becomes_the_vendors_write_with_the_effect_key() -> None:
    connector = build_connector("crm", "salesforce", base_url="https://sf.invalid", token="t")
    writer = ReconcileWriter(connector, [pair_named("accounts")])
    effect = Effect(
        "salesforce",
        "reconcile.update",
        "k-1",
        {
            "object": "account",
            "operation": "update",
            "external_id": "acc-1",
            "data": {"default_currency": "EUR"},
        },
    )
    request = writer.request(effect)
    assert (request.object, request.operation, request.external_id) == (
        "Account",
        "upsert",
        "acc-1",
    )
    assert dict(request.data) == {"CurrencyIsoCode": "EUR"} and request.idempotency_key == "k-1"
    unknown = Effect(
        "salesforce", "reconcile.update", "k-2", {**effect.request, "object": "payment"}
    )
    with pytest.raises(InvalidInput, match="does not write 'payment'"):
        writer.request(unknown)
    writer.close()
