"""The connector SDK: the small interface a vendor connector implements.

A connector is one folder: ``connector.py`` (a :class:`Connector` subclass),
``mapping.py`` (pure functions vendor ⇄ canonical), a stand-in server in
``accord.sandbox``, and tests. A subclass implements one required method,
:meth:`Connector.fetch_page`, and the hooks its vendor supports; the framework
owns the rest — the pagination loop and cursors (no record missed when several
share the cursor value), the shared quota governor, error classification with
``Retry-After``, and the adapter that lets the effect executor write through it.

Every connector takes an injectable ``httpx`` transport, so tests pass a plain
function or an in-process stand-in instead of patching.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import httpx

from accord.errors import AccordError, InvalidInput, TransientError
from accord.runtime.effects import Effect, EffectOutcome, Vendor
from accord.tracing import TracingTransport

__all__ = [
    "Capability",
    "Connector",
    "ConnectorVendor",
    "Cursor",
    "Governor",
    "NotSupported",
    "Page",
    "VendorRecord",
    "WebhookEvent",
    "WriteRequest",
    "classify_response",
]


class Capability(StrEnum):
    READ = "read"
    """Incremental reads since a cursor."""
    WEBHOOKS = "webhooks"
    """Signed webhooks, verified by the vendor's own scheme."""
    WRITE = "write"
    """Create and update."""
    UPSERT = "upsert"
    """Create-or-update by an external id."""
    BATCH = "batch"
    """Many records per call (collections, batch endpoints)."""


class NotSupported(AccordError):
    """The connector's vendor does not offer this operation."""


