"""The Harvest connector over real HTTP against the Harvest stand-in.

Every request the connector sends and every response the stand-in returns in
these tests is validated against Harvest's OpenAPI description
(``../shared/specs/harvest/harvest-openapi.yaml``), so the stand-in cannot drift
away from Harvest into merely agreeing with the connector. Where that folder is
absent the exchanges go unchecked and the tests that need the description skip.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from accord.connectors.base import (
    Capability,
    ConnectorVendor,
    Cursor,
    NotSupported,
    VendorRecord,
    WriteRequest,
)
from accord.connectors.harvest import HarvestConnector, mapping
from accord.errors import InvalidInput, TransientError
from accord.runtime.effects import Effect, EffectExecutor, EffectFailed, MemoryLedger, effect_key
from accord.runtime.retry import RetryPolicy
from accord.sandbox.harvest import Faults, HarvestStandIn

SPEC_PATH = Path(__file__).resolve().parents[3].parent / "shared/specs/harvest/harvest-openapi.yaml"
SPEC_HOST = "https://api.harvestapp.com"  # the description's server is {SPEC_HOST}/v2
TOKEN, ACCOUNT = "test-token", "7654321"
T0 = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)


# -- the OpenAPI description, loaded once --------------------------------------------------


def _repair(node: Any) -> Any:
    """Two defects of the generated description, repaired in memory only.

    YAML reads the response codes as integers while openapi-core looks them up
    as text, so every body would be checked against the permissive ``default``
    error schema and nothing would fail; and a few ``anyOf`` branches use
    OpenAPI 3.1's ``type: 'null'`` in a 3.0 document, which the 3.0 validator
    rejects. The null branch becomes the 3.0 spelling of "null only".
    """
    if node == {"type": "null"}:
        return {"nullable": True, "enum": [None]}
    if isinstance(node, dict):
        return {str(key): _repair(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_repair(value) for value in node]
    return node


@pytest.fixture(scope="module")
def document() -> dict[str, Any] | None:
    if not SPEC_PATH.exists():
        return None
    loaded = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    repaired: dict[str, Any] = _repair(loaded)
    return repaired


@pytest.fixture(scope="module")
def spec(document: dict[str, Any] | None) -> OpenAPI | None:
    if document is None:
        return None
    # The document itself is not valid OpenAPI 3.0 (see _repair), so skip checking it.
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


def need(spec: object) -> None:
    if spec is None:
        pytest.skip(
            f"Harvest's OpenAPI description is not at {SPEC_PATH}; "
            "it lives in the shared specs folder beside the repository"
        )


class SpecCheckedTransport(httpx.BaseTransport):
    """Real HTTP that checks each request and response against the description.

    Problems are collected rather than raised, so the connector under test sees
    exactly what it would see without the check; the fixture fails the test.
    """

    def __init__(self, spec: OpenAPI | None) -> None:
        self.spec = spec
        self.inner = httpx.HTTPTransport()
        self.problems: list[str] = []
        self.exchanges = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        described = MockRequest(
            SPEC_HOST,
            request.method,
            request.url.path,
            args=parse_qs(request.url.query.decode(), keep_blank_values=True),
            headers=dict(request.headers),
            data=body or None,
            content_type=request.headers.get("content-type", "application/json"),
        )
        where = f"{request.method} {request.url.path}?{request.url.query.decode()}"
        if self.spec is not None:
            self._check(f"request {where}", lambda: self.spec_validate_request(described))
        response = self.inner.handle_request(request)
        try:
            response.read()  # a lost response fails here, after its request was checked
        except httpx.TransportError:
            response.close()
            raise
        if self.spec is not None:
            answer = MockResponse(
                response.content,
                response.status_code,
                dict(response.headers),
                response.headers.get("content-type", "").split(";")[0],
            )
            self._check(
                f"response {response.status_code} to {where}",
                lambda: self.spec_validate_response(described, answer),
            )
        self.exchanges += 1
        return response

    def spec_validate_request(self, request: MockRequest) -> None:
        assert self.spec is not None
        self.spec.validate_request(request)

    def spec_validate_response(self, request: MockRequest, response: MockResponse) -> None:
        assert self.spec is not None
        self.spec.validate_response(request, response)

    def _check(self, what: str, validate: Callable[[], None]) -> None:
        try:
            validate()
        except OpenAPIError as exc:
            cause = exc.__cause__ or exc
            self.problems.append(f"{what}: {type(exc).__name__}: {cause}"[:2000])

    def close(self) -> None:
        self.inner.close()


# -- fixtures -------------------------------------------------------------------------------


class Clock:
    """The stand-in's clock, moved by hand so records can share one ``updated_at``."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serve(clock: Clock) -> Iterator[Callable[..., HarvestStandIn]]:
    """Start stand-ins (real HTTP on loopback); all are stopped after the test."""
    started: list[HarvestStandIn] = []

    def start(**options: Any) -> HarvestStandIn:
        options.setdefault("clock", clock)
        server = HarvestStandIn(token=TOKEN, account_id=ACCOUNT, seed=11, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def stand_in(serve: Callable[..., HarvestStandIn]) -> HarvestStandIn:
    return serve()


@pytest.fixture
def wire(spec: OpenAPI | None) -> Iterator[SpecCheckedTransport]:
    transport = SpecCheckedTransport(spec)
    yield transport
    transport.close()
    assert not transport.problems, "exchanges outside Harvest's OpenAPI description:\n" + (
        "\n".join(transport.problems)
    )


@pytest.fixture
def connect(
    stand_in: HarvestStandIn, wire: SpecCheckedTransport
) -> Iterator[Callable[..., HarvestConnector]]:
    made: list[HarvestConnector] = []

    def build(server: HarvestStandIn | None = None, **options: Any) -> HarvestConnector:
        options.setdefault("credentials", {"access_token": TOKEN, "account_id": ACCOUNT})
        connector = HarvestConnector(
            base_url=(server or stand_in).url, transport=wire, timeout=5, **options
        )
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()


def ids(records: list[VendorRecord]) -> list[int]:
    return sorted(int(record.id) for record in records)


def time_entry_body(stand_in: HarvestStandIn, notes: str = "Design review") -> dict[str, Any]:
    project = stand_in.records("projects")[0]
    task = stand_in.records("tasks")[0]
    user = stand_in.records("users")[0]
    return mapping.time_entry_from_canonical(
        {"work_date": "2024-02-28", "hours": "1.75", "notes": notes},
        project_id=project["id"],
        task_id=task["id"],
        user_id=user["id"],
    )


def write_body(stand_in: HarvestStandIn, object: str, n: int = 1) -> dict[str, Any]:
    if object == "clients":
        return mapping.client_from_account(
            {"legal_name": f"Acme {n} GmbH", "default_currency": "EUR"}
        )
    if object == "projects":
        client = stand_in.records("clients")[0]["id"]
        canonical = {"name": f"Rollout {n}", "code": f"RO-{n}", "billable": True}
        return mapping.project_from_canonical(canonical, client_id=client)
    return time_entry_body(stand_in, notes=f"Work {n}")


def executor_for(
    connector: HarvestConnector, sleep: Callable[[float], None], attempts: int = 8
) -> EffectExecutor:
    policy = RetryPolicy(initial_interval=0.0, maximum_attempts=attempts)
    return EffectExecutor(MemoryLedger(), {"harvest": ConnectorVendor(connector)}, policy, sleep)


def create_effect(object: str, body: dict[str, Any], canonical_id: str) -> Effect:
    key = effect_key("harvest", f"create_{object}", canonical_id)
    request = {"object": object, "operation": "create", "data": body}
    return Effect("harvest", f"create_{object}", key, request)


# -- reading ----------------------------------------------------------------------------------


def test_incremental_read_follows_every_page_then_returns_only_what_changed(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector], clock: Clock
) -> None:
    seeded = stand_in.seed(clients=2, projects_per_client=2, users=2, tasks=2, time_entries=25)
    harvest = connect(per_page=10)

    records, cursor = harvest.read_changes("time_entries", Cursor())

    assert ids(records) == sorted(seeded.time_entries)
    assert stand_in.counters["GET /v2/time_entries"] == 3  # 10 + 10 + 5
    assert cursor.value == "2024-03-01T09:00:00Z"

    clock.tick(5)
    changed = (seeded.time_entries[3], seeded.time_entries[17])
    for entry in changed:
        update = WriteRequest("time_entries", "update", {"notes": "revised"}, "k", str(entry))
        harvest.write(update)
    records, cursor = harvest.read_changes("time_entries", cursor)

    assert ids(records) == sorted(changed)
    assert {record.data["notes"] for record in records} == {"revised"}
    assert harvest.read_changes("time_entries", cursor) == ([], cursor)
    assert harvest.user_agent in stand_in.user_agents


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
def test_records_sharing_an_updated_at_are_neither_missed_nor_repeated(
    serve: Callable[..., HarvestStandIn],
    connect: Callable[..., HarvestConnector],
    clock: Clock,
    inclusive: bool,
) -> None:
    stand_in = serve(updated_since_inclusive=inclusive)
    seeded = stand_in.seed(time_entries=7)  # all stamped at one second
    harvest = connect(stand_in, per_page=3)
    read: list[int] = []

    def poll(cursor: Cursor) -> tuple[list[int], Cursor]:
        records, cursor = harvest.read_changes("time_entries", cursor)
        read.extend(int(record.id) for record in records)
        return ids(records), cursor

    first, cursor = poll(Cursor())
    assert first == sorted(seeded.time_entries)
    assert len(cursor.seen) == 7

    body = time_entry_body(stand_in)
    late = sorted(int(stand_in.create("time_entries", body)["id"]) for _ in range(3))
    second, cursor = poll(cursor)  # three more at the very same second
    assert second == late
    assert poll(cursor)[0] == []

    clock.tick()
    stand_in.update("time_entries", seeded.time_entries[0], {"hours": 3.5})
    newer = int(stand_in.create("time_entries", body)["id"])
    third, cursor = poll(cursor)
    assert third == sorted([seeded.time_entries[0], newer])
    assert cursor.value == "2024-03-01T09:00:01Z"
    assert len(read) == len(set(read)) + 1  # only the entry changed twice was read twice


