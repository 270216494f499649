"""The NetSuite connector over real HTTP against the NetSuite stand-in.

NetSuite publishes no machine-readable description of its REST API, so instead
of validating against one these tests hold every exchange to what NetSuite
documents: the connector calls only the documented paths and methods of the
record service and SuiteQL, and every error the stand-in answers has
NetSuite's error body (``type``, ``title``, ``status``, ``o:errorDetails`` with
``detail`` and ``o:errorCode``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.connectors.base import ConnectorVendor, Cursor, WriteRequest
from accord.connectors.governor import MemoryGovernor, QuotaPolicy
from accord.connectors.netsuite import NetSuiteConnector, auth, mapping, suiteql
from accord.errors import InvalidInput, TransientError
from accord.runtime.effects import Effect, EffectExecutor, MemoryLedger, effect_key
from accord.runtime.retry import RetryPolicy
from accord.sandbox.netsuite import Faults, NetSuiteStandIn

T0 = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)

# the paths and methods NetSuite documents for the REST record service and SuiteQL
DOCUMENTED = [
    ("POST", re.compile(r"^/services/rest/query/v1/suiteql$")),
    ("POST", re.compile(r"^/services/rest/record/v1/\w+$")),
    ("GET", re.compile(r"^/services/rest/record/v1/\w+$")),
    ("GET", re.compile(r"^/services/rest/record/v1/\w+/(\d+|eid:[^/]+)$")),
    ("PATCH", re.compile(r"^/services/rest/record/v1/\w+/(\d+|eid:[^/]+)$")),
    ("PUT", re.compile(r"^/services/rest/record/v1/\w+/eid:[^/]+$")),
    ("DELETE", re.compile(r"^/services/rest/record/v1/\w+/(\d+|eid:[^/]+)$")),
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


class Wire(httpx.BaseTransport):
    """Real HTTP that keeps every exchange and checks every error body's shape."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls: list[tuple[str, str]] = []
        self.problems: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        response = self.inner.handle_request(request)
        try:
            response.read()
        except httpx.TransportError:
            response.close()
            raise
        if response.status_code >= 400:
            self._check_error(request, response)
        return response

    def _check_error(self, request: httpx.Request, response: httpx.Response) -> None:
        where = f"{request.method} {request.url.path} → {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            self.problems.append(f"{where}: not JSON")
            return
        if not isinstance(body, dict) or set(body) != {"type", "title", "status", "o:errorDetails"}:
            self.problems.append(f"{where}: not NetSuite's error body: {body!r}")
            return
        details = body["o:errorDetails"]
        if body["status"] != response.status_code or not isinstance(details, list) or not details:
            self.problems.append(f"{where}: status or o:errorDetails wrong: {body!r}")
            return
        for detail in details:
            if set(detail) != {"detail", "o:errorCode"} or not detail["o:errorCode"]:
                self.problems.append(f"{where}: error detail wrong: {detail!r}")

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serve(clock: Clock) -> Iterator[Callable[..., NetSuiteStandIn]]:
    started: list[NetSuiteStandIn] = []

    def start(**options: Any) -> NetSuiteStandIn:
        options.setdefault("clock", clock)
        server = NetSuiteStandIn(account_id="1234567-sb1", seed=3, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def stand_in(serve: Callable[..., NetSuiteStandIn]) -> NetSuiteStandIn:
    return serve()


@pytest.fixture
def wire() -> Iterator[Wire]:
    transport = Wire()
    yield transport
    transport.close()
    assert not transport.problems, "\n".join(transport.problems)
    undocumented = sorted(
        {
            (method, path)
            for method, path in transport.calls
            if not any(m == method and pattern.match(path) for m, pattern in DOCUMENTED)
        }
    )
    assert not undocumented, f"calls outside NetSuite's documented REST paths: {undocumented}"


@pytest.fixture
def connect(
    stand_in: NetSuiteStandIn, wire: Wire, clock: Clock
) -> Iterator[Callable[..., NetSuiteConnector]]:
    made: list[NetSuiteConnector] = []

    def build(server: NetSuiteStandIn | None = None, **options: Any) -> NetSuiteConnector:
        server = server or stand_in
        options.setdefault("credentials", server.credentials)
        options.setdefault("clock", lambda: clock().timestamp())
        connector = NetSuiteConnector(base_url=server.url, transport=wire, timeout=5, **options)
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()


def executor_for(connector: NetSuiteConnector, sleep: Callable[[float], None]) -> EffectExecutor:
    policy = RetryPolicy(initial_interval=0.0, maximum_attempts=8)
    return EffectExecutor(MemoryLedger(), {"netsuite": ConnectorVendor(connector)}, policy, sleep)


def customer_request(canonical_id: str, name: str = "Acme GmbH") -> WriteRequest:
    body = mapping.customer_from_account(
        {"id": canonical_id, "legal_name": name, "default_currency": "EUR"}, subsidiary_id="1"
    )
    key = effect_key("netsuite", "upsert_customer", canonical_id)
    return WriteRequest("customer", "upsert", body, key, canonical_id)


def invoice_body(customer_id: str, number: str, cents: int = 150_000) -> dict[str, Any]:
    return mapping.invoice_from_canonical(
        {
            "id": number,
            "currency": "EUR",
            "number": number,
            "issue_date": "2024-03-01",
            "due_date": "2024-03-31",
            "lines": [
                {
                    "description": "Consulting, 7.5 h",
                    "quantity": Decimal("7.5"),
                    "unit_price": cents // 10,
                    "amount": cents * 3 // 4,
                },
                {"description": "Workshop", "quantity": 1, "amount": cents // 4},
            ],
        },
        customer_id=customer_id,
        item_id="1",
    )


# -- token-based authentication ----------------------------------------------------------------


def test_the_base_string_follows_rfc_5849_example() -> None:
    # RFC 5849 §3.4.1.1, with its form body parameters
    oauth = {
        "oauth_consumer_key": "9djdj82h48djs9d2",
        "oauth_token": "kkk9d7dh3k39sjv7",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "137131201",
        "oauth_nonce": "7d8f3e4a",
        "oauth_signature": "ignored",
        "realm": "Example",
    }
    base = auth.base_string(
        "post",
        "http://EXAMPLE.COM:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
        oauth,
        form=[("c2", ""), ("a3", "2 q")],
    )
    assert base == (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D"
        "%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce"
        "%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26"
        "oauth_token%3Dkkk9d7dh3k39sjv7"
    )


def test_a_signed_header_parses_back_and_verifies() -> None:
    header = auth.authorization_header(
        "GET",
        "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/record/v1/customer?limit=5",
        realm="1234567_SB1",
        consumer_key="ck",
        consumer_secret="cs&?",
        token="tk",
        token_secret="ts",
        timestamp=1_700_000_000,
        nonce="n/1",
    )
    assert header.startswith('OAuth realm="1234567_SB1", oauth_consumer_key="ck"')
    parsed = auth.parse_authorization(header)
    assert (parsed.nonce, parsed.signature_method, parsed.version) == ("n/1", "HMAC-SHA256", "1.0")
    url = "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/record/v1/customer?limit=5"
    base = auth.base_string("GET", url, parsed.protocol())
    assert auth.sign(base, "cs&?", "ts") == parsed.signature
    assert auth.sign(base, "cs&?", "other") != parsed.signature


def test_bad_signature_reused_nonce_and_stale_timestamp_are_refused(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector], clock: Clock
) -> None:
    good = connect()
    good.read_changes("customer", Cursor())

    wrong = connect(credentials={**stand_in.credentials, "token_secret": "stolen"})
    with pytest.raises(InvalidInput) as bad:
        wrong.read_changes("customer", Cursor())
    assert "401" in str(bad.value) and "INVALID_LOGIN" in str(bad.value)
    assert not bad.value.retryable

    replaying = connect(nonce=lambda: "always-the-same")
    replaying.read_changes("customer", Cursor())
    with pytest.raises(InvalidInput, match="INVALID_LOGIN"):
        replaying.read_changes("customer", Cursor())

    late = connect(clock=lambda: clock().timestamp() - 301)
    with pytest.raises(InvalidInput, match="INVALID_LOGIN"):
        late.read_changes("customer", Cursor())
    assert stand_in.counters["unauthorized"] == 3

    unsigned = httpx.get(f"{stand_in.url}/services/rest/record/v1/customer")
    assert unsigned.status_code == 401
    assert unsigned.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


# -- reading -------------------------------------------------------------------------------------


def test_suiteql_reads_pages_sharing_a_stamp_without_missing_or_repeating(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector], clock: Clock
) -> None:
    first_ids = stand_in.seed_customers(7)  # all at one lastModifiedDate
    netsuite = connect(page_size=3)
    read: list[str] = []

    def poll(cursor: Cursor) -> tuple[list[str], Cursor]:
        records, cursor = netsuite.read_changes("customer", cursor)
        read.extend(r.id for r in records)
        return sorted(r.id for r in records), cursor

    first, cursor = poll(Cursor())
    assert first == sorted(first_ids)
    assert stand_in.counters["POST /query/v1/suiteql"] == 3  # 3 + 3 + 1
    assert cursor.value == "2024-03-01T09:00:00Z" and len(cursor.seen) == 7

    late = sorted(stand_in.seed_customers(4, prefix="late"))  # the very same second
    second, cursor = poll(cursor)
    assert second == late
    assert poll(cursor)[0] == []

    clock.tick(2)
    stand_in.update("customer", first_ids[0], {"email": "ap@acme.test"})
    third, cursor = poll(Cursor.decode(cursor.encode()))
    assert third == [first_ids[0]]
    assert cursor.value == "2024-03-01T09:00:02Z"
    assert len(read) == len(set(read)) + 1  # only the record changed again was read again
    canonical = mapping.account_from_customer(
        next(r.data for r in netsuite.read_changes("customer", Cursor())[0] if r.id == first_ids[0])
    )
    assert canonical["email"] == "ap@acme.test" and canonical["default_currency"] == "EUR"


