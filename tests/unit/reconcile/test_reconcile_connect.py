"""Vendor records projected onto the pairs' comparable form, and fixes turned into vendor writes."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from accord.connectors.base import Cursor, VendorRecord
from accord.errors import InvalidInput
from accord.ownership import default_policy
from accord.reconcile.connect import BINDINGS, ReconcileWriter, binding_for, build_connector
from accord.reconcile.pairs import pair_named
from accord.reconcile.run import reconcile_pair
from accord.reconcile.sides import ConnectorSide, MemorySide, NotComparable
from accord.runtime.effects import Effect


class _Refs:
    def __call__(self, object: str) -> dict[str, str]:
        return {"cus_1": "acc-1", "77": "acc-1"}

    def rows(self, object: str) -> dict[str, dict[str, Any]]:
        return {}

    def key(self, object: str, vendor_id: Any, own: Any) -> str | None:
        return str(own) if own else None


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


def test_time_without_a_billable_rate_is_not_comparable_and_says_why() -> None:
    class _Clients(_Refs):
        def rows(self, object: str) -> dict[str, dict[str, Any]]:
            return {"5": {"id": 5, "currency": "EUR"}}

    project = BINDINGS[("billable_work", "harvest")].project
    entry = {
        "id": 42,
        "_accord_object": "time_entries",
        "is_closed": True,
        "billable": True,
        "hours": 2.5,
        "client": {"id": 5},
        "spent_date": "2025-03-03",
    }
    with pytest.raises(NotComparable) as raised:
        project(entry, _Clients())
    assert raised.value.key == "harvest:time_entry:42"
    assert "billable rate" in raised.value.reason
    valued = project({**entry, "billable_rate": "120.00"}, _Clients())
    assert valued == {
        "id": "harvest:time_entry:42",
        "currency": "EUR",
        "amount": 30000,
        "period": "2025-03",
    }


def test_a_side_lists_what_it_could_not_compare_and_the_run_reports_it() -> None:
    class _Harvest:
        name = "harvest"

        def read_changes(self, object: str, cursor: Cursor) -> tuple[list[VendorRecord], Cursor]:
            rows = [
                VendorRecord(object, "1", "t1", {"id": "a", "amount": 100}),
                VendorRecord(object, "2", "t2", {"id": "b", "amount": None}),
            ]
            return rows, cursor

    def project(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if data["amount"] is None:
            raise NotComparable("no amount", key=f"work:{data['id']}")
        return data

    left = ConnectorSide(_Harvest(), "work", project)  # type: ignore[arg-type]
    right = MemorySide("billing", {"a": {"id": "a", "amount": 100}})
    pair = pair_named("billable_work")
    report = reconcile_pair(pair, left, right, policy=default_policy(), heal=False)
    assert report.comparison.clean and report.comparison.left_rows == 1
    assert report.not_comparable == [{"side": "harvest", "key": "work:b", "reason": "no amount"}]
    assert report.to_json()["not_comparable"] == report.not_comparable
