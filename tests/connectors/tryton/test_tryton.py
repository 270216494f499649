"""The Tryton connector against a real ``trytond`` 8.2 over JSON-RPC.

The server is the one ``scripts/tryton_server.py`` installs and starts (its own
virtual environment, a SQLite database with project_invoice, timesheet,
sale_opportunity and account_invoice, a company, chart and fiscal years), or
the one ``ACCORD_TRYTON_URL`` names (with ``ACCORD_TRYTON_LOGIN`` and
``ACCORD_TRYTON_PASSWORD``). Where neither can be had the tests are skipped
with the reason, and fail under ``ACCORD_REQUIRE_SERVICES=1``.

Every test makes its own records with fresh references, so they run against a
database that earlier runs have filled.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from accord.connectors.base import ConnectorVendor, Cursor, WriteRequest
from accord.connectors.tryton import TrytonConnector, TrytonRpcError, mapping
from accord.connectors.tryton.mapping import to_canonical
from accord.errors import InvalidInput, TransientError
from accord.runtime.effects import (
    Effect,
    EffectExecutor,
    EffectFailed,
    MemoryLedger,
    effect_key,
    request_digest,
)
from accord.runtime.retry import RetryPolicy
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "tryton_server.py"
PORT = int(os.environ.get("ACCORD_TRYTON_PORT", "8711"))


@dataclass(frozen=True)
class TrytonServer:
    url: str
    login: str
    password: str


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture(scope="session")
def tryton() -> Iterator[TrytonServer]:
    """A running Tryton: the configured one, the script's, or one started now."""
    url = os.environ.get("ACCORD_TRYTON_URL")
    started = False
    if url:
        server = TrytonServer(
            url,
            os.environ.get("ACCORD_TRYTON_LOGIN", "admin"),
            os.environ.get("ACCORD_TRYTON_PASSWORD", ""),
        )
    else:
        if _script("status", 30).returncode != 0:
            try:
                result = _script("start", 1200)
            except subprocess.TimeoutExpired:
                unavailable("Tryton", "scripts/tryton_server.py start took over 20 minutes")
                raise
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                unavailable("Tryton", "could not install or start trytond: " + " | ".join(tail))
            started = True
        password_file = ROOT / ".tryton" / "admin.pass"
        if not password_file.exists():
            unavailable("Tryton", f"{password_file} is missing (another server on port {PORT}?)")
        server = TrytonServer(
            f"http://127.0.0.1:{PORT}/accord/", "admin", password_file.read_text().strip()
        )
    probe = TrytonConnector(server.url, {"login": server.login, "password": server.password})
    try:
        probe.login()
    except (InvalidInput, TransientError) as exc:
        unavailable("Tryton", f"cannot log in at {server.url}: {exc}")
    finally:
        probe.close()
    yield server
    if started:
        _script("stop", 60)


@pytest.fixture
def connector(tryton: TrytonServer) -> Iterator[TrytonConnector]:
    conn = TrytonConnector(tryton.url, {"login": tryton.login, "password": tryton.password})
    yield conn
    conn.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(connector: TrytonConnector, object: str, data: dict[str, object]) -> str:
    outcome = connector.write(WriteRequest(object, "create", data, idempotency_key=unique("key")))
    assert outcome.external_id is not None
    return outcome.external_id


def count(connector: TrytonConnector, model: str, domain: list[object]) -> int:
    result = connector.call(model, "search_count", domain, context={"active_test": False})
    assert isinstance(result, int)
    return result


def head(connector: TrytonConnector, object: str) -> Cursor:
    """The cursor after everything already in the database."""
    _, cursor = connector.read_changes(object, Cursor())
    return cursor


def executor(connector: TrytonConnector, ledger: MemoryLedger) -> EffectExecutor:
    policy = RetryPolicy(initial_interval=0, maximum_attempts=5)
    return EffectExecutor(
        ledger, {"tryton": ConnectorVendor(connector)}, policy, sleep=lambda _s: None
    )