def test_every_object_reads_and_maps_to_canonical_fields(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector]
) -> None:
    seeded = stand_in.seed(users=2, time_entries=4, expenses=2, currency="JPY")
    stand_in.approve("time_entries", seeded.time_entries[0])
    stand_in.mark_billed("time_entries", seeded.time_entries[1])
    harvest = connect()

    objects = ("clients", "projects", "tasks", "users", "user_assignments", "time_entries")
    read = {object: harvest.read_changes(object, Cursor())[0] for object in objects}
    read["expenses"] = harvest.read_changes("expense", Cursor())[0]  # singular names work too

    counts = {object: len(records) for object, records in read.items()}
    assert counts == {
        "clients": 1,
        "projects": 1,
        "tasks": 1,
        "users": 2,
        "user_assignments": 2,
        "time_entries": 4,
        "expenses": 2,
    }
    entries = {
        int(r.id): mapping.to_canonical("time_entries", r.data) for r in read["time_entries"]
    }
    approved, billed, open_ = (entries[i] for i in seeded.time_entries[:3])
    assert (approved["approval"], approved["billing"], approved["locked"]) == (
        "approved",
        "unbilled",
        True,
    )
    assert (billed["approval"], billed["billing"]) == ("approved", "billed")
    assert billed["invoice_ref"] is not None
    assert (open_["approval"], open_["hours"], open_["billable"]) == ("draft", "0.75", True)
    assert open_["project_ref"] == str(seeded.projects[0])
    expenses = [mapping.to_canonical("expenses", r.data) for r in read["expenses"]]
    assert sorted(e["amount"]["minor"] for e in expenses) == [13, 14]  # 12.5 → 13 yen, half-up
    project = mapping.to_canonical("projects", read["projects"][0].data)
    assert project["account_ref"] == str(seeded.clients[0])


