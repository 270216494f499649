"""Every operation of the OpenAPI document × every role and no key: 401, 403 or allowed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from accord.api.auth import GRANTS, Permission
from accord.store.api_tables import API_ROLES
from tests.api.conftest import Api


def _operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    spec = api.client.get("/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
    ]


def _call(api: Api, method: str, path: str, role: str | None) -> int:
    url = re.sub(r"\{[^}]+\}", "x1", path)
    response = api.client.request(method, url, headers=api.headers(role), json={})
    return response.status_code


def test_every_operation_declares_who_may_call_it(api: Api) -> None:
    for method, path, op in _operations(api):
        assert "x-accord-permission" in op, f"{method} {path} declares no permission"
        permission = op["x-accord-permission"]
        if permission != "public":
            assert op["security"] == [{"bearer": []}], f"{method} {path}"
            assert op["x-accord-roles"] == [
                r for r in API_ROLES if Permission(permission) in GRANTS[r]
            ]


def test_matrix_of_operations_and_roles(api: Api) -> None:
    checked = 0
    for method, path, op in _operations(api):
        permission = op["x-accord-permission"]
        if permission == "public":
            status = _call(api, method, path, None)
            if path.startswith("/v1/webhooks/"):
                assert status in (401, 404), f"{method} {path} unsigned → {status}"
            else:
                assert status not in (401, 403), f"{method} {path} is public, got {status}"
            continue
        assert _call(api, method, path, None) == 401, f"{method} {path} without a key"
        for role in API_ROLES:
            status = _call(api, method, path, role)
            if role in op["x-accord-roles"]:
                assert status not in (401, 403), f"{method} {path} as {role} → {status}"
            else:
                assert status == 403, f"{method} {path} as {role} → {status}, expected 403"
            checked += 1
    assert checked >= 6 * 25


@pytest.mark.parametrize("role", ["auditor"])
def test_the_auditor_reads_everything_and_changes_nothing(api: Api, role: str) -> None:
    for method, path, op in _operations(api):
        if op["x-accord-permission"] == "public":
            continue
        allowed = role in op["x-accord-roles"]
        assert allowed == (method == "GET"), f"{method} {path}"


def test_a_bad_or_revoked_key_is_401(api: Api) -> None:
    from accord.api.keys import list_keys, revoke_key

    assert (
        api.client.get(
            "/v1/accounts", headers={"Authorization": "Bearer acc_00000000_x"}
        ).status_code
        == 401
    )
    assert api.client.get("/v1/accounts", headers={"Authorization": "Basic abc"}).status_code == 401
    finance = next(k for k in list_keys(api.engine) if k.role == "finance")
    assert api.client.get("/v1/accounts", headers=api.headers("finance")).status_code == 200
    revoke_key(api.engine, finance.prefix, actor="test")
    response = api.client.get("/v1/accounts", headers=api.headers("finance"))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "revoked" in response.json()["detail"]
