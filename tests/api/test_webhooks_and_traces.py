"""Webhook ingress verified by the connector, into the inbox, visible as one trace."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from sqlalchemy import select

from accord.store import Exceptions, Records, append
from accord.store.tables import inbox
from tests.api.conftest import WEBHOOK_SECRET, Api


def _delivery(
    event_id: str = "evt_1", secret: str = WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str]]:
    now = int(time.time())
    body = json.dumps(
        {
            "id": event_id,
            "type": "invoice.paid",
            "created": now,
            "data": {"object": {"object": "invoice", "id": "in_1", "amount_paid": 1000}},
        }
    ).encode()
    signature = hmac.new(secret.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={now},v1={signature}", "Content-Type": "application/json"}


def test_a_signed_delivery_lands_in_the_inbox_once(api: Api) -> None:
    body, headers = _delivery()
    first = api.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    again = api.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["accepted"] == 1
    assert again.json() == {**again.json(), "accepted": 0, "duplicates": 1}
    with api.engine.connect() as conn:
        rows = conn.execute(select(inbox)).all()
    assert [(r.system, r.event_id, r.event_type) for r in rows] == [
        ("stripe", "evt_1", "invoice.paid")
    ]
    assert rows[0].trace_id == first.json()["trace_id"] == first.headers["x-trace-id"]
    assert rows[0].payload["data"]["id"] == "in_1"


def test_a_bad_signature_is_401_and_stores_nothing(api: Api) -> None:
    body, headers = _delivery(secret="whsec_wrong_secret_0000")
    response = api.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] == "header.Stripe-Signature"
    unsigned = api.client.post("/v1/webhooks/stripe", content=body)
    assert unsigned.status_code == 401
    with api.engine.connect() as conn:
        assert conn.execute(select(inbox)).all() == []


def test_a_signed_but_malformed_delivery_is_400(api: Api) -> None:
    now = int(time.time())
    body = b'{"not": "an event"}'
    signature = hmac.new(WEBHOOK_SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256)
    headers = {"Stripe-Signature": f"t={now},v1={signature.hexdigest()}"}
    assert api.client.post("/v1/webhooks/stripe", content=body, headers=headers).status_code == 400


def test_an_unknown_system_is_404(api: Api) -> None:
    body, headers = _delivery()
    assert api.client.post("/v1/webhooks/nosuch", content=body, headers=headers).status_code == 404


def test_a_trace_gathers_event_versions_exceptions_and_audit(api: Api) -> None:
    body, headers = _delivery()
    trace_id = api.client.post("/v1/webhooks/stripe", content=body, headers=headers).json()[
        "trace_id"
    ]
    with api.engine.begin() as conn:
        Records(conn).put(
            "invoice", "inv-1", {"status": "paid"}, system="stripe", actor="t", trace_id=trace_id
        )
        append(
            conn,
            actor="accord:stripe",
            action="record.changed",
            subject="invoice/inv-1",
            data={"version": 1, "fields": ["status"]},
        )
        Exceptions(conn).raise_(
            "ownership_conflict", role="finance", summary="amount differs", trace_id=trace_id
        )
    response = api.client.get(f"/v1/traces/{trace_id}", headers=api.headers("auditor"))
    assert response.status_code == 200
    trace = response.json()
    kinds = [step["kind"] for step in trace["timeline"]]
    assert set(kinds) == {"event_received", "record_changed", "exception", "audit"}
    assert trace["records"] == [{"entity_type": "invoice", "id": "inv-1", "versions": [1]}]
    missing = api.client.get(
        "/v1/traces/0123456789abcdef0123456789abcdef", headers=api.headers("auditor")
    )
    assert missing.status_code == 404
