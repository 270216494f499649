"""The exception queue as a process: per-role queues, assign/resolve/ignore with who and why."""

from __future__ import annotations

from sqlalchemy import select

from accord.runtime.pipeline import DEAD_LETTER
from accord.store import Exceptions, Inbox, verify
from accord.store.tables import InboxStatus, inbox
from tests.api.conftest import Api


def _raise(api: Api, role: str, **context: object) -> str:
    with api.engine.begin() as conn:
        return (
            Exceptions(conn)
            .raise_("ownership_conflict", role=role, summary=f"{role} problem", context=context)
            .id
        )


def test_each_role_sees_its_own_queue(api: Api) -> None:
    finance = _raise(
        api, "finance", invoice_id="inv-9", account="acc-1", amount=125000, currency="EUR"
    )
    pmo = _raise(api, "pmo", entity_type="project", id="p-1")
    mine = api.client.get("/v1/exceptions", headers=api.headers("finance")).json()
    assert [i["id"] for i in mine] == [finance]
    assert mine[0]["business"] == {
        "account": "acc-1",
        "project": None,
        "invoice": "inv-9",
        "amount_minor": 125000,
        "currency": "EUR",
    }
    assert mine[0]["state"] == "open" and mine[0]["age_seconds"] >= 0
    assert (
        api.client.get("/v1/exceptions?role=pmo", headers=api.headers("finance")).status_code == 403
    )
    assert (
        api.client.get(f"/v1/exceptions/{pmo}", headers=api.headers("finance")).status_code == 404
    )
    everything = api.client.get("/v1/exceptions", headers=api.headers("auditor")).json()
    assert {i["id"] for i in everything} == {finance, pmo}
    pmo_view = api.client.get("/v1/exceptions", headers=api.headers("pmo")).json()
    assert pmo_view[0]["business"]["project"] == "p-1"


def test_assign_then_resolve_keeps_who_and_why_and_audits(api: Api) -> None:
    item = _raise(api, "finance")
    headers = api.headers("finance")
    assigned = api.client.post(
        f"/v1/exceptions/{item}/assign", headers=headers, json={"assignee": "dana"}
    )
    assert assigned.status_code == 200 and assigned.json()["state"] == "assigned"
    resolved = api.client.post(
        f"/v1/exceptions/{item}/resolve", headers=headers, json={"reason": "amount fixed in ERP"}
    ).json()
    assert resolved["state"] == "resolved" and resolved["resolution"] == "amount fixed in ERP"
    assert [(h["action"], h["role"], h["reason"]) for h in resolved["history"]] == [
        ("assign", "finance", "dana"),
        ("resolve", "finance", "amount fixed in ERP"),
    ]
    assert resolved["history"][0]["actor"].startswith("key:")
    again = api.client.post(
        f"/v1/exceptions/{item}/ignore", headers=headers, json={"reason": "late"}
    )
    assert again.status_code == 409
    audit = api.client.get(
        f"/v1/audit?subject=exception/{item}", headers=api.headers("auditor")
    ).json()
    assert [e["action"] for e in audit] == ["exception.assign", "exception.resolve"]
    with api.engine.connect() as conn:
        assert verify(conn).ok
    listed = api.client.get("/v1/exceptions?state=resolved", headers=headers).json()
    assert [i["id"] for i in listed] == [item]


def test_a_reason_is_required_to_resolve_or_ignore(api: Api) -> None:
    item = _raise(api, "sales_ops")
    response = api.client.post(
        f"/v1/exceptions/{item}/ignore", headers=api.headers("sales_ops"), json={"reason": ""}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.reason"


def test_a_role_cannot_act_on_another_queue(api: Api) -> None:
    item = _raise(api, "pmo")
    response = api.client.post(
        f"/v1/exceptions/{item}/resolve", headers=api.headers("finance"), json={"reason": "x"}
    )
    assert response.status_code == 404
    assert (
        api.client.post(
            f"/v1/exceptions/{item}/resolve", headers=api.headers("admin"), json={"reason": "x"}
        ).status_code
        == 200
    )


def test_retrying_a_dead_event_puts_it_back_in_the_inbox(api: Api) -> None:
    with api.engine.begin() as conn:
        Inbox(conn).accept("crm", "e1", event_type="x", payload={})
        seq = conn.execute(select(inbox.c.seq)).scalar_one()
        Inbox(conn).mark(seq, InboxStatus.DEAD, error="poison")
        item = (
            Exceptions(conn)
            .raise_(
                DEAD_LETTER, role="admin", summary="poison", context={"kind": "event", "seq": seq}
            )
            .id
        )
    letters = api.client.get("/v1/dead-letters", headers=api.headers("auditor")).json()
    assert [d["id"] for d in letters] == [item]
    replayed = api.client.post(f"/v1/dead-letters/{item}/replay", headers=api.headers("admin"))
    assert replayed.status_code == 200
    assert replayed.json()["result"]["result"] == "queued"
    with api.engine.connect() as conn:
        assert conn.execute(select(inbox.c.status)).scalar_one() == "pending"
    assert api.client.get("/v1/dead-letters", headers=api.headers("admin")).json() == []


def test_only_dead_letters_can_be_retried(api: Api) -> None:
    item = _raise(api, "finance")
    response = api.client.post(f"/v1/exceptions/{item}/retry", headers=api.headers("finance"))
    assert response.status_code == 409
