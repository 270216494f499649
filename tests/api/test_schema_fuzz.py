"""schemathesis over the whole API in-process: no 5xx, every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.openapi import from_asgi

from accord.config import ApiSettings, Settings
from accord.store import Exceptions, Records, make_engine, upgrade
from tests.api.conftest import Api, build_api


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "accord.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as conn:
        Records(conn).put("account", "A1", {"legal_name": "Acme"}, system="crm", actor="seed")
        Exceptions(conn).raise_("ownership_conflict", role="finance", summary="seed")
    api = build_api(
        engine, Settings(api=ApiSettings(rate_limit_per_second=10_000, rate_limit_burst=100_000))
    )
    yield api
    api.stripe.close()
    engine.dispose()


def test_api_conforms_to_its_openapi(fuzzed: Api) -> None:
    """Each operation, a dozen generated cases (valid and invalid), checked by every check."""
    schema = from_asgi("/openapi.json", fuzzed.client.app)
    headers = {"Authorization": f"Bearer {fuzzed.keys['admin']}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers)

        try:
            run()
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