# -- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("object", ["clients", "projects", "time_entries"])
def test_the_same_create_sent_twice_makes_one_record(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector], object: str
) -> None:
    stand_in.seed()
    harvest = connect()
    body = write_body(stand_in, object)
    request = WriteRequest(object, "create", body, effect_key("harvest", object, "c-1"))
    before = len(stand_in.records(object))

    first = harvest.write(request)
    second = harvest.write(request)

    assert first.external_id == second.external_id
    assert (first.replayed, second.replayed) == (False, True)
    assert len(stand_in.records(object)) == before + 1
    assert stand_in.counters[f"POST /v2/{object}"] == 1


def test_the_key_is_stored_where_harvest_lets_a_lookup_find_it(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector]
) -> None:
    stand_in.seed()
    harvest = connect()
    entry = harvest.write(WriteRequest("time_entry", "create", time_entry_body(stand_in), "k-1"))
    project = harvest.write(
        WriteRequest("project", "create", write_body(stand_in, "projects"), "k-2")
    )

    assert entry.result["external_reference"]["id"] == "k-1"
    assert entry.result["external_reference"]["group_id"] == mapping.REFERENCE_GROUP
    assert mapping.has_marker(project.result["notes"], "k-2")


def test_a_lost_response_is_recovered_into_one_record(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector]
) -> None:
    stand_in.seed()
    harvest = connect()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        stand_in.faults = Faults()  # the network heals before the retry

    stand_in.faults = Faults(lost_response_rate=1.0)
    effect = create_effect("time_entries", time_entry_body(stand_in), "te-1")

    outcome = executor_for(harvest, sleep).execute(effect)

    assert outcome.replayed  # found by its external reference, not created again
    assert stand_in.counters["lost"] == 1
    assert stand_in.counters["POST /v2/time_entries"] == 1
    made = [e for e in stand_in.records("time_entries") if e["external_reference"]]
    assert [str(e["id"]) for e in made] == [outcome.external_id]
    assert len(waits) == 1