def test_transactions_are_read_by_type_from_one_table(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    (customer,) = stand_in.seed_customers(1)
    netsuite = connect()
    netsuite.write(WriteRequest("invoice", "upsert", invoice_body(customer, "INV-1"), "k1"))
    payment = mapping.payment_from_canonical(
        {"currency": "EUR", "amount": 10_000}, customer_id=customer
    )
    netsuite.write(WriteRequest("customerPayment", "upsert", payment, "k2"))

    invoices, _ = netsuite.read_changes("invoice", Cursor())
    payments, _ = netsuite.read_changes("payment", Cursor())

    assert [r.object for r in invoices] == ["invoice"]
    fields = mapping.invoice_to_canonical(invoices[0].data)
    assert (fields["gross"], fields["amount_due"], fields["currency"]) == (150_000, 150_000, "EUR")
    assert fields["number"] == "INV-1" and fields["customer_external_id"] == customer
    assert mapping.payment_to_canonical(payments[0].data)["amount"] == 10_000
    assert "type = 'CustInvc'" in suiteql("invoice", None)


def test_a_record_modified_during_a_read_is_not_lost_behind_a_page(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector], clock: Clock
) -> None:
    ids = stand_in.seed_customers(6)
    netsuite = connect(page_size=2)
    first = netsuite.fetch_page("customer", Cursor(), None)
    clock.tick()
    stand_in.update("customer", ids[0], {"email": "moved@acme.test"})  # jumps to the end
    seen = [r.id for r in first.records]
    page = first.next_page
    while page is not None:
        result = netsuite.fetch_page("customer", Cursor(), page)
        seen += [r.id for r in result.records]
        page = result.next_page
    assert set(seen) == set(ids)  # an offset would have skipped ids[2]


