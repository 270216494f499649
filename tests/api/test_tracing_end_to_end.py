"""One trace from the API request to the workflow step to the effect to the vendor's HTTP call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine

from accord.ownership import parse_policy
from accord.runtime.effects import EffectExecutor
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.pipeline import Pipeline, Route, SqlLedger
from accord.runtime.retry import RetryPolicy
from accord.sandbox.recorder import RecorderServer
from accord.tracing import install
from tests.api.conftest import build_api

POLICY = parse_policy(
    {"ownership": {"systems": {"crm": "crm", "erp": "erp"}, "account": {"owner": "crm"}}},
    source="test",
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install(provider)
    exporter.provider = provider  # type: ignore[attr-defined]
    yield exporter
    install(None)


def test_api_request_workflow_step_effect_and_vendor_call_share_the_business_trace(
    engine: Engine, exporter: InMemorySpanExporter
) -> None:
    api = build_api(engine, tracer_provider=exporter.provider)  # type: ignore[attr-defined]
    with RecorderServer() as erp, api.client:
        vendor = IdempotentHttpVendor(erp.url)
        pipeline = Pipeline(
            engine,
            POLICY,
            EffectExecutor(SqlLedger(engine), {"erp": vendor}, RetryPolicy()),
            routes=[Route("account", "erp", "upsert_customer")],
        )
        pushed = api.client.post(
            "/v1/accounts/changes",
            json={"system": "crm", "external_id": "001A", "fields": {"name": "Northwind"}},
            headers=api.headers("integration"),
        )
        assert pushed.status_code == 202, pushed.text
        trace_id = pushed.headers["x-trace-id"]

        claimed = pipeline.claim(10, timedelta(seconds=30))
        outcome = pipeline.apply_batch([seq for seq, _ in claimed])
        assert pipeline.run_effects(outcome.effects)["done"] == 1
        vendor.close()
        assert erp.stats()["objects"] == 1

    spans = exporter.get_finished_spans()
    in_trace = [s for s in spans if format(s.context.trace_id, "032x") == trace_id]
    names = [s.name for s in in_trace]
    request = [s for s in in_trace if s.attributes.get("http.route") == "/v1/accounts/changes"]
    step = [s for s in in_trace if s.name == "workflow step apply"]
    effect = [s for s in in_trace if s.name.startswith("effect erp")]
    call = [s for s in in_trace if s.attributes.get("server.address") == "127.0.0.1"]
    assert len(request) == len(step) == len(effect) == len(call) == 1, names
    assert call[0].parent is not None and call[0].parent.span_id == effect[0].context.span_id
    assert call[0].attributes["http.response.status_code"] in (200, 201)
    assert "?" not in str(call[0].attributes["url.path"])


def test_nothing_is_recorded_without_an_sdk_provider(engine: Engine) -> None:
    from accord.tracing import record_spans, recording

    install(None)
    assert not recording()
    record_spans("workflow step apply", ["0af7651916cd43dd8448eb211c80319c"], 0, 1)
