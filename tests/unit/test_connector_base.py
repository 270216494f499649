"""The connector SDK (``accord.connectors.base``) with a fake vendor over ``httpx.MockTransport``.

``FakeVendor`` is a tiny vendor API: ``GET /{object}?since=&page=`` lists records
modified at or after ``since`` (inclusive, as real vendors filter), two a page,
ordered by stamp then id; ``POST /{object}`` creates one, keyed by the
``Idempotency-Key`` header. ``FakeConnector`` is what a vendor folder would hold:
``fetch_page`` and ``write``, nothing else. ``RecordingGovernor`` is a fake of the
governor port that remembers every call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from accord.connectors.base import (
    Capability,
    Connector,
    ConnectorVendor,
    Cursor,
    NotSupported,
    Page,
    VendorRecord,
    WriteRequest,
    classify_response,
)
from accord.connectors.governor import MemoryGovernor
from accord.errors import AccordError, InvalidInput, TransientError
from accord.runtime.effects import Effect, EffectOutcome

PAGE_SIZE = 2


@dataclass
class FakeVendor:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    fail_next: list[httpx.Response | Exception] = field(default_factory=list)

    def add(self, id: str, modified: str, **data: Any) -> None:
        self.records[id] = {"id": id, "modified": modified, **data}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        if request.method == "POST":
            key = request.headers["Idempotency-Key"]
            body = json.loads(request.content)
            self.records.setdefault(key, {"id": f"V-{len(self.records) + 1}", **body})
            return httpx.Response(201, json=self.records[key])
        since = request.url.params.get("since", "")
        offset = int(request.url.params.get("page", "0"))
        matching = sorted(
            (r for r in self.records.values() if r["modified"] >= since),
            key=lambda r: (r["modified"], r["id"]),
        )
        chunk = matching[offset : offset + PAGE_SIZE]
        more = offset + PAGE_SIZE < len(matching)
        return httpx.Response(
            200, json={"records": chunk, "next": str(offset + PAGE_SIZE) if more else None}
        )


class FakeConnector(Connector):
    name = "fake"
    capabilities = frozenset({Capability.READ, Capability.WRITE})

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        params = {"since": cursor.value or ""}
        if page is not None:
            params["page"] = page
        body = self.request("GET", f"/{object}", params=params).json()
        return Page(
            [VendorRecord(object, r["id"], r["modified"], r) for r in body["records"]],
            next_page=body["next"],
        )

    def write(self, request: WriteRequest) -> EffectOutcome:
        response = self.request(
            "POST",
            f"/{request.object}",
            json=dict(request.data),
            headers={"Idempotency-Key": request.idempotency_key},
            priority=request.priority,
        )
        return EffectOutcome(external_id=response.json()["id"], result=response.json())


@dataclass
class RecordingGovernor:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def acquire(self, vendor: str, priority: int = 5) -> None:
        self.calls.append(("acquire", vendor, priority))

    def release(self, vendor: str, *, retry_after: float | None = None, ok: bool = True) -> None:
        self.calls.append(("release", vendor, retry_after, ok))


@pytest.fixture
def vendor() -> FakeVendor:
    return FakeVendor()


@pytest.fixture
def governor() -> RecordingGovernor:
    return RecordingGovernor()


@pytest.fixture
def connector(vendor: FakeVendor, governor: RecordingGovernor) -> Iterator[FakeConnector]:
    connector = FakeConnector(
        "https://fake.example", transport=httpx.MockTransport(vendor), governor=governor
    )
    yield connector
    connector.close()


def ids(records: list[VendorRecord]) -> list[str]:
    return [r.id for r in records]


# --------------------------------------------------------------------------- reading


def test_read_changes_follows_every_page_and_keeps_the_newest_stamp(
    connector: FakeConnector, vendor: FakeVendor
) -> None:
    for i, stamp in enumerate(["t1", "t2", "t3", "t4", "t4"], start=1):
        vendor.add(f"r{i}", stamp)

    records, cursor = connector.read_changes("invoice", Cursor())

    assert ids(records) == ["r1", "r2", "r3", "r4", "r5"]
    assert [r.url.params.get("page") for r in vendor.requests] == [None, "2", "4"]
    assert cursor == Cursor("t4", ("r4", "r5"))
    assert Cursor.decode(cursor.encode()) == cursor


def test_records_sharing_the_cursor_stamp_are_neither_missed_nor_read_twice(
    connector: FakeConnector, vendor: FakeVendor
) -> None:
    vendor.add("a", "t1")
    vendor.add("b", "t2")
    vendor.add("c", "t2")
    first, cursor = connector.read_changes("invoice", Cursor())
    assert ids(first) == ["a", "b", "c"]
    assert cursor == Cursor("t2", ("b", "c"))

    # Written after the first read but stamped in the same instant as b and c
    # (vendors stamp to the second): a ">" filter would miss d forever.
    vendor.add("d", "t2")
    second, cursor = connector.read_changes("invoice", cursor)
    assert ids(second) == ["d"]
    assert cursor == Cursor("t2", ("b", "c", "d"))

    vendor.add("e", "t2")
    vendor.add("f", "t3")
    third, cursor = connector.read_changes("invoice", cursor)
    assert ids(third) == ["e", "f"]
    assert cursor == Cursor("t3", ("f",))

    nothing, unchanged = connector.read_changes("invoice", cursor)
    assert (nothing, unchanged) == ([], cursor)


def test_a_record_changed_again_is_read_again(connector: FakeConnector, vendor: FakeVendor) -> None:
    vendor.add("a", "t1")
    _, cursor = connector.read_changes("invoice", Cursor())
    vendor.add("a", "t2", status="paid")
    again, _ = connector.read_changes("invoice", cursor)
    assert [(r.id, r.modified, r.data["status"]) for r in again] == [("a", "t2", "paid")]


# --------------------------------------------------------------------------- errors


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://fake.example/invoice")
    return httpx.Response(status, headers=headers, text="vendor says no", request=request)


def test_a_429_with_retry_after_is_transient_with_that_delay() -> None:
    error = classify_response(response(429, {"Retry-After": "7"}))
    assert isinstance(error, TransientError) and error.retryable
    assert error.retry_after == 7.0
    assert "429" in str(error) and "/invoice" in str(error)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_timeouts_and_server_errors_are_retryable(status: int) -> None:
    error = classify_response(response(status))
    assert isinstance(error, TransientError) and error.retryable
    assert error.retry_after is None


def test_a_retry_after_that_is_not_seconds_is_ignored_not_fatal() -> None:
    error = classify_response(response(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert isinstance(error, TransientError) and error.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_other_client_errors_are_the_requests_fault_and_not_retryable(status: int) -> None:
    error = classify_response(response(status))
    assert isinstance(error, InvalidInput) and not error.retryable
    assert error.record == "/invoice"


def test_transport_errors_become_transient_errors(
    connector: FakeConnector, vendor: FakeVendor
) -> None:
    vendor.fail_next.append(httpx.ConnectError("connection refused"))
    with pytest.raises(TransientError) as raised:
        connector.read_changes("invoice", Cursor())
    assert raised.value.retryable
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_an_error_response_is_raised_classified(
    connector: FakeConnector, vendor: FakeVendor
) -> None:
    vendor.fail_next.append(httpx.Response(400, json={"error": "bad field"}))
    with pytest.raises(InvalidInput):
        connector.read_changes("invoice", Cursor())


# --------------------------------------------------------------------------- the governor


def test_the_governor_is_called_around_every_request(
    connector: FakeConnector, vendor: FakeVendor, governor: RecordingGovernor
) -> None:
    for i in range(3):
        vendor.add(f"r{i}", "t1")
    connector.read_changes("invoice", Cursor())  # two pages
    assert governor.calls == [
        ("acquire", "fake", 5),
        ("release", "fake", None, True),
        ("acquire", "fake", 5),
        ("release", "fake", None, True),
    ]


def test_a_429_passes_its_retry_after_to_the_governor(
    connector: FakeConnector, vendor: FakeVendor, governor: RecordingGovernor
) -> None:
    vendor.fail_next.append(httpx.Response(429, headers={"Retry-After": "3"}))
    with pytest.raises(TransientError):
        connector.read_changes("invoice", Cursor())
    assert governor.calls == [("acquire", "fake", 5), ("release", "fake", 3.0, False)]


def test_a_failed_request_still_releases_its_slot(
    connector: FakeConnector, vendor: FakeVendor, governor: RecordingGovernor
) -> None:
    vendor.fail_next.append(httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError):
        connector.read_changes("invoice", Cursor())
    assert governor.calls == [("acquire", "fake", 5), ("release", "fake", None, False)]


def test_a_write_asks_the_governor_with_its_priority(
    connector: FakeConnector, governor: RecordingGovernor
) -> None:
    connector.write(WriteRequest("payment", "create", {"amount": 100}, "acc_1", priority=1))
    assert governor.calls[0] == ("acquire", "fake", 1)


def test_a_retry_after_pauses_the_vendor_in_the_real_governor(vendor: FakeVendor) -> None:
    now = [1_000.0]
    shared = MemoryGovernor(
        {}, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    connector = FakeConnector("https://fake.example", transport=httpx.MockTransport(vendor))
    connector.governor = shared
    try:
        vendor.fail_next.append(httpx.Response(429, headers={"Retry-After": "30"}))
        with pytest.raises(TransientError):
            connector.read_changes("invoice", Cursor())
        assert shared.status("fake").paused_until == 1_030.0
        connector.read_changes("invoice", Cursor())  # waits out the pause, then reads
        assert now[0] >= 1_030.0
        assert shared.status("fake").inflight == 0
    finally:
        connector.close()


# --------------------------------------------------------------------------- effects


@dataclass
class RecordingConnector(Connector):
    name = "recorder"
    batch_size = 50
    written: list[WriteRequest] = field(default_factory=list)
    refuse: Callable[[WriteRequest], AccordError | None] = lambda _request: None

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        return Page([])

    def write(self, request: WriteRequest) -> EffectOutcome:
        error = self.refuse(request)
        if error is not None:
            raise error
        self.written.append(request)
        return EffectOutcome(external_id=f"X-{len(self.written)}")


def test_connector_vendor_maps_an_effect_to_a_write_request() -> None:
    connector = RecordingConnector("https://recorder.example")
    adapter = ConnectorVendor(connector)
    effect = Effect(
        system="recorder",
        operation="post_invoice",
        key="acc_0123",
        request={
            "object": "invoice",
            "operation": "upsert",
            "data": {"number": "INV-1", "total": 1000},
            "external_id": "INV-1",
            "priority": 1,
        },
    )
    try:
        outcome = adapter.perform(effect)
    finally:
        adapter.close()
    assert outcome.external_id == "X-1"
    assert connector.written == [
        WriteRequest(
            object="invoice",
            operation="upsert",
            data={"number": "INV-1", "total": 1000},
            idempotency_key="acc_0123",
            external_id="INV-1",
            priority=1,
        )
    ]
    assert adapter.batch_size == 50
    assert adapter.lookup(effect) is None


def test_connector_vendor_fills_in_what_an_effect_leaves_out() -> None:
    connector = RecordingConnector("https://recorder.example")
    adapter = ConnectorVendor(connector)
    try:
        adapter.perform(Effect("recorder", "enrich_company", "acc_9", {"fields": {"size": 40}}))
    finally:
        adapter.close()
    assert connector.written == [
        WriteRequest("enrich_company", "create", {"size": 40}, "acc_9", None, priority=5)
    ]


def test_a_batch_returns_one_outcome_or_error_per_effect_in_order() -> None:
    refused = InvalidInput("no such customer", record="invoice")
    connector = RecordingConnector(
        "https://recorder.example",
        refuse=lambda request: refused if request.idempotency_key == "k2" else None,
    )
    adapter = ConnectorVendor(connector)
    batch = [Effect("recorder", "post", f"k{i}", {"data": {"n": i}}) for i in (1, 2, 3)]
    try:
        results = adapter.perform_many(batch)
    finally:
        adapter.close()
    assert [r.external_id if isinstance(r, EffectOutcome) else r for r in results] == [
        "X-1",
        refused,
        "X-2",
    ]


def test_a_read_only_connector_refuses_to_write() -> None:
    class ReadOnly(Connector):
        name = "readonly"

        def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
            return Page([])

    connector = ReadOnly("https://readonly.example")
    try:
        with pytest.raises(NotSupported):
            ConnectorVendor(connector).perform(Effect("readonly", "create", "k", {}))
        with pytest.raises(NotSupported):
            connector.verify_webhook({}, b"", datetime.now(UTC))
    finally:
        connector.close()