def test_every_effect_lands_exactly_once_through_errors_throttling_and_lost_responses(
    serve: Callable[..., HarvestStandIn], connect: Callable[..., HarvestConnector]
) -> None:
    stand_in = serve(rate_limit=100_000)
    stand_in.seed()
    harvest = connect(stand_in)
    executor = executor_for(harvest, lambda _seconds: None, attempts=40)
    stand_in.faults = Faults(
        error_rate=0.15, throttle_rate=0.1, retry_after=0.0, lost_response_rate=0.4
    )
    before = {object: len(stand_in.records(object)) for object in ("clients", "projects")}
    effects = [
        create_effect(object, write_body(stand_in, object, n), f"{object}-{n}")
        for n in range(1, 5)
        for object in ("clients", "projects", "time_entries")
    ]

    outcomes = [executor.execute(effect) for effect in effects]
    stand_in.faults = Faults()

    assert stand_in.counters["lost"] >= 1
    assert len({outcome.external_id for outcome in outcomes}) == len(effects)
    assert len(stand_in.records("clients")) == before["clients"] + 4
    assert len(stand_in.records("projects")) == before["projects"] + 4
    assert len(stand_in.records("time_entries")) == 4


# -- errors, quota and auth -------------------------------------------------------------------


def test_throttling_is_retryable_after_the_time_harvest_names(
    serve: Callable[..., HarvestStandIn], connect: Callable[..., HarvestConnector]
) -> None:
    stand_in = serve(rate_limit=2, rate_window=15.0)
    harvest = connect(stand_in)
    harvest.read_changes("clients", Cursor())
    harvest.read_changes("clients", Cursor())

    with pytest.raises(TransientError) as quota:
        harvest.read_changes("clients", Cursor())

    assert quota.value.retryable
    assert quota.value.retry_after is not None and 1 <= quota.value.retry_after <= 15
    assert stand_in.counters["throttled"] == 1


def test_the_executor_waits_as_long_as_retry_after_says(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector]
) -> None:
    harvest = connect()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        stand_in.faults = Faults()

    stand_in.faults = Faults(throttle_rate=1.0, retry_after=3.0)
    effect = create_effect("clients", write_body(stand_in, "clients"), "acct-1")

    outcome = executor_for(harvest, sleep).execute(effect)

    assert waits == [3.0]
    assert outcome.external_id == str(stand_in.records("clients")[0]["id"])