class LosingTransport(httpx.BaseTransport):
    """Real HTTP to the server, but the answer to the first matching call is lost.

    The server has done the work; the client sees a read timeout, exactly what
    a dropped connection after a commit looks like.
    """

    def __init__(self, method: str) -> None:
        self._inner = httpx.HTTPTransport()
        self._method = method.encode()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if self.lost == 0 and self._method in request.content:
            response.read()
            response.close()
            self.lost += 1
            raise httpx.ReadTimeout("response lost", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


# -- reads ------------------------------------------------------------------------------


def test_incremental_read_across_pages_neither_misses_nor_repeats_shared_stamps(
    tryton: TrytonServer,
) -> None:
    connector = TrytonConnector(
        tryton.url, {"login": tryton.login, "password": tryton.password}, page_size=2
    )
    try:
        cursor = head(connector, "account")
        batch = unique("batch")
        # five parties in one call share one create_date: the stamp ties across pages
        ids = connector.call(
            "party.party",
            "create",
            [{"name": f"{batch} {i}", "code": f"{batch}-{i}"} for i in range(5)],
        )
        records, cursor = connector.read_changes("account", cursor)
        assert sorted(int(r.id) for r in records) == sorted(ids)
        assert len({r.modified for r in records}) == 1
        assert cursor.value == records[0].modified
        assert sorted(cursor.seen) == sorted(str(i) for i in ids)

        again, same = connector.read_changes("account", cursor)
        assert again == []
        assert same == cursor

        later = connector.call("party.party", "create", [{"name": f"{batch} later"}])
        connector.call("party.party", "write", [ids[2]], {"name": f"{batch} renamed"})
        records, cursor = connector.read_changes("account", cursor)
        assert sorted(int(r.id) for r in records) == sorted([ids[2], *later])
        renamed = next(r for r in records if int(r.id) == ids[2])
        assert to_canonical("account", renamed.data)["legal_name"] == f"{batch} renamed"

        assert connector.read_changes("account", cursor)[0] == []
    finally:
        connector.close()


def test_party_project_and_timesheet_lines_are_created_and_read_back(
    connector: TrytonConnector,
) -> None:
    cursors = {name: head(connector, name) for name in ("account", "project", "time_entry")}
    name = unique("Client")
    account = create(connector, "account", {"legal_name": name, "reference": f"{name}-code"})
    project = create(
        connector,
        "project",
        {"name": f"{name} rollout", "account_external_id": account, "comment": "phase one"},
    )
    entries = [
        create(
            connector,
            "time_entry",
            {
                "project_external_id": project,
                "work_date": f"2026-03-0{day}",
                "hours": hours,
                "activity": f"workshop {day}",
            },
        )
        for day, hours in ((2, "1.5"), (3, "7.25"))
    ]

    accounts, _ = connector.read_changes("account", cursors["account"])
    assert [to_canonical("account", r.data) for r in accounts if r.id == account] == [
        {"legal_name": name, "reference": f"{name}-code", "active": True}
    ]

    projects, _ = connector.read_changes("project", cursors["project"])
    (read_project,) = [to_canonical("project", r.data) for r in projects if r.id == project]
    assert read_project["name"] == f"{name} rollout"
    assert read_project["account_external_id"] == account
    assert read_project["comment"] == "phase one"
    assert read_project["invoice_method"] == "timesheet"
    assert read_project["reference"] is not None

    lines, _ = connector.read_changes("time_entry", cursors["time_entry"])
    read_lines = sorted(
        (to_canonical("time_entry", r.data) for r in lines if r.id in entries),
        key=lambda line: str(line["work_date"]),
    )
    assert [(x["work_date"], x["hours"], x["activity"]) for x in read_lines] == [
        ("2026-03-02", "1.5", "workshop 2"),
        ("2026-03-03", "7.25", "workshop 3"),
    ]
    assert {x["project_external_id"] for x in read_lines} == {project}
    assert all(x["person_external_id"] is not None for x in read_lines)


def test_an_update_changes_fields_and_keeps_the_stored_reference(
    connector: TrytonConnector,
) -> None:
    account = create(connector, "account", {"legal_name": unique("Before")})
    project = create(
        connector, "project", {"name": unique("Project"), "account_external_id": account}
    )
    before = connector.get("project", project)
    assert before is not None
    reference = to_canonical("project", before)["reference"]

    outcome = connector.write(
        WriteRequest(
            "project",
            "update",
            {"comment": "new scope", "name": "Renamed"},
            idempotency_key=unique("key"),
            external_id=project,
        )
    )
    assert outcome.external_id == project
    after = connector.get("project", project)
    assert after is not None
    canonical = to_canonical("project", after)
    assert (canonical["name"], canonical["comment"]) == ("Renamed", "new scope")
    assert canonical["reference"] == reference


# -- writes: exactly once -------------------------------------------------------------------


def test_the_same_create_sent_twice_makes_one_party(connector: TrytonConnector) -> None:
    name = unique("Twice")
    request = WriteRequest(
        "account", "create", {"legal_name": name}, idempotency_key=effect_key("tryton", name)
    )
    first = connector.write(request)
    second = connector.write(request)
    assert first.external_id == second.external_id
    assert (first.replayed, second.replayed) == (False, True)
    assert count(connector, "party.party", [("name", "=", name)]) == 1


def test_the_same_time_entry_sent_twice_makes_one_line(connector: TrytonConnector) -> None:
    account = create(connector, "account", {"legal_name": unique("Lines")})
    project = create(
        connector, "project", {"name": unique("Project"), "account_external_id": account}
    )
    request = WriteRequest(
        "time_entry",
        "create",
        {"project_external_id": project, "work_date": "2026-04-01", "hours": "2"},
        idempotency_key=unique("acc_line"),  # the underscore is a LIKE wildcard: still exact
    )
    assert connector.write(request).external_id == connector.write(request).external_id
    works = connector.call("project.work", "read", [int(project)], ["timesheet_works"])
    assert count(connector, "timesheet.line", [("work", "in", works[0]["timesheet_works"])]) == 1


def test_an_upsert_creates_once_then_updates_by_reference(connector: TrytonConnector) -> None:
    reference = unique("CUST")
    first = connector.write(
        WriteRequest(
            "account",
            "upsert",
            {"legal_name": "Upsert Ltd"},
            idempotency_key=unique("key"),
            external_id=reference,
        )
    )
    second = connector.write(
        WriteRequest(
            "account",
            "upsert",
            {"legal_name": "Upsert Limited"},
            idempotency_key=unique("key"),
            external_id=reference,
        )
    )
    assert first.external_id == second.external_id
    party = connector.get("account", str(first.external_id))
    assert party is not None
    assert (party["name"], party["code"]) == ("Upsert Limited", reference)
    assert count(connector, "party.party", [("code", "=", reference)]) == 1


def test_a_lost_response_is_recovered_by_look_up_without_a_duplicate(
    tryton: TrytonServer,
) -> None:
    transport = LosingTransport('"model.party.party.create"')
    lossy = TrytonConnector(
        tryton.url, {"login": tryton.login, "password": tryton.password}, transport=transport
    )
    try:
        name = unique("Lost")
        effect = Effect(
            "tryton",
            "create_account",
            effect_key("tryton", "create_account", name),
            {"object": "account", "operation": "create", "data": {"legal_name": name}},
        )
        ledger = MemoryLedger()
        outcome = executor(lossy, ledger).execute(effect)
        assert transport.lost == 1
        assert outcome.replayed  # found by its code after the lost answer
        assert count(lossy, "party.party", [("name", "=", name)]) == 1
        entry = ledger.get(effect.key)
        assert entry is not None and entry.status == "done"
        assert entry.external_id == outcome.external_id
        assert entry.attempts == 2
    finally:
        lossy.close()


def test_an_attempted_intent_is_resolved_by_look_up_not_sent_again(
    connector: TrytonConnector,
) -> None:
    name = unique("InDoubt")
    effect = Effect(
        "tryton",
        "create_account",
        effect_key("tryton", "create_account", name),
        {"object": "account", "operation": "create", "data": {"legal_name": name}},
    )
    # a worker created the party and crashed before it recorded the outcome
    created = ConnectorVendor(connector).perform(effect)
    ledger = MemoryLedger()
    ledger.intend(effect, request_digest(effect.request))
    ledger.attempt(effect.key)

    outcome = executor(connector, ledger).execute(effect)
    assert outcome.replayed
    assert outcome.external_id == created.external_id
    assert count(connector, "party.party", [("name", "=", name)]) == 1
    entry = ledger.get(effect.key)
    assert entry is not None and (entry.status, entry.external_id) == ("done", outcome.external_id)


# -- invoices and payments ------------------------------------------------------------------


def test_an_issued_invoice_and_its_partial_payment_are_written_once_and_read_back(
    connector: TrytonConnector,
) -> None:
    cursors = {name: head(connector, name) for name in ("invoice", "payment")}
    account = create(connector, "account", {"legal_name": unique("Billed"), "city": "Liège"})
    # Tryton numbers invoices in date order within a sequence: bill today, as a clerk would
    today = dt.date.today().isoformat()
    number = unique("INV")
    invoice_request = WriteRequest(
        "invoice",
        "create",
        {
            "account_external_id": account,
            "currency": "USD",
            "issue_date": today,
            "reference": number,
            "status": "issued",
            "lines": [
                {"description": "Consulting May", "quantity": "12", "unit_price": "150.00"},
                {"description": "Workshop", "quantity": "1", "unit_price": "420.50"},
            ],
        },
        idempotency_key=unique("key"),
    )
    issued = connector.write(invoice_request)
    assert issued.result["state"] == "posted"
    assert connector.write(invoice_request).external_id == issued.external_id
    assert count(connector, "account.invoice", [("reference", "=", number)]) == 1

    payment_request = WriteRequest(
        "payment",
        "create",
        {
            "invoice_external_id": issued.external_id,
            "amount": "1000.00",
            "received_on": today,
        },
        idempotency_key=unique("pay"),
    )
    paid = connector.write(payment_request)
    assert connector.write(payment_request).external_id == paid.external_id

    invoices, _ = connector.read_changes("invoice", cursors["invoice"])
    (invoice,) = [to_canonical("invoice", r.data) for r in invoices if r.id == issued.external_id]
    assert invoice["status"] == "partially_paid"
    assert (invoice["total"], invoice["amount_due"]) == ("2220.50", "1220.50")
    assert invoice["currency"] == "USD"
    assert invoice["issue_date"] == today
    assert invoice["number"]
    assert [(line["description"], line["amount"]) for line in invoice["lines"]] == [
        ("Consulting May", "1800.00"),
        ("Workshop", "420.50"),
    ]

    payments, _ = connector.read_changes("payment", cursors["payment"])
    mine = [to_canonical("payment", r.data) for r in payments if r.id == paid.external_id]
    assert mine == [
        {
            "invoice_external_id": issued.external_id,
            "account_external_id": account,
            "amount": "1000.00",
            "currency": "USD",
            "received_on": today,
            "reference": payment_request.idempotency_key,
        }
    ]


def test_an_opportunity_is_created_once_and_read_back(connector: TrytonConnector) -> None:
    cursor = head(connector, "opportunity")
    account = create(connector, "account", {"legal_name": unique("Prospect")})
    deal = unique("DEAL")
    request = WriteRequest(
        "opportunity",
        "create",
        {
            "name": "Data platform",
            "account_external_id": account,
            "currency": "USD",
            "estimated_amount": "48000.00",
            "close_date": "2026-12-15",
            "reference": deal,
        },
        idempotency_key=unique("key"),
    )
    created = connector.write(request)
    assert connector.write(request).external_id == created.external_id
    assert count(connector, "sale.opportunity", [("reference", "=", deal)]) == 1

    records, _ = connector.read_changes("opportunity", cursor)
    (read,) = [to_canonical("opportunity", r.data) for r in records if r.id == created.external_id]
    assert {k: read[k] for k in ("name", "account_external_id", "estimated_amount")} == {
        "name": "Data platform",
        "account_external_id": account,
        "estimated_amount": "48000.00",
    }
    assert (read["close_date"], read["status"], read["stage"]) == ("2026-12-15", "open", "lead")


# -- errors -------------------------------------------------------------------------------


def test_tryton_user_errors_are_invalid_input_and_never_retried(
    connector: TrytonConnector,
) -> None:
    code = unique("DUP")
    connector.call("party.party", "create", [{"name": "First", "code": code}])
    with pytest.raises(TrytonRpcError) as duplicate:
        connector.call("party.party", "create", [{"name": "Second", "code": code}])
    assert duplicate.value.kind == "UserError"
    assert not duplicate.value.retryable
    assert "unique" in str(duplicate.value)

    with pytest.raises(InvalidInput, match="not allowed to modify"):
        connector.call("project.work", "create", [{"name": "x", "number": "forced"}])
    with pytest.raises(InvalidInput):
        connector.call("party.party", "write", [1], {"no_such_field": 1})
    with pytest.raises(InvalidInput, match="needs a Tryton id"):
        connector.write(
            WriteRequest("project", "create", {"name": "Orphan"}, idempotency_key=unique("key"))
        )

    ledger = MemoryLedger()
    bad = Effect(
        "tryton",
        "create_entry",
        unique("key"),
        {
            "object": "time_entry",
            "operation": "create",
            "data": {"project_external_id": "999999999", "work_date": "2026-01-05", "hours": "1"},
        },
    )
    with pytest.raises(EffectFailed) as failed:
        executor(connector, ledger).execute(bad)
    assert (failed.value.retryable, failed.value.attempts) == (False, 1)


def test_wrong_credentials_are_refused_as_invalid_input(tryton: TrytonServer) -> None:
    wrong = TrytonConnector(tryton.url, {"login": tryton.login, "password": "not-the-password"})
    try:
        with pytest.raises(InvalidInput, match="refused the login") as refused:
            wrong.login()
        assert not refused.value.retryable
    finally:
        wrong.close()


def test_an_unreachable_server_is_a_transient_error() -> None:
    closed = TrytonConnector("http://127.0.0.1:9/accord/", {"password": "x"}, timeout=2)
    try:
        with pytest.raises(TransientError) as refused:
            closed.login()
        assert refused.value.retryable
    finally:
        closed.close()


def test_server_overload_is_transient_with_the_servers_retry_after(tryton: TrytonServer) -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "7"}, text="maintenance")

    overloaded = TrytonConnector(
        tryton.url, {"password": tryton.password}, transport=httpx.MockTransport(busy)
    )
    try:
        with pytest.raises(TransientError) as error:
            overloaded.login()
        assert error.value.retry_after == 7.0
    finally:
        overloaded.close()


