"""One adapter per connector, so that the contract suite runs every connector the same way.

An adapter says, for its vendor, how to build the connector (over a
:class:`Wire` that observes every request), how to seed records that share one
modification stamp, how to build a write, how to count what a write made at
the vendor, and how to inject faults. Adding a connector to the suite is one
more :class:`Adapter` subclass and one entry in :data:`ADAPTERS`.

The stand-ins run over real HTTP on loopback; Tryton is the real server the
Tryton tests use (its ``tryton`` fixture is reused here), skipped visibly where
it cannot be had and failing under ``ACCORD_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest

from accord.connectors.base import Connector, Cursor, WriteRequest
from accord.connectors.harvest import HarvestConnector
from accord.connectors.harvest import mapping as harvest_mapping
from accord.connectors.netsuite import NetSuiteConnector
from accord.connectors.netsuite import mapping as netsuite_mapping
from accord.connectors.salesforce import EXTERNAL_ID, SalesforceConnector
from accord.connectors.stripe import StripeConnector
from accord.connectors.tryton import TrytonConnector
from accord.runtime.effects import effect_key
from accord.sandbox.harvest import HarvestStandIn
from accord.sandbox.netsuite import NetSuiteStandIn
from accord.sandbox.recorder import Faults
from accord.sandbox.salesforce import SalesforceStandIn
from accord.sandbox.stripe import StripeStandIn, sign_payload
from tests.connectors.tryton.test_tryton import TrytonServer, tryton  # noqa: F401 - the fixture

T0 = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)


class Clock:
    """A settable clock, read by the stand-ins for every stamp."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def unix(self) -> float:
        return self.now.timestamp()

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