def test_refused_requests_are_not_retryable(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector]
) -> None:
    seeded = stand_in.seed(time_entries=1)
    harvest = connect()
    body = {**time_entry_body(stand_in), "project_id": 99}

    with pytest.raises(InvalidInput) as unknown_project:  # 422
        harvest.write(WriteRequest("time_entries", "create", body, "k-422"))
    with pytest.raises(InvalidInput) as malformed:  # 400
        harvest.request("GET", "/time_entries", params={"updated_since": "last tuesday"})
    stand_in.approve("time_entries", seeded.time_entries[0])
    locked = WriteRequest(
        "time_entries", "update", {"hours": 2.0}, "k", str(seeded.time_entries[0])
    )
    with pytest.raises(InvalidInput) as approved:  # 422: approved entries are locked
        harvest.write(locked)
    with pytest.raises(EffectFailed) as failed:
        executor_for(harvest, lambda _s: None).execute(
            create_effect("time_entries", body, "te-bad")
        )

    assert "422" in str(unknown_project.value) and "400" in str(malformed.value)
    assert "locked" in str(approved.value)
    assert not any(e.retryable for e in (unknown_project.value, malformed.value, approved.value))
    assert (failed.value.retryable, failed.value.attempts) == (False, 1)
    assert len(stand_in.records("time_entries")) == 1


