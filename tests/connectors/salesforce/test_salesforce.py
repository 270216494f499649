"""The Salesforce connector over real HTTP against the Salesforce stand-in.

The paths the connector calls are checked against Salesforce's Postman request
collection (``../shared/specs/salesforce/postman``); where that folder is absent
the check skips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from accord.connectors.base import ConnectorVendor, Cursor, WriteRequest
from accord.connectors.salesforce import EXTERNAL_ID, SalesforceConnector, mapping
from accord.errors import InvalidInput, TransientError
from accord.runtime.effects import Effect, EffectExecutor, MemoryLedger
from accord.runtime.retry import RetryPolicy
from accord.sandbox.salesforce import Faults, SalesforceStandIn

COLLECTION = (
    Path(__file__).resolve().parents[3].parent
    / "shared/specs/salesforce/postman/collections/salesforce_apis"
)
TOKEN = "00D-test-token"
T0 = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


class Recording(httpx.BaseTransport):
    """Real HTTP that remembers the method and path of every request."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serve(clock: Clock) -> Iterator[Callable[..., SalesforceStandIn]]:
    started: list[SalesforceStandIn] = []

    def start(**options: Any) -> SalesforceStandIn:
        options.setdefault("clock", clock)
        server = SalesforceStandIn(token=TOKEN, seed=7, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def stand_in(serve: Callable[..., SalesforceStandIn]) -> SalesforceStandIn:
    return serve()


@pytest.fixture
def wire() -> Iterator[Recording]:
    transport = Recording()
    yield transport
    transport.close()


@pytest.fixture
def connect(
    stand_in: SalesforceStandIn, wire: Recording
) -> Iterator[Callable[..., SalesforceConnector]]:
    made: list[SalesforceConnector] = []

    def build(server: SalesforceStandIn | None = None, **options: Any) -> SalesforceConnector:
        options.setdefault("credentials", {"access_token": TOKEN})
        connector = SalesforceConnector(
            base_url=(server or stand_in).url, transport=wire, timeout=5, **options
        )
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()


def executor_for(connector: SalesforceConnector, sleep: Callable[[float], None]) -> EffectExecutor:
    policy = RetryPolicy(initial_interval=0.0, maximum_attempts=8)
    vendors = {"salesforce": ConnectorVendor(connector)}
    return EffectExecutor(MemoryLedger(), vendors, policy, sleep)


def account_effect(canonical_id: str, name: str) -> Effect:
    data = mapping.account_from_canonical({"legal_name": name, "default_currency": "EUR"})
    request = {
        "object": "Account",
        "operation": "upsert",
        "data": data,
        "external_id": canonical_id,
    }
    return Effect("salesforce", "upsert_account", f"key-{canonical_id}", request)


# -- reading ------------------------------------------------------------------------------------


def test_incremental_read_follows_every_page_then_returns_only_what_changed(
    serve: Callable[..., SalesforceStandIn],
    connect: Callable[..., SalesforceConnector],
    clock: Clock,
) -> None:
    stand_in = serve(query_batch_size=10)
    made = []
    for n in range(25):
        made.append(stand_in.create("Account", {"Name": f"A{n}"})["Id"])
        clock.tick(0.001)
    salesforce = connect(stand_in)

    records, cursor = salesforce.read_changes("Account", Cursor())

    assert sorted(r.id for r in records) == sorted(made)
    assert stand_in.counters["GET /query/"] == 1
    assert stand_in.counters["GET /query/{locator}"] == 2  # 10 + 10 + 5
    assert cursor.value == "2024-03-01T09:00:00.024Z"

    clock.tick(5)
    for record_id in (made[3], made[17]):
        salesforce.write(WriteRequest("Account", "update", {"Website": "x.test"}, "k", record_id))
    records, cursor = salesforce.read_changes("Account", cursor)

    assert sorted(r.id for r in records) == sorted([made[3], made[17]])
    assert {r.data["Website"] for r in records} == {"x.test"}
    assert salesforce.read_changes("Account", cursor) == ([], cursor)


def test_records_sharing_a_systemmodstamp_are_neither_missed_nor_repeated(
    serve: Callable[..., SalesforceStandIn],
    connect: Callable[..., SalesforceConnector],
    clock: Clock,
) -> None:
    stand_in = serve(query_batch_size=3)
    first_ids = stand_in.seed_accounts(7)  # all at one stamp
    salesforce = connect(stand_in)
    read: list[str] = []

    def poll(cursor: Cursor) -> tuple[list[str], Cursor]:
        records, cursor = salesforce.read_changes("Account", cursor)
        read.extend(r.id for r in records)
        return sorted(r.id for r in records), cursor

    first, cursor = poll(Cursor())
    assert first == sorted(first_ids) and len(cursor.seen) == 7

    late = sorted(stand_in.seed_accounts(3, prefix="late"))  # the very same stamp
    second, cursor = poll(cursor)
    assert second == late
    assert poll(cursor)[0] == []

    clock.tick(0.001)
    stand_in.update("Account", first_ids[0], {"Website": "y.test"})
    third, cursor = poll(cursor)
    assert third == [first_ids[0]]
    assert cursor.value == "2024-03-01T09:00:00.001Z"
    assert len(read) == len(set(read)) + 1  # only the record changed again was read again


def test_the_updated_resource_lists_changed_ids(
    stand_in: SalesforceStandIn, connect: Callable[..., SalesforceConnector], clock: Clock
) -> None:
    ids = stand_in.seed_accounts(2)
    salesforce = connect()
    answer = salesforce.request(
        "GET",
        f"{salesforce.prefix}/sobjects/Account/updated/",
        params={"start": "2024-03-01T08:00:00+00:00", "end": "2024-03-01T10:00:00+00:00"},
    ).json()
    assert answer == {"ids": sorted(ids), "latestDateCovered": "2024-03-01T10:00:00.000+0000"}


# -- writing ------------------------------------------------------------------------------------


def test_the_same_write_twice_makes_one_record(
    stand_in: SalesforceStandIn, connect: Callable[..., SalesforceConnector]
) -> None:
    salesforce = connect()
    data = mapping.account_from_canonical({"legal_name": "Acme GmbH", "default_currency": "eur"})
    request = WriteRequest("account", "create", data, "acc_key_1")

    first = salesforce.write(request)
    second = salesforce.write(request)

    assert first.external_id == second.external_id
    assert (first.result["created"], second.result["created"]) == (True, False)
    rows = stand_in.records("Account")
    assert len(rows) == 1 and rows[0][EXTERNAL_ID] == "acc_key_1"
    assert rows[0]["CurrencyIsoCode"] == "EUR"


def test_a_lost_response_is_recovered_into_one_record(
    stand_in: SalesforceStandIn, connect: Callable[..., SalesforceConnector]
) -> None:
    salesforce = connect()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        stand_in.faults = Faults()

    stand_in.faults = Faults(lost_response_rate=1.0)
    outcome = executor_for(salesforce, sleep).execute(account_effect("canon-1", "Acme"))

    assert outcome.replayed  # found again by its external id, not written again
    assert stand_in.counters["lost"] == 1
    rows = stand_in.records("Account")
    assert [row["Id"] for row in rows] == [outcome.external_id]
    assert len(waits) == 1


def test_a_thousand_updates_go_out_in_five_collection_calls(
    stand_in: SalesforceStandIn, connect: Callable[..., SalesforceConnector]
) -> None:
    stand_in.seed_accounts(1000)
    salesforce = connect()
    writeback = mapping.erp_writeback("C-0001", "credit_hold")
    requests = [
        WriteRequest("Account", "upsert", writeback, f"k{n}", f"acc-{n}") for n in range(1, 1001)
    ]

    results = ConnectorVendor(salesforce).connector.write_many(requests)

    calls = stand_in.counters[f"PATCH /composite/sobjects/Account/{EXTERNAL_ID}"]
    assert calls == math.ceil(1000 / 200) == 5
    assert all(not isinstance(r, Exception) for r in results)
    rows = stand_in.records("Account")
    assert len(rows) == 1000
    assert {row["ERP_Status__c"] for row in rows} == {"credit_hold"}


def test_a_bad_record_in_a_collection_fails_alone(
    stand_in: SalesforceStandIn, connect: Callable[..., SalesforceConnector]
) -> None:
    salesforce = connect()
    good = WriteRequest("Account", "upsert", {"Name": "Good"}, "k1", "g-1")
    bad = WriteRequest("Account", "upsert", {"Name": "Bad", "Nope__c": 1}, "k2", "b-1")
    results = salesforce.write_many([good, bad])
    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], InvalidInput) and "INVALID_FIELD" in str(results[1])
    assert [row["Name"] for row in stand_in.records("Account")] == ["Good"]


