"""OIDC bearer tokens: RS256 against a JWKS file, issuer, audience, expiry, role claim."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine

from accord.config import ApiSettings, OidcSettings, Settings
from tests.api.conftest import Api, build_api

ISSUER = "https://login.example.test/"


@pytest.fixture
def keypair() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def oidc_api(engine: Engine, tmp_path: Path, keypair: rsa.RSAPrivateKey) -> Api:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keypair.public_key()))
    public.update(kid="k1", use="sig", alg="RS256")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    oidc = OidcSettings(issuer=ISSUER, audience="accord", jwks_file=str(jwks))
    return build_api(engine, Settings(api=ApiSettings(oidc=oidc)))


def _token(key: Any, **overrides: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": "accord",
        "sub": "user-42",
        "exp": int(time.time()) + 300,
        "accord_role": "finance",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def _get(api: Api, token: str, path: str = "/v1/accounts") -> int:
    return api.client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_valid_token_carries_its_role(oidc_api: Api, keypair: rsa.RSAPrivateKey) -> None:
    token = _token(keypair)
    assert _get(oidc_api, token) == 200
    assert _get(oidc_api, token, "/v1/dead-letters") == 403
    assert (
        _get(oidc_api, _token(keypair, accord_role=["viewer", "auditor"]), "/v1/dead-letters")
        == 200
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example.test/"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 3600},
        {"sub": None},
    ],
    ids=["issuer", "audience", "expired", "no-subject"],
)
def test_a_token_failing_a_check_is_401(
    oidc_api: Api, keypair: rsa.RSAPrivateKey, overrides: dict[str, Any]
) -> None:
    assert _get(oidc_api, _token(keypair, **overrides)) == 401


def test_a_token_signed_by_another_key_is_401(oidc_api: Api) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _get(oidc_api, _token(other)) == 401


def test_a_token_without_an_accord_role_is_403(oidc_api: Api, keypair: rsa.RSAPrivateKey) -> None:
    assert _get(oidc_api, _token(keypair, accord_role="viewer")) == 403


def test_without_an_issuer_a_token_is_401(api: Api, keypair: rsa.RSAPrivateKey) -> None:
    assert _get(api, _token(keypair)) == 401
