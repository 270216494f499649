"""Traces keyed by the business trace id, Prometheus metrics, JSON logs without secrets."""

from __future__ import annotations

import io
import json
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine

from accord.api.observability import configure_logging, redact
from tests.api.conftest import STRIPE_KEY, WEBHOOK_SECRET, Api, build_api
from tests.api.test_webhooks_and_traces import _delivery


def test_the_request_span_trace_id_is_the_business_trace_id(engine: Engine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api = build_api(engine, tracer_provider=provider)
    body, headers = _delivery()
    response = api.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    assert format(spans[0].context.trace_id, "032x") == response.json()["trace_id"]
    assert spans[0].attributes["http.route"] == "/v1/webhooks/{system}"
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    continued = api.client.get("/healthz", headers={"traceparent": parent})
    assert continued.headers["x-trace-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_metrics_count_requests_and_read_the_store(api: Api) -> None:
    body, headers = _delivery()
    api.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    api.client.get("/v1/accounts", headers=api.headers("finance"))
    text = api.client.get("/metrics").text
    assert 'accord_events_in{status="pending",system="stripe"} 1.0' in text
    assert 'accord_http_requests_total{method="GET",route="/v1/accounts",status="200"} 1.0' in text
    assert "accord_http_request_duration_seconds_bucket" in text
    assert "accord_dead_letters 0.0" in text
    assert "accord_api_rate_limit_use" in text


def test_logs_are_json_with_the_trace_id_and_never_hold_keys_or_secrets(api: Api) -> None:
    sink = io.StringIO()
    configure_logging(sink)
    try:
        body, headers = _delivery()
        webhook = api.client.post("/v1/webhooks/stripe", content=body, headers=headers)
        key = api.keys["admin"]
        api.client.get(f"/v1/accounts?after={key}", headers=api.headers("admin"))
        api.client.get("/v1/accounts", headers={"Authorization": f"Bearer {key}x"})
        import structlog

        structlog.get_logger("t").info("oops", leaked=f"Bearer {key}", secret=WEBHOOK_SECRET)
    finally:
        configure_logging()
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert lines, "no log lines captured"
    requests = [line for line in lines if line["event"] == "request"]
    assert requests[0]["trace_id"] == webhook.json()["trace_id"]
    assert all(len(line["trace_id"]) == 32 for line in requests)
    text = sink.getvalue()
    assert key not in text and key[13:] not in text
    assert WEBHOOK_SECRET not in text
    assert STRIPE_KEY not in text


def test_redact_masks_keys_tokens_and_registered_secrets() -> None:
    from accord.api.observability import register_secret

    register_secret("s3cr3t-value-123")
    text = redact("key acc_0a1b2c3d_abcDEF-123 Bearer eyJhbGciOi.x.y and s3cr3t-value-123")
    assert "abcDEF" not in text and "eyJhbGciOi" not in text and "s3cr3t-value-123" not in text
    assert time.time() > 0