# -- errors -------------------------------------------------------------------------------------


def test_error_classification(
    serve: Callable[..., SalesforceStandIn], connect: Callable[..., SalesforceConnector]
) -> None:
    stand_in = serve(daily_limit=3)
    salesforce = connect(stand_in)
    stand_in.faults = Faults(error_rate=1.0)
    with pytest.raises(TransientError) as unavailable:
        salesforce.read_changes("Account", Cursor())
    stand_in.faults = Faults()
    with pytest.raises(InvalidInput) as missing:  # 400 REQUIRED_FIELD_MISSING
        salesforce.write(WriteRequest("Contact", "upsert", {"FirstName": "A"}, "k"))
    assert unavailable.value.retryable and "503" in str(unavailable.value)
    assert not missing.value.retryable and "REQUIRED_FIELD_MISSING" in str(missing.value)

    limits = salesforce.request("GET", f"{salesforce.prefix}/limits").json()
    assert limits["DailyApiRequests"] == {"Max": 3, "Remaining": 0}
    with pytest.raises(InvalidInput) as spent:
        salesforce.read_changes("Account", Cursor())
    assert "403" in str(spent.value) and "REQUEST_LIMIT_EXCEEDED" in str(spent.value)

    wrong = connect(stand_in, credentials={"access_token": "nope"})
    with pytest.raises(InvalidInput) as refused:
        wrong.read_changes("Account", Cursor())
    assert "401" in str(refused.value) and "INVALID_SESSION_ID" in str(refused.value)


