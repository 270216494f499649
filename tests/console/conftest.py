"""A store seeded with what the console shows, and an app over it.

The seed has invoices and billable time (so every KPI has a value), an item
in each queue role's exception queue, a dead letter, one business trace with
ids in two systems, a reconciliation run with discrepancies, and quota use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from accord.api.app import create_app
from accord.api.keys import create_key
from accord.config import Settings
from accord.reconcile.store import ReconcileRuns
from accord.runtime.pipeline import DEAD_LETTER
from accord.store import Exceptions, Inbox, InboxStatus, Records, Xref, make_engine, upgrade
from accord.store.api_tables import API_ROLES
from accord.store.quota_tables import quota_state, quota_usage
from accord.store.reconcile_tables import DISCREPANCY_CLASSES
from accord.store.tables import inbox

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN = "run-invoices-0001"


@dataclass
class Seeded:
    engine: Engine
    keys: dict[str, str]
    items: dict[str, str]
    """Exception item id per owning role (``admin`` holds the dead letter)."""


def _day(now: datetime, days_ago: int) -> str:
    return (now - timedelta(days=days_ago)).date().isoformat()


def seed(engine: Engine) -> Seeded:
    now = datetime.now(UTC)
    keys = {
        role: create_key(engine, role, name=f"{role} desk", actor="test").secret
        for role in API_ROLES
    }
    items: dict[str, str] = {}
    with engine.begin() as conn:
        records = Records(conn)
        put = records.put
        put(
            "account",
            "acme",
            {"legal_name": "Acme GmbH", "currency": "EUR"},
            system="salesforce",
            actor="test",
            trace_id=TRACE,
        )
        invoices = [
            ("INV-1", "partially_paid", 40, 1_200_000, 600_000, 0),
            ("INV-2", "issued", 10, 300_000, 300_000, 50_000),
            ("INV-3", "paid", 70, 500_000, 0, 0),
            ("INV-4", "issued", 120, 80_000, 80_000, 0),
        ]
        for number, status, age, gross, due, credited in invoices:
            put(
                "invoice",
                number,
                {
                    "status": status,
                    "issue_date": _day(now, age),
                    "currency": "EUR",
                    "gross": gross,
                    "amount_due": due,
                    "credited": credited,
                    "account_id": "acme",
                },
                system="tryton",
                actor="test",
                trace_id=TRACE if number == "INV-1" else None,
            )
        put("credit_memo", "CM-1", {"invoice_id": "INV-2"}, system="tryton", actor="test")
        entries = [
            ("t1", "billed", 52, "INV-1", 165_000),
            ("t2", "billed", 47, "INV-1", 220_000),
            ("t3", "billed", 18, "INV-2", 100_000),
            ("t4", "billed", 11, "INV-2", 90_000),
            ("t5", "unbilled", 45, None, 75_000),
            ("t6", "unbilled", 3, None, 60_000),
        ]
        for entry_id, billing, approved_ago, invoice_id, amount in entries:
            data = {
                "approval": "approved",
                "billable": True,
                "billing": billing,
                "approved_on": _day(now, approved_ago),
                "amount": amount,
                "currency": "EUR",
                "project_id": "P-7",
            }
            if invoice_id:
                data["invoice_id"] = invoice_id
            put("time_entry", entry_id, data, system="harvest", actor="test")
        xref = Xref(conn)
        xref.link("account", "acme", "salesforce", "Account", "001Dn00000Acme")
        xref.link("account", "acme", "tryton", "party.party", "42")
        xref.link("invoice", "INV-1", "tryton", "account.invoice", "1001")
        Inbox(conn).accept(
            "salesforce",
            "evt-0001",
            event_type="opportunity.closed_won",
            payload={"id": "006Dn0000Deal"},
            trace_id=TRACE,
        )
        queue = Exceptions(conn)
        items["finance"] = queue.raise_(
            "amount_mismatch",
            role="finance",
            summary="INV-1 gross differs between Tryton and Xero",
            context={
                "account": "acme",
                "invoice_id": "INV-1",
                "amount_minor": 1_200_000,
                "currency": "EUR",
            },
            trace_id=TRACE,
        ).id
        items["pmo"] = queue.raise_(
            "ownership_conflict",
            role="pmo",
            summary="project P-7 end date changed in CRM",
            context={"account": "acme", "project": "P-7", "field": "end_date"},
        ).id
        items["sales_ops"] = queue.raise_(
            "duplicate_customer",
            role="sales_ops",
            summary="Acme GmbH may duplicate ACME Gmbh",
            context={"account": "acme"},
        ).id
        Inbox(conn).accept(
            "stripe",
            "evt_poison",
            event_type="charge.succeeded",
            payload={"amount": "not a number"},
        )
        seq = conn.execute(select(inbox.c.seq).where(inbox.c.event_id == "evt_poison")).scalar_one()
        Inbox(conn).mark(seq, InboxStatus.DEAD, error="amount is not an integer")
        items["admin"] = queue.raise_(
            DEAD_LETTER,
            role="admin",
            summary="stripe event evt_poison: amount is not an integer",
            context={"kind": "event", "seq": seq, "reason": "amount is not an integer"},
        ).id
        runs = ReconcileRuns(conn)
        runs.start(RUN, "invoices", left="tryton", right="xero")
        found = [
            runs.row(
                key="INV-1",
                category="amount_mismatch",
                field="gross",
                left="12000.00",
                right="11000.00",
                owner="tryton",
                fix={"action": "write", "target": "xero"},
                state="exception",
                exception_id=items["finance"],
            ),
            runs.row(
                key="INV-9",
                category="missing",
                field=None,
                left="INV-9",
                right=None,
                owner="tryton",
                fix={"action": "create", "target": "xero"},
                state="open",
            ),
            runs.row(
                key="INV-3",
                category="status_mismatch",
                field="status",
                left="paid",
                right="issued",
                owner="xero",
                fix={"action": "write", "target": "tryton"},
                state="healed",
            ),
        ]
        counts = dict.fromkeys(DISCREPANCY_CLASSES, 0)
        for row in found:
            counts[row["class"]] += 1
        runs.finish(
            RUN,
            left_rows=4,
            right_rows=3,
            counts=counts,
            totals={"agree": False},
            discrepancies=found,
        )
        conn.execute(
            quota_usage.insert().values(
                vendor="stripe", window="day", window_start=now - timedelta(minutes=5), used=42
            )
        )
        conn.execute(
            quota_state.insert().values(
                vendor="stripe",
                paused_until=None,
                inflight=0,
                leases=[],
                breaker="closed",
                failures=0,
                opened_at=None,
                waiters={},
                version=1,
            )
        )
    return Seeded(engine, keys, items)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    engine = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    upgrade(engine)
    yield seed(engine)
    engine.dispose()


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    app = create_app(seeded.engine, Settings())
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=True) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "api_key": key, "next": ""},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