@dataclass(frozen=True, slots=True)
class VendorRecord:
    """One record as the vendor returned it, with what incremental reads need."""

    object: str
    id: str
    modified: str
    """The vendor's modification stamp, as text that sorts in time order."""
    data: Mapping[str, Any]
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where incremental reading resumes.

    ``value`` is the last modification stamp read; ``seen`` are the ids already
    read *at* that stamp. Vendors filter with ``>=`` on the stamp, so records
    that share it are read again and skipped by id instead of being missed.
    """

    value: str | None = None
    seen: tuple[str, ...] = ()

    def encode(self) -> str:
        return json.dumps({"value": self.value, "seen": list(self.seen)}, sort_keys=True)

    @classmethod
    def decode(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(raw.get("value"), tuple(raw.get("seen", ())))


@dataclass(frozen=True, slots=True)
class Page:
    records: Sequence[VendorRecord]
    next_page: str | None = None
    """Opaque token of the next page within this read, or ``None`` at the end."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event_id: str
    event_type: str
    object: str
    data: Mapping[str, Any]
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A create, update or upsert, with the idempotency key derived by the caller."""

    object: str
    operation: str
    """``create``, ``update`` or ``upsert``."""
    data: Mapping[str, Any]
    idempotency_key: str
    external_id: str | None = None
    """The vendor id (update) or the external-id value (upsert)."""
    priority: int = 5
    """Lower goes first under quota pressure (payments and invoices before enrichment)."""


class Governor(Protocol):
    """The shared quota governor (see ``accord.connectors.governor``)."""

    def acquire(self, vendor: str, priority: int = 5) -> None: ...

    def release(
        self, vendor: str, *, retry_after: float | None = None, ok: bool = True
    ) -> None: ...


def classify_response(response: httpx.Response) -> AccordError:
    """Turn an unsuccessful response into an error that says whether to retry.

    429 and 5xx are retryable (with the vendor's ``Retry-After`` when given);
    408 too, and anything the vendor marks retryable (Stripe's
    ``Stripe-Should-Retry: true``, e.g. a 409 for concurrent use of one key);
    any other 4xx is the request's fault and is not.
    """
    text = response.text[:500]
    status = response.status_code
    should_retry = response.headers.get("Stripe-Should-Retry")
    if status == 429 or status >= 500 or status == 408 or should_retry == "true":
        after = response.headers.get("Retry-After")
        delay: float | None = None
        if after:
            try:
                delay = float(after)
            except ValueError:
                delay = None
        return TransientError(
            f"{status} from {response.request.url.path}: {text}", retry_after=delay
        )
    return InvalidInput(
        f"{status} from {response.request.url.path}: {text}", record=str(response.request.url.path)
    )


@dataclass
class Connector(ABC):
    """Base of every vendor connector."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ})
    batch_size: ClassVar[int] = 0

    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    transport: httpx.BaseTransport | None = None
    governor: Governor | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            base_url=self.base_url,
            transport=TracingTransport(self.transport),
            timeout=self.timeout,
            headers=self.auth_headers(),
        )

    # -- required ---------------------------------------------------------------

    @abstractmethod
    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        """One page of ``object`` records modified at or after ``cursor.value``."""

    # -- optional hooks with safe defaults -----------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers sent with every request (e.g. ``Authorization: Bearer …``)."""
        return {}

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Sequence[WebhookEvent]:
        """Verify the vendor's signature and parse the events of one delivery."""
        raise NotSupported(f"{self.name} has no webhooks")

    def write(self, request: WriteRequest) -> EffectOutcome:
        raise NotSupported(f"{self.name} is read-only")

    def write_many(self, requests: Sequence[WriteRequest]) -> list[EffectOutcome | AccordError]:
        """Batch write; the default sends them one by one."""
        results: list[EffectOutcome | AccordError] = []
        for request in requests:
            try:
                results.append(self.write(request))
            except AccordError as exc:
                results.append(exc)
        return results

    def lookup(self, request: WriteRequest) -> EffectOutcome | None:
        """Find the result of an earlier attempt (by idempotency key or external id)."""
        return None

    # -- owned by the framework -----------------------------------------------------

    def request(
        self, method: str, path: str, *, priority: int = 5, **kwargs: Any
    ) -> httpx.Response:
        """One HTTP call through the governor; failures come back classified."""
        if self.governor is not None:
            self.governor.acquire(self.name, priority)
        retry_after: float | None = None
        ok = False
        try:
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise TransientError(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code >= 400:
                error = classify_response(response)
                retry_after = error.retry_after
                # a request refused for its own fault says nothing about the vendor's health
                ok = not error.retryable
                raise error
            ok = True
            return response
        finally:
            if self.governor is not None:
                self.governor.release(self.name, retry_after=retry_after, ok=ok)

    def read_changes(self, object: str, cursor: Cursor) -> tuple[list[VendorRecord], Cursor]:
        """Everything changed since ``cursor``, across pages, and the cursor to keep.

        Records at the cursor's stamp that were already read are skipped by id,
        so none is read twice and none sharing a stamp is missed.
        """
        seen = set(cursor.seen)
        found: list[VendorRecord] = []
        page: str | None = None
        while True:
            result = self.fetch_page(object, cursor, page)
            for record in result.records:
                if (
                    cursor.value is not None
                    and record.modified == cursor.value
                    and (record.id in seen)
                ):
                    continue
                found.append(record)
            page = result.next_page
            if page is None:
                break
        if not found:
            return [], cursor
        newest = max(r.modified for r in found)
        at_newest = {r.id for r in found if r.modified == newest}
        if newest == cursor.value:
            at_newest |= seen
        return found, Cursor(newest, tuple(sorted(at_newest)))

    def close(self) -> None:
        self._client.close()


class ConnectorVendor(Vendor):
    """Lets the effect executor write through a connector.

    An effect's request carries ``object``, ``operation``, ``data`` and optionally
    ``external_id``; its key becomes the vendor's idempotency key.
    """

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.batch_size = connector.batch_size

    @staticmethod
    def _request(effect: Effect) -> WriteRequest:
        body = effect.request
        return WriteRequest(
            object=str(body.get("object", effect.operation)),
            operation=str(body.get("operation", "create")),
            data=dict(body.get("data", body.get("fields", {}))),
            idempotency_key=effect.key,
            external_id=body.get("external_id"),
            priority=int(body.get("priority", 5)),
        )

    def perform(self, effect: Effect) -> EffectOutcome:
        return self.connector.write(self._request(effect))

    def perform_many(self, batch: Sequence[Effect]) -> list[EffectOutcome | AccordError]:
        return self.connector.write_many([self._request(e) for e in batch])

    def lookup(self, effect: Effect) -> EffectOutcome | None:
        return self.connector.lookup(self._request(effect))

    def close(self) -> None:
        self.connector.close()


def iter_pages(connector: Connector, object: str, cursor: Cursor) -> Iterator[VendorRecord]:
    """Convenience: the records of :meth:`Connector.read_changes` as an iterator."""
    records, _ = connector.read_changes(object, cursor)
    yield from records
