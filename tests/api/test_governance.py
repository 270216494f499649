"""Idempotency keys, rate limits, body limits, validation errors and the version header."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, func, select

from accord.api.observability import API_VERSION
from accord.config import ApiSettings, Settings
from accord.store.api_tables import api_idempotency
from accord.store.tables import inbox
from tests.api.conftest import Api, build_api, utc

PUSH = "/v1/accounts/changes"


def _push(external_id: str = "001", name: str = "Acme") -> dict[str, object]:
    return {"system": "crm", "external_id": external_id, "fields": {"legal_name": name}}


def _inbox_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inbox)).scalar_one())


def test_same_idempotency_key_and_body_returns_the_stored_response(api: Api) -> None:
    headers = api.headers("integration", **{"Idempotency-Key": "push-1"})
    first = api.client.post(PUSH, headers=headers, json=_push())
    again = api.client.post(PUSH, headers=headers, json=_push())
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _inbox_count(api.engine) == 1


def test_same_idempotency_key_with_another_body_is_409(api: Api) -> None:
    headers = api.headers("integration", **{"Idempotency-Key": "push-2"})
    assert api.client.post(PUSH, headers=headers, json=_push()).status_code == 202
    other = api.client.post(PUSH, headers=headers, json=_push(name="Other"))
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert _inbox_count(api.engine) == 1


def test_idempotency_keys_are_per_caller(api: Api) -> None:
    key = {"Idempotency-Key": "shared"}
    assert (
        api.client.post(PUSH, headers=api.headers("integration", **key), json=_push()).status_code
        == 202
    )
    admin = api.client.post(PUSH, headers=api.headers("admin", **key), json=_push(name="B"))
    assert admin.status_code == 202
    assert "idempotent-replayed" not in admin.headers


def test_a_request_refused_by_validation_does_not_use_up_its_key(api: Api) -> None:
    headers = api.headers("integration", **{"Idempotency-Key": "fix-and-resend"})
    bad = api.client.post(PUSH, headers=headers, json={"system": "crm", "fields": {}})
    assert bad.status_code == 422
    good = api.client.post(PUSH, headers=headers, json=_push())
    assert good.status_code == 202 and "idempotent-replayed" not in good.headers


def test_keys_are_kept_24_hours_then_forgotten(engine: Engine) -> None:
    now = [utc(2026, 3, 1, 12)]
    api = build_api(engine, clock=lambda: now[0])
    headers = api.headers("integration", **{"Idempotency-Key": "daily"})
    assert api.client.post(PUSH, headers=headers, json=_push()).status_code == 202
    with engine.connect() as conn:
        expires = conn.execute(select(api_idempotency.c.expires_at)).scalar_one()
    assert expires - now[0] >= timedelta(hours=24)
    now[0] += timedelta(hours=23, minutes=59)
    assert api.client.post(PUSH, headers=headers, json=_push(name="B")).status_code == 409
    now[0] += timedelta(minutes=2)
    fresh = api.client.post(PUSH, headers=headers, json=_push(name="B"))
    assert fresh.status_code == 202 and "idempotent-replayed" not in fresh.headers


def test_rate_limit_per_key_answers_429_with_retry_after(engine: Engine) -> None:
    clock = [100.0]
    settings = Settings(api=ApiSettings(rate_limit_per_second=0.5, rate_limit_burst=3))
    api = build_api(engine, settings, rate_clock=lambda: clock[0])
    for _ in range(3):
        assert api.client.get("/v1/accounts", headers=api.headers("finance")).status_code == 200
    limited = api.client.get("/v1/accounts", headers=api.headers("finance"))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["type"] == "urn:accord:problem:rate-limited"
    # another key has its own bucket
    assert api.client.get("/v1/accounts", headers=api.headers("pmo")).status_code == 200
    clock[0] += 2.0
    assert api.client.get("/v1/accounts", headers=api.headers("finance")).status_code == 200


def test_an_oversized_body_is_refused_before_any_work(engine: Engine) -> None:
    api = build_api(engine, Settings(api=ApiSettings(max_body_bytes=2048)))
    big = _push(name="x" * 5000)
    response = api.client.post(PUSH, headers=api.headers("integration"), json=big)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"system": "crm", "external_id": "1", "fields": {"a": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}}'

    streamed = api.client.post(
        PUSH,
        headers=api.headers("integration", **{"Content-Type": "application/json"}),
        content=chunks(),
    )
    assert streamed.status_code == 413
    assert _inbox_count(engine) == 0


def test_malformed_and_invalid_bodies_are_problems_naming_the_field(api: Api) -> None:
    headers = api.headers("integration", **{"Content-Type": "application/json"})
    malformed = api.client.post(PUSH, headers=headers, content=b'{"system": ')
    assert malformed.status_code == 422
    assert malformed.headers["content-type"] == "application/problem+json"
    assert malformed.json()["errors"][0]["field"].startswith("body")
    wrong = api.client.post(PUSH, headers=headers, json={**_push(), "system": "no such!"})
    assert wrong.status_code == 422
    assert [e["field"] for e in wrong.json()["errors"]] == ["body.system"]
    extra = api.client.post(PUSH, headers=headers, json={**_push(), "colour": "red"})
    assert [e["field"] for e in extra.json()["errors"]] == ["body.colour"]
    limit = api.client.get("/v1/accounts?limit=0", headers=api.headers("finance"))
    assert limit.status_code == 422
    assert limit.json()["errors"][0]["field"] == "query.limit"


def test_every_response_carries_the_version_and_trace_headers(api: Api) -> None:
    response = api.client.get("/v1/accounts", headers=api.headers("finance"))
    assert response.headers["accord-version"] == API_VERSION
    assert len(response.headers["x-trace-id"]) == 32
    pinned = api.client.get(
        "/v1/accounts", headers=api.headers("finance", **{"Accord-Version": API_VERSION})
    )
    assert pinned.status_code == 200
    unknown = api.client.get(
        "/v1/accounts", headers=api.headers("finance", **{"Accord-Version": "1999-01-01"})
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "header.Accord-Version"


def test_a_pushed_change_reaches_the_inbox_once_with_the_request_trace(api: Api) -> None:
    response = api.client.post(
        PUSH, headers=api.headers("integration"), json={**_push(), "event_id": "chg-1"}
    )
    again = api.client.post(
        PUSH, headers=api.headers("integration"), json={**_push(), "event_id": "chg-1"}
    )
    assert response.json()["accepted"] is True and again.json()["accepted"] is False
    with api.engine.connect() as conn:
        row = conn.execute(select(inbox)).one()
    assert row.trace_id == response.headers["x-trace-id"] == response.json()["trace_id"]
    assert row.payload["entity_type"] == "account"
    assert row.payload["fields"] == {"legal_name": "Acme"}
