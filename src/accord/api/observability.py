"""Traces, metrics and logs of the API, all keyed by the business trace id.

* **Traces.** Every request is an OpenTelemetry span. Its trace id (32 hex
  digits) is the *business* trace id: a webhook stores it with the inbound
  event, so the records, effects and exceptions that event produces carry it,
  and ``/v1/traces/{id}`` shows them. A caller that sends a W3C
  ``traceparent`` continues its own trace. The id comes back in ``X-Trace-Id``.
  :func:`span_in_trace` lets workers and outbound calls open spans in the
  trace an inbox event carries.
* **Metrics.** Prometheus text at ``/metrics``: request counts and latency
  histograms per route, plus gauges read from the store at scrape time —
  events in (inbox by system and status), events out (effects by system and
  status), retries, open dead letters and exceptions, vendor quota use, and
  the API's own rate-limit use.
* **Logs.** JSON lines through structlog, one per request, with the trace id.
  Credentials are never logged: no header is logged, and a last processor
  masks anything shaped like an API key or a bearer token and every secret
  registered with :func:`register_secret` (webhook signing secrets).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from datetime import timedelta
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.api.problems import Problem, problem_response
from accord.store.quota_tables import quota_usage
from accord.store.repo import utc_now
from accord.store.tables import ExceptionState, effects, exceptions, inbox
from accord.tracing import span_in_trace

__all__ = [
    "API_VERSION",
    "API_VERSIONS",
    "Observability",
    "StoreCollector",
    "configure_logging",
    "redact",
    "register_secret",
    "span_in_trace",
]

#: The API version this server speaks (``Accord-Version``); see docs/api-changelog.md.
API_VERSION = "2026-11-29"
#: Every version a client may ask for with ``Accord-Version``.
API_VERSIONS = (API_VERSION,)

log = structlog.get_logger("accord.api")

_KEY_PATTERN = re.compile(r"acc_[0-9a-f]{8}_[A-Za-z0-9_\-]+")
_BEARER_PATTERN = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+")
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Mask this value wherever it would appear in a log line."""
    if secret and len(secret) >= 6:
        with _secrets_lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """``text`` with API keys, bearer credentials and registered secrets masked."""
    text = _KEY_PATTERN.sub(lambda m: m.group(0)[:12] + "…[redacted]", text)
    text = _BEARER_PATTERN.sub(r"\1[redacted]", text)
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _redact_processor(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: _redact_value(value) for key, value in event.items()}