class Wire(httpx.BaseTransport):
    """Real HTTP (or an inner transport) that observes what the connector sends.

    It records the time of every request on ``clock`` (the governor's clock in
    the quota test), the most requests ever in flight at once, and transport
    errors (lost responses). ``delay`` holds each request that long in flight,
    a slow vendor for the concurrency test. ``fault`` answers every request
    itself without sending it: ``"throttle"`` (429 with ``Retry-After``),
    ``"error"`` (503). ``lose_writes`` forwards a write, then drops its answer
    (for a vendor without a stand-in, whose server cannot be told to).
    """

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.clock: Callable[[], float] = time.monotonic
        self.sent: list[tuple[float, str, str]] = []
        self.errors = 0
        self.delay = 0.0
        self.fault: str | None = None
        self.retry_after = 2.0
        self.lose_writes: Callable[[httpx.Request], bool] | None = None
        self.peak = 0
        self._inflight = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.sent.append((self.clock(), request.method, request.url.path))
            self._inflight += 1
            self.peak = max(self.peak, self._inflight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fault == "throttle":
                headers = {"Retry-After": f"{self.retry_after:g}"}
                return httpx.Response(429, json={"error": "throttled"}, headers=headers)
            if self.fault == "error":
                return httpx.Response(503, json={"error": "unavailable"})
            response = self.inner.handle_request(request)
            try:
                response.read()
            except httpx.TransportError:
                response.close()
                raise
            if self.lose_writes is not None and self.lose_writes(request):
                raise httpx.ReadTimeout("response lost after the write", request=request)
            return response
        except httpx.TransportError:
            with self._lock:
                self.errors += 1
            raise
        finally:
            with self._lock:
                self._inflight -= 1

    def close(self) -> None:
        self.inner.close()


class Adapter(ABC):
    """How the contract suite drives one connector."""

    name: ClassVar[str]
    read_object: ClassVar[str]
    """What the incremental-read test reads."""

    def __init__(self) -> None:
        self.wire = Wire()
        self.made: list[Connector] = []

    @abstractmethod
    def make(self, **options: Any) -> Connector:
        """A connector over :attr:`wire` with small pages (``options`` go to it)."""

    def start_cursor(self, connector: Connector) -> Cursor:
        """Where reading starts: the beginning, or after what the vendor already holds."""
        return Cursor()

    @abstractmethod
    def seed_shared_stamp(self, count: int) -> set[str]:
        """Make ``count`` records the read will return, all at one modification stamp;
        the ids they will be read under."""

    @abstractmethod
    def write_request(self, label: str) -> WriteRequest:
        """A create (or upsert) of one new record, with its idempotency key."""

    @abstractmethod
    def count_written(self, connector: Connector, request: WriteRequest) -> int:
        """How many records at the vendor that write made."""

    @abstractmethod
    def invalid_write(self) -> WriteRequest:
        """A write the vendor refuses for its own fault (a 4xx, a user error)."""

    @abstractmethod
    def lose_responses(self, on: bool) -> None:
        """Apply every write, then drop its response (``on``), or stop doing so."""

    def fail_with(self, fault: str | None, retry_after: float = 2.0) -> None:
        """``"throttle"`` (429 with ``Retry-After``), ``"error"`` (5xx) or ``None``."""
        self.wire.fault = fault
        self.wire.retry_after = retry_after

    def signed_delivery(self, now: datetime) -> tuple[dict[str, str], bytes, str]:
        """A webhook delivery signed as the vendor signs it, and its event id."""
        raise NotImplementedError(f"{self.name} has no webhooks")

    def probe(self, connector: Connector) -> None:
        """One cheap call (used to count calls through the governor)."""
        connector.read_changes(self.read_object, self.start_cursor(connector))

    def keep(self, connector: Connector) -> Connector:
        self.made.append(connector)
        return connector

    def close(self) -> None:
        for connector in self.made:
            connector.close()
        self.wire.close()


class _StandInFaults:
    """Lost responses through the stand-in's own ``Faults``: the stand-in applies the
    write and closes the connection before answering."""

    stand_in: Any

    def lose_responses(self, on: bool) -> None:
        self.stand_in.faults = Faults(lost_response_rate=1.0) if on else Faults()

    def fail_with(self, fault: str | None, retry_after: float = 2.0) -> None:
        """The stand-in itself answers 429 with ``Retry-After``, or 5xx."""
        if fault == "throttle":
            self.stand_in.faults = Faults(throttle_rate=1.0, retry_after=retry_after)
        elif fault == "error":
            self.stand_in.faults = Faults(error_rate=1.0)
        else:
            self.stand_in.faults = Faults()


class StripeAdapter(_StandInFaults, Adapter):
    name = "stripe"
    read_object = "customer"
    API_KEY = "sk_test_contract"
    SECRET = "whsec_contract"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.stand_in = StripeStandIn(
            api_key=self.API_KEY, clock=clock.unix, rate_limit=None, seed=5
        )
        self.stand_in.start()

    def make(self, **options: Any) -> Connector:
        options.setdefault("page_size", 2)
        credentials = {"api_key": self.API_KEY, "webhook_secret": self.SECRET}
        connector = StripeConnector(
            base_url=self.stand_in.url, credentials=credentials, transport=self.wire, **options
        )
        return self.keep(connector)

    def seed_shared_stamp(self, count: int) -> set[str]:
        before = {event["id"] for event in self.stand_in.events()}
        writer = self.make()
        for _ in range(count):
            writer.write(self.write_request(f"seed-{uuid.uuid4().hex[:8]}"))
        return {event["id"] for event in self.stand_in.events()} - before

    def write_request(self, label: str) -> WriteRequest:
        key = effect_key("stripe", "create_customer", label)
        return WriteRequest(
            "customer", "create", {"id": label, "legal_name": f"Client {label}"}, key
        )

    def count_written(self, connector: Connector, request: WriteRequest) -> int:
        customers = self.stand_in.objects("customer")
        return sum(1 for c in customers if c["metadata"].get("accord_id") == request.data["id"])

    def invalid_write(self) -> WriteRequest:
        line = {"customer": "cus_missing", "amount": 1000, "currency": "EUR"}
        return WriteRequest("invoiceitem", "create", line, "contract-invalid")

    def signed_delivery(self, now: datetime) -> tuple[dict[str, str], bytes, str]:
        event = {
            "id": "evt_contract_1",
            "object": "event",
            "type": "customer.created",
            "created": int(now.timestamp()),
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        }
        body = json.dumps(event).encode()
        return (
            {"Stripe-Signature": sign_payload(body, self.SECRET, int(now.timestamp()))},
            body,
            "evt_contract_1",
        )

    def close(self) -> None:
        super().close()
        self.stand_in.stop()


class HarvestAdapter(_StandInFaults, Adapter):
    name = "harvest"
    read_object = "time_entries"
    TOKEN, ACCOUNT = "contract-token", "1234567"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.stand_in = HarvestStandIn(
            token=self.TOKEN, account_id=self.ACCOUNT, clock=clock, seed=11
        )
        self.stand_in.start()
        self.stand_in.seed(users=1, tasks=1)

    def make(self, **options: Any) -> Connector:
        options.setdefault("per_page", 3)
        credentials = {"access_token": self.TOKEN, "account_id": self.ACCOUNT}
        connector = HarvestConnector(
            base_url=self.stand_in.url, credentials=credentials, transport=self.wire, **options
        )
        return self.keep(connector)

    def seed_shared_stamp(self, count: int) -> set[str]:
        project = self.stand_in.records("projects")[0]
        task = self.stand_in.records("tasks")[0]
        user = self.stand_in.records("users")[0]
        body = harvest_mapping.time_entry_from_canonical(
            {"work_date": "2024-02-28", "hours": "1.5", "notes": "seeded"},
            project_id=project["id"],
            task_id=task["id"],
            user_id=user["id"],
        )
        return {str(self.stand_in.create("time_entries", body)["id"]) for _ in range(count)}

    def write_request(self, label: str) -> WriteRequest:
        body = harvest_mapping.client_from_account(
            {"legal_name": f"Client {label}", "default_currency": "EUR"}
        )
        return WriteRequest(
            "clients", "create", body, effect_key("harvest", "create_client", label)
        )

    def count_written(self, connector: Connector, request: WriteRequest) -> int:
        return sum(1 for c in self.stand_in.records("clients") if c["name"] == request.data["name"])

    def invalid_write(self) -> WriteRequest:
        body = {"project_id": 999_999, "task_id": 999_999, "spent_date": "2024-02-28", "hours": 1}
        return WriteRequest("time_entries", "create", body, "contract-invalid")

    def close(self) -> None:
        super().close()
        self.stand_in.stop()


class SalesforceAdapter(_StandInFaults, Adapter):
    name = "salesforce"
    read_object = "Account"
    TOKEN = "00D-contract-token"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.stand_in = SalesforceStandIn(token=self.TOKEN, query_batch_size=3, clock=clock, seed=7)
        self.stand_in.start()

    def make(self, **options: Any) -> Connector:
        connector = SalesforceConnector(
            base_url=self.stand_in.url,
            credentials={"access_token": self.TOKEN},
            transport=self.wire,
            **options,
        )
        return self.keep(connector)

    def seed_shared_stamp(self, count: int) -> set[str]:
        return set(self.stand_in.seed_accounts(count, prefix=f"seed-{uuid.uuid4().hex[:8]}"))

    def write_request(self, label: str) -> WriteRequest:
        key = effect_key("salesforce", "upsert_account", label)
        return WriteRequest("Account", "upsert", {"Name": f"Account {label}"}, key, label)

    def count_written(self, connector: Connector, request: WriteRequest) -> int:
        rows = self.stand_in.records("Account")
        return sum(1 for row in rows if row[EXTERNAL_ID] == request.external_id)

    def invalid_write(self) -> WriteRequest:
        return WriteRequest("Contact", "upsert", {"FirstName": "No last name"}, "contract-invalid")

    def close(self) -> None:
        super().close()
        self.stand_in.stop()


class NetSuiteAdapter(_StandInFaults, Adapter):
    name = "netsuite"
    read_object = "customer"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.stand_in = NetSuiteStandIn(clock=clock, seed=3)
        self.stand_in.start()

    def make(self, **options: Any) -> Connector:
        options.setdefault("page_size", 3)
        connector = NetSuiteConnector(
            base_url=self.stand_in.url,
            credentials=self.stand_in.credentials,
            transport=self.wire,
            clock=self.clock.unix,
            **options,
        )
        return self.keep(connector)

    def seed_shared_stamp(self, count: int) -> set[str]:
        return set(self.stand_in.seed_customers(count, prefix=f"seed-{uuid.uuid4().hex[:8]}"))

    def write_request(self, label: str) -> WriteRequest:
        body = netsuite_mapping.customer_from_account(
            {"id": label, "legal_name": f"Customer {label}", "default_currency": "EUR"},
            subsidiary_id="1",
        )
        return WriteRequest("customer", "upsert", body, effect_key("netsuite", label), label)

    def count_written(self, connector: Connector, request: WriteRequest) -> int:
        rows = self.stand_in.records("customer")
        return sum(1 for row in rows if row.get("externalId") == request.external_id)

    def invalid_write(self) -> WriteRequest:
        body = {"entity": {"id": "999999"}, "item": {"items": [{"item": {"id": "1"}, "amount": 1}]}}
        return WriteRequest("invoice", "upsert", body, "contract-invalid")

    def close(self) -> None:
        super().close()
        self.stand_in.stop()


class TrytonAdapter(Adapter):
    """The real Tryton server; faults come from the wire, as a proxy in front of it would."""

    name = "tryton"
    read_object = "account"

    def __init__(self, server: TrytonServer) -> None:
        super().__init__()
        self.server = server

    def make(self, **options: Any) -> Connector:
        options.setdefault("page_size", 2)
        credentials = {"login": self.server.login, "password": self.server.password}
        return self.keep(
            TrytonConnector(self.server.url, credentials, transport=self.wire, **options)
        )

    def start_cursor(self, connector: Connector) -> Cursor:
        self._head = (
            getattr(self, "_head", None) or connector.read_changes(self.read_object, Cursor())[1]
        )
        return self._head

    def seed_shared_stamp(self, count: int) -> set[str]:
        batch = f"contract-{uuid.uuid4().hex[:10]}"
        connector = self.make()
        assert isinstance(connector, TrytonConnector)
        # parties created in one call share one create_date
        ids = connector.call(
            "party.party", "create", [{"name": f"{batch} {i}"} for i in range(count)]
        )
        return {str(i) for i in ids}

    def write_request(self, label: str) -> WriteRequest:
        name = f"Contract {label} {uuid.uuid4().hex[:8]}"
        return WriteRequest("account", "create", {"legal_name": name}, effect_key("tryton", name))

    def count_written(self, connector: Connector, request: WriteRequest) -> int:
        assert isinstance(connector, TrytonConnector)
        domain = [("name", "=", request.data["legal_name"])]
        found = connector.call(
            "party.party", "search_count", domain, context={"active_test": False}
        )
        assert isinstance(found, int)
        return found

    def invalid_write(self) -> WriteRequest:
        return WriteRequest(
            "account", "update", {"legal_name": "Nobody"}, "contract-invalid", "987654321"
        )

    def lose_responses(self, on: bool) -> None:
        def creating(request: httpx.Request) -> bool:
            return b'.create"' in request.content

        self.wire.lose_writes = creating if on else None


ADAPTERS: Mapping[str, Callable[[pytest.FixtureRequest, Clock], Adapter]] = {
    "stripe": lambda request, clock: StripeAdapter(clock),
    "harvest": lambda request, clock: HarvestAdapter(clock),
    "salesforce": lambda request, clock: SalesforceAdapter(clock),
    "netsuite": lambda request, clock: NetSuiteAdapter(clock),
    "tryton": lambda request, clock: TrytonAdapter(request.getfixturevalue("tryton")),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Adapter]:
    made = ADAPTERS[request.param](request, clock)
    try:
        yield made
    finally:
        made.close()