# -- writing -------------------------------------------------------------------------------------


def test_the_same_upsert_twice_makes_one_record(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    netsuite = connect()
    request = customer_request("acc-1")

    first = netsuite.write(request)
    second = netsuite.write(request)

    assert first.external_id == second.external_id
    rows = stand_in.records("customer")
    assert len(rows) == 1 and rows[0]["externalId"] == "acc-1"
    assert rows[0]["currency"]["refName"] == "EUR"
    assert stand_in.counters["PUT /record/v1/{type}/eid:{value}"] == 2


def test_without_an_external_id_the_effect_key_is_the_external_id(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    netsuite = connect()
    body = mapping.job_from_project({"name": "Rollout"}, customer_id=stand_in.seed_customers(1)[0])
    outcome = netsuite.write(WriteRequest("project", "create", body, "acc_key_7"))
    assert netsuite.get("job", "eid:acc_key_7")["id"] == outcome.external_id
    found = netsuite.lookup(WriteRequest("job", "create", body, "acc_key_7"))
    assert found is not None and found.replayed and found.external_id == outcome.external_id
    assert netsuite.lookup(WriteRequest("job", "create", body, "never-sent")) is None


def test_a_lost_response_is_recovered_into_one_record(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    netsuite = connect()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        stand_in.faults = Faults()

    stand_in.faults = Faults(lost_response_rate=1.0)
    request = customer_request("canon-1")
    effect = Effect(
        "netsuite",
        "upsert_customer",
        request.idempotency_key,
        {
            "object": "customer",
            "operation": "upsert",
            "data": request.data,
            "external_id": "canon-1",
        },
    )
    outcome = executor_for(netsuite, sleep).execute(effect)

    assert outcome.replayed  # found by its external id, not written again
    assert stand_in.counters["lost"] == 1
    assert [row["id"] for row in stand_in.records("customer")] == [outcome.external_id]
    assert len(waits) == 1


def test_an_invoice_with_lines_round_trips_to_the_cent_and_payments_apply(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    netsuite = connect()
    customer = netsuite.write(customer_request("acc-9")).external_id
    assert customer is not None
    invoice = netsuite.write(
        WriteRequest("invoice", "upsert", invoice_body(customer, "INV-9", 123_457), "k", "inv-9")
    ).external_id
    assert invoice is not None

    record = netsuite.get("invoice", invoice)
    fields = mapping.invoice_to_canonical(record)
    assert fields["gross"] == 123_457 // 4 + 123_457 * 3 // 4
    assert [line["amount"] for line in fields["lines"]] == [123_457 * 3 // 4, 123_457 // 4]
    assert fields["lines"][0]["quantity"] == "7.5" and fields["status"] == "issued"

    payment = mapping.payment_from_canonical(
        {"currency": "EUR", "amount": 50_000, "reference": "wire 1"},
        customer_id=customer,
        applications={invoice: 50_000},
    )
    netsuite.write(WriteRequest("customerPayment", "upsert", payment, "p", "pay-9"))
    after = mapping.invoice_to_canonical(netsuite.get("invoice", invoice))
    assert (after["amount_due"], after["status"]) == (fields["gross"] - 50_000, "partially_paid")

    memo = mapping.credit_memo_from_canonical(
        {
            "currency": "EUR",
            "reason": "goodwill",
            "lines": [{"description": "Goodwill", "amount": after["amount_due"]}],
        },
        customer_id=customer,
        invoice_id=invoice,
        item_id="1",
    )
    netsuite.write(WriteRequest("creditMemo", "upsert", memo, "c", "cm-9"))
    paid = mapping.invoice_to_canonical(netsuite.get("invoice", invoice))
    assert (paid["amount_due"], paid["status"]) == (0, "paid")


def test_an_update_patches_by_internal_id(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    netsuite = connect()
    customer = netsuite.write(customer_request("acc-2")).external_id
    netsuite.write(WriteRequest("customer", "update", {"email": "x@y.test"}, "k", customer))
    assert stand_in.records("customer")[0]["email"] == "x@y.test"
    with pytest.raises(InvalidInput, match="internal id"):
        netsuite.write(WriteRequest("customer", "update", {"email": "x@y.test"}, "k"))


def test_a_thousand_invoices_take_one_call_each(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    (customer,) = stand_in.seed_customers(1)
    netsuite = connect()
    requests = [
        WriteRequest("invoice", "upsert", invoice_body(customer, f"INV-{n}"), f"k{n}", f"inv-{n}")
        for n in range(40)
    ]
    results = ConnectorVendor(netsuite).connector.write_many(requests)
    assert all(not isinstance(r, Exception) for r in results)
    assert stand_in.counters["requests"] == 40  # no multi-record write: one call each
    assert len(stand_in.records("invoice")) == 40


# -- the stand-in's own resources -------------------------------------------------------------


def test_post_creates_with_location_and_the_list_pages_ids(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector], clock: Clock
) -> None:
    netsuite = connect()
    body = {"companyName": "Posted Ltd", "subsidiary": {"id": "1"}, "externalId": "posted-1"}
    created = netsuite.request(
        "POST", "/services/rest/record/v1/customer", content=mapping.dumps(body)
    )
    assert created.status_code == 204
    new_id = created.headers["Location"].rsplit("/", 1)[1]
    clock.tick(10)
    stand_in.seed_customers(3)

    listed = netsuite.request(
        "GET",
        "/services/rest/record/v1/customer",
        params={"q": 'lastModifiedDate ON_OR_AFTER "2024-03-01T09:00:05Z"', "limit": 2},
    ).json()
    assert (listed["count"], listed["hasMore"], listed["totalResults"]) == (2, True, 3)
    assert [link["rel"] for link in listed["links"]] == ["self", "next"]
    assert set(listed["items"][0]) == {"links", "id"}  # ids and links, not bodies
    by_eid = netsuite.request(
        "GET", "/services/rest/record/v1/customer", params={"q": 'externalId IS "posted-1"'}
    ).json()
    assert [item["id"] for item in by_eid["items"]] == [new_id]

    with pytest.raises(InvalidInput, match="DUP_RCRD"):
        netsuite.request("POST", "/services/rest/record/v1/customer", content=mapping.dumps(body))


def test_sublists_are_links_unless_expanded(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    (customer,) = stand_in.seed_customers(1)
    netsuite = connect()
    invoice = netsuite.write(WriteRequest("invoice", "upsert", invoice_body(customer, "I"), "k"))
    assert invoice.external_id is not None
    plain = netsuite.get("invoice", invoice.external_id, expand=False)
    assert set(plain["item"]) == {"links"}
    full = netsuite.get("invoice", invoice.external_id)
    assert full["item"]["count"] == 2 and full["item"]["items"][0]["item"]["id"] == "1"
    assert full["total"] == Decimal("1500.00")


# -- errors and concurrency ----------------------------------------------------------------------


def test_error_classification(
    stand_in: NetSuiteStandIn, connect: Callable[..., NetSuiteConnector]
) -> None:
    netsuite = connect()
    with pytest.raises(InvalidInput) as bad_ref:  # 400 INVALID_KEY_OR_REF
        netsuite.write(WriteRequest("invoice", "upsert", invoice_body("999999", "X"), "k"))
    assert not bad_ref.value.retryable and "INVALID_KEY_OR_REF" in str(bad_ref.value)
    with pytest.raises(InvalidInput, match="USER_ERROR"):
        netsuite.write(WriteRequest("customer", "upsert", {"companyName": "No subsidiary"}, "k"))
    with pytest.raises(InvalidInput, match="NONEXISTENT_ID"):
        netsuite.get("customer", "424242")
    assert stand_in.records("invoice") == []  # nothing half-applied

    stand_in.faults = Faults(error_rate=1.0)
    with pytest.raises(TransientError) as unavailable:
        netsuite.read_changes("customer", Cursor())
    assert "503" in str(unavailable.value) and "UNEXPECTED_ERROR" in str(unavailable.value)

    stand_in.faults = Faults(throttle_rate=1.0, retry_after=4)
    with pytest.raises(TransientError) as throttled:
        netsuite.read_changes("customer", Cursor())
    assert throttled.value.retry_after == 4.0 and "SSS_REQUEST_LIMIT_EXCEEDED" in str(
        throttled.value
    )


def _in_parallel(calls: list[Callable[[], object]]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            calls[index]()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_requests_over_the_concurrency_slots_are_refused_and_the_governor_prevents_it(
    serve: Callable[..., NetSuiteStandIn], connect: Callable[..., NetSuiteConnector]
) -> None:
    stand_in = serve(concurrency=2, faults=Faults(latency=0.15))
    stand_in.seed_customers(2)
    alone = [connect(stand_in) for _ in range(6)]
    refused = _in_parallel([lambda c=c: c.read_changes("customer", Cursor()) for c in alone])
    over = [e for e in refused if e is not None]
    assert over and all(isinstance(e, TransientError) for e in over)
    assert all("SSS_REQUEST_LIMIT_EXCEEDED" in str(e) for e in over)

    governor = MemoryGovernor({"netsuite": QuotaPolicy(concurrency=2)})
    before = stand_in.counters.get("over_concurrency", 0)
    stand_in.peak_inflight = 0
    governed = [connect(stand_in, governor=governor) for _ in range(6)]
    outcomes = _in_parallel([lambda c=c: c.read_changes("customer", Cursor()) for c in governed])
    assert outcomes == [None] * 6
    assert stand_in.counters.get("over_concurrency", 0) == before
    assert stand_in.peak_inflight == 2


# -- mapping invariants -------------------------------------------------------------------------


@given(
    minor=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(["EUR", "USD", "JPY", "GBP"]),
)
def test_amounts_survive_the_wire_exactly(minor: int, currency: str) -> None:
    amount = mapping.to_amount(minor, currency)
    assert mapping.from_amount(mapping.loads(mapping.dumps({"a": amount}))["a"], currency) == minor


def test_money_never_passes_through_a_float() -> None:
    with pytest.raises(InvalidInput, match="float"):
        mapping.dumps({"amount": 0.1})
    with pytest.raises(InvalidInput, match="more decimals"):
        mapping.from_amount(Decimal("10.005"), "EUR", record="invoice[1]")
    with pytest.raises(InvalidInput) as no_lines:
        mapping.invoice_from_canonical(
            {"id": "i1", "currency": "EUR"}, customer_id="1", item_id="1"
        )
    assert str(no_lines.value) == "Invoice[i1].lines: has no lines"
    with pytest.raises(InvalidInput, match="no NetSuite currency"):
        customer = {"legal_name": "X", "default_currency": "CHF"}
        mapping.customer_from_account(customer, subsidiary_id="1")
    assert mapping.dumps({"a": Decimal("1500.10"), "b": [Decimal("-0.5")]}) == (
        b'{"a":1500.10,"b":[-0.5]}'
    )