def configure_logging(stream: Any = None, level: int = logging.INFO) -> None:
    """JSON log lines with timestamp, level, trace id; credentials masked."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


class StoreCollector(Collector):
    """Gauges read from the store at scrape time (one short read transaction)."""

    def __init__(self, engine: Engine, rate_usage: Callable[[], dict[str, float]]) -> None:
        self.engine = engine
        self.rate_usage = rate_usage

    def collect(self) -> Iterable[GaugeMetricFamily]:
        events_in = GaugeMetricFamily(
            "accord_events_in", "Inbound events in the inbox", labels=["system", "status"]
        )
        events_out = GaugeMetricFamily(
            "accord_events_out", "Outbound effects in the ledger", labels=["system", "status"]
        )
        retries = GaugeMetricFamily(
            "accord_retries", "Attempts beyond the first, summed", labels=["kind"]
        )
        dead = GaugeMetricFamily("accord_dead_letters", "Open dead letters")
        open_items = GaugeMetricFamily(
            "accord_exceptions_open", "Open or assigned exception items", labels=["role"]
        )
        quota = GaugeMetricFamily(
            "accord_quota_used", "Vendor calls granted in the window", labels=["vendor", "window"]
        )
        api_quota = GaugeMetricFamily(
            "accord_api_rate_limit_use",
            "Share of the burst in use per API caller",
            labels=["caller"],
        )
        now = utc_now()
        spans = {
            "second": timedelta(seconds=1),
            "minute": timedelta(minutes=1),
            "day": timedelta(days=1),
        }
        with self.engine.connect() as conn:
            for system, status, count in conn.execute(
                select(inbox.c.system, inbox.c.status, func.count()).group_by(
                    inbox.c.system, inbox.c.status
                )
            ):
                events_in.add_metric([system, status], count)
            for system, status, count in conn.execute(
                select(effects.c.system, effects.c.status, func.count()).group_by(
                    effects.c.system, effects.c.status
                )
            ):
                events_out.add_metric([system, status], count)
            for kind, table in (("event", inbox), ("effect", effects)):
                extra = conn.execute(
                    select(func.coalesce(func.sum(table.c.attempts - 1), 0)).where(
                        table.c.attempts > 1
                    )
                ).scalar_one()
                retries.add_metric([kind], int(extra))
            live = [ExceptionState.OPEN.value, ExceptionState.ASSIGNED.value]
            dead.add_metric(
                [],
                conn.execute(
                    select(func.count()).where(
                        exceptions.c.type == "dead_letter", exceptions.c.state.in_(live)
                    )
                ).scalar_one(),
            )
            for role, count in conn.execute(
                select(exceptions.c.role, func.count())
                .where(exceptions.c.state.in_(live))
                .group_by(exceptions.c.role)
            ):
                open_items.add_metric([role], count)
            for window, span in spans.items():
                for vendor, used in conn.execute(
                    select(quota_usage.c.vendor, func.sum(quota_usage.c.used))
                    .where(quota_usage.c.window == window, quota_usage.c.window_start > now - span)
                    .group_by(quota_usage.c.vendor)
                ):
                    quota.add_metric([vendor, window], int(used or 0))
        for caller, share in self.rate_usage().items():
            api_quota.add_metric([caller], share)
        yield from (events_in, events_out, retries, dead, open_items, quota, api_quota)


class Observability:
    """The outermost middleware: trace span, version header, metrics, one log line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer,
        registry: CollectorRegistry,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.requests = Counter(
            "accord_http_requests",
            "API requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "accord_http_request_duration_seconds",
            "API request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k in (b"traceparent", b"tracestate")
        }
        parent = self._propagator.extract(carrier) if carrier else None
        started = time.perf_counter()
        status = 500
        method = scope["method"]
        with self.tracer.start_as_current_span(
            f"{method} {scope['path']}", context=parent, kind=SpanKind.SERVER
        ) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            state = scope.setdefault("state", {})
            state["trace_id"] = trace_id
            requested = next(
                (
                    v.decode("latin-1")
                    for k, v in scope.get("headers", ())
                    if k == b"accord-version"
                ),
                None,
            )

            async def send_with_headers(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    headers = list(message.get("headers", ()))
                    headers.append((b"x-trace-id", trace_id.encode()))
                    headers.append((b"accord-version", API_VERSION.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            with structlog.contextvars.bound_contextvars(trace_id=trace_id):
                try:
                    if requested is not None and requested not in API_VERSIONS:
                        problem = Problem(
                            400,
                            "unknown-version",
                            f"Accord-Version {requested!r} is not served; known: "
                            + ", ".join(API_VERSIONS),
                            errors=[("header.Accord-Version", "unknown version")],
                        )
                        response = problem_response(
                            problem, instance=scope["path"], trace_id=trace_id
                        )
                        await response(scope, receive, send_with_headers)
                    else:
                        await self.app(scope, receive, send_with_headers)
                finally:
                    elapsed = time.perf_counter() - started
                    label = str(state.get("route_template") or "unmatched")
                    self.requests.labels(method, label, str(status)).inc()
                    self.latency.labels(method, label).observe(elapsed)
                    span.set_attribute("http.request.method", method)
                    span.set_attribute("http.route", label)
                    span.set_attribute("http.response.status_code", status)
                    principal = state.get("principal")
                    log.info(
                        "request",
                        method=method,
                        path=scope["path"],
                        route=label,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                        caller=getattr(principal, "name", None),
                    )


def new_tracer_provider() -> TracerProvider:
    """A provider for one app; exporters are added by whoever configures export."""
    return TracerProvider()
