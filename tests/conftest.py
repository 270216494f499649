"""Shared fixtures: real services, skipped visibly where absent, required in CI.

Tests that need PostgreSQL or NATS JetStream ask for the ``postgres_url`` or
``nats_url`` fixture. Where the service does not answer, the test is skipped
with the reason; with ``ACCORD_REQUIRE_SERVICES=1`` (set by ``.ci/run``) it fails
instead, so a green CI run never hides a missing service.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

REQUIRE = os.environ.get("ACCORD_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("ACCORD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("ACCORD_TEST_NATS", "nats://127.0.0.1:4222")


def unavailable(service: str, why: str) -> None:
    message = f"{service} is not available ({why})"
    if REQUIRE:
        pytest.fail(f"{message}; ACCORD_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        unavailable("PostgreSQL", "psycopg not installed")
        raise
    name = f"accord_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).strip().splitlines()[0])
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def nats_url() -> str:
    """The URL of a running NATS server with JetStream."""
    host, port = NATS_URL.removeprefix("nats://").split(":")
    if not _port_open(host, int(port)):
        unavailable("NATS JetStream", f"nothing listens on {host}:{port}")
    return NATS_URL
