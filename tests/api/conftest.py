"""An API over a fresh SQLite store, with one key per role and a Stripe webhook secret."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from accord.api.app import create_app
from accord.api.keys import create_key
from accord.config import Settings
from accord.connectors.stripe.connector import StripeConnector
from accord.store import make_engine, upgrade
from accord.store.api_tables import API_ROLES

WEBHOOK_SECRET = "whsec_test_5f1c9a0d4e7b2c83"
STRIPE_KEY = "sk_test_51Abcdefghijklmnop"


@dataclass
class Api:
    engine: Engine
    client: TestClient
    keys: dict[str, str]
    stripe: StripeConnector
    settings: Settings
    now: list[datetime] = field(default_factory=list)

    def headers(self, role: str | None, **extra: str) -> dict[str, str]:
        found = {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}
        found.update(extra)
        return found


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def build_api(engine: Engine, settings: Settings | None = None, **options: object) -> Api:
    settings = settings or Settings()
    keys = {
        role: create_key(engine, role, name=f"{role} key", actor="test").secret
        for role in API_ROLES
    }
    stripe = StripeConnector(
        base_url="http://stripe.invalid",
        credentials={"api_key": STRIPE_KEY, "webhook_secret": WEBHOOK_SECRET},
    )
    app = create_app(engine, settings, verifiers={"stripe": stripe}, **options)  # type: ignore[arg-type]
    client = TestClient(app, raise_server_exceptions=False)
    return Api(engine, client, keys, stripe, settings)


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    built = build_api(engine)
    with built.client:
        yield built
    built.stripe.close()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]