def test_an_expired_session_is_renewed_once_transparently(connector: TrytonConnector) -> None:
    connector.login()
    connector._session = (1, "expired-session-token")
    assert count(connector, "party.party", []) >= 1
    assert connector._session[1] != "expired-session-token"


# -- the pure mapping (no server) ------------------------------------------------------
def test_rpc_values_survive_a_round_trip_through_json() -> None:
    value = {
        "when": dt.datetime(2026, 3, 1, 9, 30, 0, 12),
        "day": dt.date(2026, 3, 1),
        "took": dt.timedelta(hours=1, minutes=30),
        "price": Decimal("150.00"),
        "nested": [Decimal("0.1"), None, "text"],
    }
    text = json.dumps(mapping.to_rpc(value))
    assert json.loads(text, object_hook=mapping.from_rpc) == value


def test_stamps_sort_as_text_in_time_order_and_keep_microseconds() -> None:
    early = {"create_date": dt.datetime(2026, 1, 2, 3, 4, 5), "write_date": None}
    late = {
        "create_date": dt.datetime(2026, 1, 1),
        "write_date": dt.datetime(2026, 1, 2, 3, 4, 5, 1),
    }
    assert mapping.modified_stamp(early) == "2026-01-02T03:04:05.000000"
    assert mapping.modified_stamp(early) < mapping.modified_stamp(late)
    assert mapping.parse_stamp(mapping.modified_stamp(late)) == late["write_date"]


