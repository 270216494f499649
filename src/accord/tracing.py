"""OpenTelemetry spans in the business trace, from the API to workflow steps to vendor HTTP.

Every inbound event, record version, effect and exception carries a business
trace id (32 hex digits): the id ``accord trace`` and the console show. The
spans Accord emits use that id as their OpenTelemetry trace id, so a tracing
backend shows one trace per business flow: the API request that took a
webhook in, the workflow steps that applied it, the effect that carried it to
a vendor and the HTTP call that effect made.

Spans go to the provider given to :func:`install` (``accord serve`` installs
the API's), else to OpenTelemetry's global one. Nothing is recorded until an
SDK provider is installed; without one the calls here cost next to nothing,
and the per-event spans of a batch are skipped.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
>>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
>>> exporter = InMemorySpanExporter()
>>> provider = TracerProvider()
>>> provider.add_span_processor(SimpleSpanProcessor(exporter))
>>> business = "0af7651916cd43dd8448eb211c80319c"
>>> with span_in_trace(tracer("doc", provider), "effect erp create", business):
...     with http_span("POST", "https://erp.example/customers", provider) as span:
...         span.set_attribute("http.response.status_code", 201)
>>> [s.name for s in exporter.get_finished_spans()]
['POST', 'effect erp create']
>>> {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()} == {business}
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

__all__ = [
    "TracingTransport",
    "http_span",
    "install",
    "record_spans",
    "recording",
    "span_in_trace",
    "trace_context",
    "tracer",
]

_TRACE_ID = re.compile(r"[0-9a-f]{32}")


_installed: list[trace.TracerProvider] = []


def install(provider: trace.TracerProvider | None) -> None:
    """Send Accord's spans to ``provider`` (None: back to OpenTelemetry's global one)."""
    _installed[:] = [] if provider is None else [provider]


def _provider(provider: trace.TracerProvider | None) -> trace.TracerProvider:
    if provider is not None:
        return provider
    return _installed[0] if _installed else trace.get_tracer_provider()


def tracer(name: str, provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """A tracer of ``provider``, else of the installed provider."""
    return _provider(provider).get_tracer(name)


def recording(provider: trace.TracerProvider | None = None) -> bool:
    """Whether spans are recorded at all (an SDK provider is installed)."""
    return isinstance(_provider(provider), SdkTracerProvider)


def trace_context(trace_id: str | None) -> Context | None:
    """A context whose parent is the business trace ``trace_id``; None for no valid id."""
    if not trace_id or not _TRACE_ID.fullmatch(trace_id) or not int(trace_id, 16):
        return None
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int.from_bytes(os.urandom(8), "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def span_in_trace(
    tracer: trace.Tracer, name: str, trace_id: str | None, **attributes: Any
) -> Iterator[trace.Span]:
    """A current span in the business trace ``trace_id`` (32 hex digits), or in a new trace."""
    with tracer.start_as_current_span(
        name, context=trace_context(trace_id), attributes=attributes
    ) as span:
        yield span


@contextmanager
def http_span(
    method: str, url: str, provider: trace.TracerProvider | None = None
) -> Iterator[trace.Span]:
    """A client span for one outbound HTTP call, child of the current span.

    Only the scheme, host and path are kept: query strings can carry tokens.
    """
    parts = urlsplit(url)
    with tracer("accord.http", provider).start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": method,
            "server.address": parts.hostname or "",
            "url.path": parts.path,
        },
    ) as span:
        yield span


def record_spans(
    name: str,
    trace_ids: Iterable[str | None],
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any] | None = None,
    *,
    provider: trace.TracerProvider | None = None,
) -> None:
    """One finished span per distinct business trace, all covering ``start_ns``–``end_ns``.

    For work done in batches (a workflow step applies events of many traces at
    once): each trace shows the step it took part in. Skipped when nothing records.
    """
    if not recording(provider):
        return
    spans = tracer("accord.runtime", provider)
    for trace_id in dict.fromkeys(t for t in trace_ids if t):
        context = trace_context(trace_id)
        if context is None:
            continue
        span = spans.start_span(
            name, context=context, start_time=start_ns, attributes=dict(attributes or {})
        )
        span.end(end_time=end_ns)


class TracingTransport(httpx.BaseTransport):
    """An ``httpx`` transport that puts each request in a client span (:func:`http_span`)."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with http_span(request.method, str(request.url.copy_with(query=None))) as span:
            response = self.inner.handle_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    def close(self) -> None:
        self.inner.close()