class WindowGovernor:
    """The simplest quota governor: at most ``limit`` calls in any ``seconds``."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.calls: deque[float] = deque()
        self.lock = threading.Lock()
        self.acquired = 0

    def acquire(self, vendor: str, priority: int = 5) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                while self.calls and self.calls[0] <= now - self.seconds:
                    self.calls.popleft()
                if len(self.calls) < self.limit:
                    self.calls.append(now)
                    self.acquired += 1
                    return
                wait = self.calls[0] + self.seconds - now
            time.sleep(wait)

    def release(self, vendor: str, *, retry_after: float | None = None, ok: bool = True) -> None:
        if retry_after:
            time.sleep(retry_after)


def test_a_governor_keeps_the_connector_within_harvests_quota(
    serve: Callable[..., HarvestStandIn], connect: Callable[..., HarvestConnector]
) -> None:
    stand_in = serve(rate_limit=4, rate_window=0.5)
    stand_in.seed(clients=10)
    governor = WindowGovernor(limit=4, seconds=0.6)  # a little wider than Harvest's window
    governed = connect(stand_in, per_page=1, governor=governor)

    records, _ = governed.read_changes("clients", Cursor())

    assert len(records) == 10 and governor.acquired == 10
    assert "throttled" not in stand_in.counters
    with pytest.raises(TransientError):  # the same read, ungoverned, runs into the quota
        connect(stand_in, per_page=1).read_changes("clients", Cursor())
    assert stand_in.counters["throttled"] == 1


def test_wrong_credentials_are_refused_as_harvest_does(
    stand_in: HarvestStandIn,
    connect: Callable[..., HarvestConnector],
    wire: SpecCheckedTransport,
) -> None:
    with httpx.Client(base_url=stand_in.url, transport=wire) as client:
        answer = client.get(
            "/clients", headers={"Authorization": "Bearer nope", "Harvest-Account-Id": ACCOUNT}
        )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"

    harvest = connect(credentials={"access_token": TOKEN, "account_id": "1"})
    with pytest.raises(InvalidInput) as refused:
        harvest.read_changes("clients", Cursor())
    assert "401" in str(refused.value) and not refused.value.retryable
    with pytest.raises(InvalidInput):
        HarvestConnector(base_url=stand_in.url, credentials={"access_token": TOKEN})


def test_harvest_has_no_webhooks_so_the_connector_declares_none(
    document: dict[str, Any] | None, stand_in: HarvestStandIn
) -> None:
    harvest = HarvestConnector(
        base_url=stand_in.url, credentials={"access_token": TOKEN, "account_id": ACCOUNT}
    )
    try:
        assert Capability.WEBHOOKS not in harvest.capabilities
        with pytest.raises(NotSupported):
            harvest.verify_webhook({}, b"{}", datetime.now(UTC))
    finally:
        harvest.close()
    need(document)
    assert document is not None
    assert "webhooks" not in document
    assert not [path for path in document["paths"] if "webhook" in path]


def test_the_description_catches_a_response_that_breaks_it(spec: OpenAPI | None) -> None:
    """Guards the repair in ``_repair``: without it every body would pass."""
    need(spec)
    assert spec is not None
    request = MockRequest(
        SPEC_HOST,
        "GET",
        "/v2/clients",
        headers={"Authorization": "Bearer x", "Harvest-Account-Id": "1"},
    )
    with pytest.raises(OpenAPIError):
        spec.validate_response(request, MockResponse(b'{"clients": 5}', 200))


# -- mapping -----------------------------------------------------------------------------------


def test_mapping_keeps_hours_and_money_exact() -> None:
    assert mapping.hours_text(1.5) == "1.50"
    assert mapping.hours_text(0.1 + 0.2) == "0.30"
    assert mapping.hours_number("1.25") == 1.25
    with pytest.raises(InvalidInput):
        mapping.hours_number("1.255")
    assert mapping.money_minor(13.59, "EUR") == 1359
    assert mapping.money_minor(0.1 + 0.2, "USD") == 30
    assert mapping.money_minor(1500, "JPY") == 1500
    assert mapping.money_minor(1.2345, "BHD") == 1235
    with pytest.raises(InvalidInput):
        mapping.money_minor(1, "XXZ")


def test_mapping_makes_stamps_sortable_and_asks_from_one_second_before() -> None:
    assert mapping.stamp("2024-03-01T10:00:00+01:00") == "2024-03-01T09:00:00Z"
    assert mapping.stamp("2024-03-01T09:00:00.900Z") == "2024-03-01T09:00:00Z"
    assert mapping.updated_since("2024-03-01T00:00:00Z") == "2024-02-29T23:59:59Z"
    assert mapping.with_marker(mapping.with_marker("Kick-off", "k"), "k") == "Kick-off\n[accord:k]"
    assert not mapping.has_marker("Kick-off", "k")
    body = mapping.time_entry_from_canonical(
        {"work_date": date(2024, 2, 1).isoformat(), "hours": "2.50"}, project_id=1, task_id=2
    )
    assert body == {"project_id": 1, "task_id": 2, "spent_date": "2024-02-01", "hours": 2.5}


def test_staffing_a_project_makes_one_assignment_through_a_lost_response(
    stand_in: HarvestStandIn, connect: Callable[..., HarvestConnector]
) -> None:
    stand_in.seed()
    harvest = connect()
    project = harvest.write(
        WriteRequest("project", "create", write_body(stand_in, "projects", 7), "p-7")
    )
    user = stand_in.records("users")[0]["id"]
    body = {
        "project_id": int(project.external_id),
        **mapping.user_assignment_from_canonical(user, None),
    }

    def sleep(seconds: float) -> None:
        stand_in.faults = Faults()  # the network heals before the retry

    stand_in.faults = Faults(lost_response_rate=1.0)
    outcome = executor_for(harvest, sleep).execute(create_effect("user_assignments", body, "a-1"))
    again = harvest.write(WriteRequest("user_assignments", "create", body, "a-1"))

    path = "POST /v2/projects/{id}/user_assignments"
    assert outcome.replayed and again.replayed  # found by person and project, not made twice
    assert again.external_id == outcome.external_id
    assert stand_in.counters[path] == 1
    mine = [
        a
        for a in stand_in.records("user_assignments")
        if a["project"]["id"] == int(project.external_id) and a["user"]["id"] == user
    ]
    assert len(mine) == 1 and mine[0]["use_default_rates"] is True
    with pytest.raises(InvalidInput, match="project id"):
        harvest.write(WriteRequest("user_assignments", "create", {"user_id": user}, "a-2"))


def test_a_contract_rate_goes_to_harvest_as_an_exact_number() -> None:
    assert mapping.user_assignment_from_canonical(5, Decimal("172.50")) == {
        "user_id": 5,
        "use_default_rates": False,
        "hourly_rate": 172.5,
    }
    with pytest.raises(InvalidInput, match="two decimals"):
        mapping.user_assignment_from_canonical(5, Decimal("172.505"))