# -- the request collection ---------------------------------------------------------------------

# Salesforce documents PATCH /composite/sobjects/{SObject}/{ExternalIdField} (sObject
# collections upsert, API 46.0+) but the Postman collection does not carry it; it is the
# first path allowed by name. The collection files the update collection under
# PATCH /composite/sobjects/<SOBJECT_API_NAME>, where Salesforce documents PATCH
# /composite/sobjects: the second. Both are listed so that the gaps stay visible.
NOT_IN_COLLECTION = {
    ("PATCH", "/composite/sobjects/Account/Accord_Id__c"),
    ("PATCH", "/composite/sobjects"),
}


def _templates() -> list[tuple[str, str, re.Pattern[str]]]:
    found: list[tuple[str, str, re.Pattern[str]]] = []
    for path in sorted(COLLECTION.rglob("*.json")):
        item = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(item, dict) or "url" not in item or "method" not in item:
            continue
        url = str(item["url"]).split("?")[0]
        tail = url.split("/services/data/v{{version}}", 1)
        if len(tail) != 2:
            continue
        template = tail[1].rstrip("/") or "/"
        pattern = re.escape(template)
        pattern = re.sub(r"<[^>]+>|\\\{\\\{[^}]+\\\}\\\}", "[^/]+", pattern)
        pattern = re.sub(r"&lt;[^&]+&gt;", "[^/]+", pattern)
        methods = {str(item["method"])}
        described = str(item.get("description") or "")
        methods |= set(re.findall(r"\b(GET|POST|PATCH|PUT|DELETE|HEAD)\b", described))
        for method in methods:
            found.append((method, template, re.compile(f"^{pattern}/?$")))
    return found


def test_every_path_the_connector_calls_is_in_the_request_collection(
    stand_in: SalesforceStandIn,
    connect: Callable[..., SalesforceConnector],
    wire: Recording,
    clock: Clock,
) -> None:
    if not COLLECTION.exists():
        pytest.skip(f"Salesforce's Postman collection is not at {COLLECTION}")
    templates = _templates()
    salesforce = connect()
    stand_in.seed_accounts(3)
    salesforce.read_changes("Account", Cursor())
    outcome = salesforce.write(WriteRequest("Account", "upsert", {"Name": "N"}, "k", "p-1"))
    salesforce.write(WriteRequest("Account", "upsert", {"Name": "N"}, "k", "p-1"))
    salesforce.write(WriteRequest("Account", "update", {"Name": "M"}, "k", outcome.external_id))
    salesforce.write_many([WriteRequest("Account", "upsert", {"Name": "Q"}, "k", "q-1")])
    salesforce.write_many(
        [WriteRequest("Account", "update", {"Name": "R"}, "k", "001" + "8d" + "0" * 13)]
    )
    server = SalesforceStandIn(token=TOKEN, query_batch_size=1, clock=clock).start()
    try:
        server.seed_accounts(2)
        connect(server).read_changes("Account", Cursor())
    finally:
        server.stop()

    # nextRecordsUrl (/query/{locator}) is the query resource's own continuation, as its
    # entry in the collection describes ("a query identifier in the nextRecordsUrl field")
    called = {
        (m, re.sub(r"^/query/[^/]+$", "/query", p.removeprefix(salesforce.prefix).rstrip("/")))
        for m, p in wire.calls
    }
    missing = sorted(
        (method, path)
        for method, path in called
        if (method, path) not in NOT_IN_COLLECTION
        and not any(m == method and pattern.match(path) for m, _, pattern in templates)
    )
    assert len(called) >= 6
    assert not missing, f"paths outside the Postman collection: {missing}"