def test_a_marker_is_appended_found_exactly_and_stripped() -> None:
    text = mapping.with_marker("Workshop", "acc_1f")
    assert text == "Workshop [accord:acc_1f]"
    assert mapping.marker_of(text) == "acc_1f"
    assert mapping.strip_marker(text) == "Workshop"
    assert mapping.with_marker(text, "acc_1f") == text  # never doubled
    assert mapping.marker_of("Workshop [accord:acc_1f] later text") is None


def test_hours_are_exact_decimals_both_ways() -> None:
    values = mapping.time_entry_values(
        {"work_date": "2026-02-03", "hours": "7.25", "activity": "Review"},
        reference="k1",
        creating=True,
        timesheet_work=4,
    )
    assert values["duration"] == dt.timedelta(hours=7, minutes=15)
    assert mapping.hours_of(values["duration"]) == "7.25"
    assert values["description"] == "Review [accord:k1]"
    with pytest.raises(InvalidInput, match="decimal string"):
        mapping.time_entry_values(
            {"work_date": "2026-02-03", "hours": 7.25},
            reference="k1",
            creating=True,
            timesheet_work=4,
        )


@pytest.mark.parametrize(
    ("state", "due", "payments", "status"),
    [
        ("draft", "0", [], "draft"),
        ("validated", "0", [], "draft"),
        ("posted", "300.00", [], "issued"),
        ("posted", "200.00", [7], "partially_paid"),
        ("paid", "0", [7], "paid"),
        ("cancelled", "0", [], "void"),
    ],
)
def test_invoice_states_map_to_canonical_statuses(
    state: str, due: str, payments: list[int], status: str
) -> None:
    record = {
        "state": state,
        "amount_to_pay": Decimal(due),
        "total_amount": Decimal("300.00"),
        "payment_lines": payments,
    }
    assert mapping.invoice_status(record) == status


def test_an_invoice_needs_lines_and_a_customer() -> None:
    defaults = {"journal": 1, "receivable": 2, "revenue": 3}
    with pytest.raises(InvalidInput, match="at least one line"):
        mapping.invoice_values(
            {"account_external_id": "5"},
            reference="r",
            creating=True,
            defaults=defaults,
            invoice_address=1,
            currency=None,
        )
    with pytest.raises(InvalidInput, match="needs a Tryton id"):
        mapping.invoice_values(
            {"lines": [{"description": "x", "quantity": "1", "unit_price": "1"}]},
            reference="r",
            creating=True,
            defaults=defaults,
            invoice_address=1,
            currency=None,
        )


def test_a_marker_search_escapes_like_wildcards() -> None:
    (clause,) = mapping.reference_domain("time_entry", "acc_1%")
    assert clause == ("description", "like", "%[accord:acc\\_1\\%]")
    assert mapping.reference_domain("account", "acc_1") == [("code", "=", "acc_1")]
