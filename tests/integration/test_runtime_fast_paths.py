"""The runtime's prepared-statement writes store what the Core statements would.

A batch writes records, versions, xref links, audit entries, echo state,
effect intents and inbox outcomes through driver-level prepared statements
(``accord.store.fast``). These tests read every one of them back through
SQLAlchemy, on SQLite and on PostgreSQL, and check the values, the digests and
the audit chain.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from accord.errors import InvalidInput
from accord.events.stream import MemoryStream
from accord.ownership import EchoKey, FieldSync, InMemoryEchoMemory, load_policy
from accord.ownership.decide import digest
from accord.runtime.effects import EffectExecutor, request_digest
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.pipeline import (
    BulkEcho,
    Pipeline,
    Route,
    SqlLedger,
    _outcome_text,
    _request_text,
    passthrough,
)
from accord.sandbox.recorder import RecorderServer
from accord.store import (
    Inbox,
    InboxIntake,
    PutItem,
    Records,
    append_many,
    canonical_json,
    content_digest,
    entries,
    make_engine,
    upgrade,
    verify,
)
from accord.store.audit import entry_hash
from accord.store.db import writer_lock
from accord.store.fast import Prepared, db_time, json_strings
from accord.store.repo import keyed_rows, keys_in
from accord.store.tables import (
    InboxStatus,
    echo_records,
    effects,
    inbox,
    record_versions,
    records,
    xref,
)

POLICY = load_policy(
    """
ownership:
  systems: {crm: crm, erp: erp}
  account:
    owner: crm
    fields:
      payment_terms_days: erp
"""
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fast.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def recorder() -> Iterator[RecorderServer]:
    with RecorderServer(seed=5) as server:
        yield server


@pytest.fixture
def pipeline(engine: Engine, recorder: RecorderServer) -> Iterator[Pipeline]:
    vendor = IdempotentHttpVendor(recorder.url)
    yield Pipeline(
        engine,
        POLICY,
        EffectExecutor(SqlLedger(engine), {"erp": vendor}),
        routes=[Route("account", "erp", "upsert_customer")],
    )
    vendor.close()


def _event(i: int, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "entity_type": "account",
        "external_object": "Account",
        "external_id": f"001{i:06d}",
        "fields": {"legal_name": name, **fields},
    }


def test_a_batch_reads_back_as_written(engine: Engine, pipeline: Pipeline) -> None:
    before = datetime.now(UTC)
    names = ['Ünïcode "quoted" \\ Ltd', "Tab\tand\nnewline", "Plain"]
    for i, name in enumerate(names):
        assert pipeline.ingest("crm", f"e-{i}", "account.updated", _event(i, name, seats=i))
    # the same record twice in one batch: two versions, two effects
    assert pipeline.ingest("crm", "e-again", "account.updated", _event(0, "Renamed", seats=7))
    claimed = pipeline.claim(100, timedelta(seconds=60))
    assert [attempts for _, attempts in claimed] == [1, 1, 1, 1]
    seqs = [seq for seq, _ in claimed]
    outcome = pipeline.apply_batch(seqs)
    assert (outcome.applied, outcome.dead, pipeline.fallbacks) == (4, 0, 0)
    assert len(outcome.effects) == 4
    after = datetime.now(UTC)

    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(records))}
        assert len(stored) == 3
        for row in stored.values():
            assert row.digest == content_digest(row.data)
            assert before <= row.updated_at <= after
            assert row.updated_at.tzinfo is not None
        by_name = {row.data["legal_name"]: row for row in stored.values()}
        assert set(by_name) == {"Renamed", *names[1:]}
        renamed = by_name["Renamed"]
        assert renamed.version == 2
        assert renamed.data == {"legal_name": "Renamed", "seats": 7}

        versions = conn.execute(
            select(record_versions)
            .where(record_versions.c.id == renamed.id)
            .order_by(record_versions.c.version)
        ).all()
        assert [v.version for v in versions] == [1, 2]
        assert versions[0].data == {"legal_name": names[0], "seats": 0}
        assert versions[0].changed_fields == ["legal_name", "seats"]
        assert versions[1].changed_fields == ["legal_name", "seats"]
        assert versions[1].system == "crm"
        assert versions[1].at == renamed.updated_at

        links = conn.execute(select(xref)).all()
        assert {(link.system, link.external_id) for link in links} == {
            ("crm", f"001{i:06d}") for i in range(3)
        }
        assert {link.canonical_id for link in links} == set(stored)

        intents = {row.idempotency_key: row for row in conn.execute(select(effects))}
        assert set(intents) == set(outcome.effects)
        for row in intents.values():
            assert row.status == "intent"
            assert row.attempts == 1  # bound for a batch API: attempted from the start
            assert row.request_digest == request_digest(row.request)
            assert row.request["entity_type"] == "account"
            assert row.request["id"] in stored
            assert set(row.request["fields"]) == {"legal_name", "seats"}
            assert row.created_at == row.updated_at == renamed.updated_at
            assert row.result is None

        done = conn.execute(select(inbox).where(inbox.c.seq.in_(seqs)).order_by(inbox.c.seq))
        changes = []
        for row in done:
            assert row.status == "done"
            assert row.error is None
            assert row.processed_at == renamed.updated_at
            assert set(row.outcome) == {"effects", "changes"}
            changes.extend(tuple(c) for c in row.outcome["changes"])
        assert changes == outcome.changes

        echoes = {row.entity_id: row.state for row in conn.execute(select(echo_records))}
        assert echoes[renamed.id]["erp"]["legal_name"][0] == digest("Renamed")
        assert echoes[renamed.id]["crm"]["seats"] == [None, digest(7)]

        report = verify(conn)
        assert report.ok, str(report)
        logged = entries(conn, limit=100)
        assert [e.action for e in logged] == ["record.changed"] * 4
        assert logged[-1].data == {
            "event": "crm:e-again",
            "fields": ["legal_name", "seats"],
            "version": 2,
        }

    counts = pipeline.run_effects(outcome.effects)
    assert counts == {"done": 4, "replayed": 0, "dead": 0}
    with engine.connect() as conn:
        for row in conn.execute(select(effects)):
            assert row.status == "done"
            assert row.external_id
            assert isinstance(row.result, dict)
            assert row.updated_at >= row.created_at
    # a second run finds them done: nothing is sent again
    assert pipeline.run_effects(outcome.effects) == {"done": 0, "replayed": 4, "dead": 0}
    # applying the batch again changes nothing and reports what it did the first time
    again = pipeline.apply_batch(seqs)
    assert (again.applied, again.skipped) == (0, 4)
    assert again.changes == outcome.changes


def test_put_many_matches_put(engine: Engine) -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with engine.begin() as conn:
        repo = Records(conn, clock=lambda: now)
        repo.put("account", "a", {"n": 1, "flag": True}, system="crm", actor="t")
        items = [
            PutItem("account", "a", {"n": 1.0, "flag": True}, "crm", "t"),  # 1 -> 1.0 changes
            PutItem("account", "a", {"n": 1.0, "flag": True}, "crm", "t"),  # no change
            PutItem("account", "b", {"list": (1, 2)}, "erp", "t", "trace-1"),
            PutItem(
                "account",
                "c",
                {"s": "x"},
                "erp",
                "t",
                canonical=canonical_json({"s": "x"}),
            ),
        ]
        results = repo.put_many(items)
        assert [(r.version, r.changed_fields, r.created) for r in results] == [
            (2, ("n",), False),
            (2, (), False),
            (1, ("list",), True),
            (1, ("s",), True),
        ]
        base = repo.get_many([("account", "a")], lock=True)
        again = repo.put_many([PutItem("account", "a", {"n": 2}, "crm", "t")], base=base)
        assert [(r.version, r.changed_fields) for r in again] == [(3, ("flag", "n"))]
    with engine.connect() as conn:
        repo = Records(conn)
        b = repo.get("account", "b")
        assert b is not None
        assert b.data == {"list": [1, 2]}
        assert b.digest == content_digest({"list": [1, 2]})
        assert b.updated_at == now
        history = repo.history("account", "a")
        assert [(v.version, v.data, v.changed_fields) for v in history] == [
            (1, {"flag": True, "n": 1}, ("flag", "n")),
            (2, {"flag": True, "n": 1.0}, ("n",)),
            (3, {"n": 2}, ("flag", "n")),
        ]
        assert type(history[1].data["n"]) is float
        assert repo.history("account", "b")[0].trace_id == "trace-1"


#: Key text as both databases store it (UTF-8; PostgreSQL's text refuses NUL).
_KEY_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stored=st.lists(
        st.tuples(st.sampled_from(["crm", "erp", "ü'\"x"]), _KEY_TEXT),
        max_size=12,
        unique=True,
    ),
    asked=st.lists(
        st.tuples(st.sampled_from(["crm", "erp", "ü'\"x", "psa"]), _KEY_TEXT), max_size=12
    ),
)
def test_keyed_rows_finds_what_keys_in_finds(
    engine: Engine, stored: list[tuple[str, str]], asked: list[tuple[str, str]]
) -> None:
    """The one-statement look-up gives the rows the expression built per call gives."""
    with engine.begin() as conn:
        conn.execute(xref.delete())
        for n, (system, external_id) in enumerate(stored):
            conn.execute(
                xref.insert().values(
                    entity_type="account",
                    canonical_id=f"c{n}",
                    system=system,
                    external_object="Account",
                    external_id=external_id,
                )
            )
        keys = [(system, "Account", external_id) for system, external_id in asked]
        keys += keys[:2]  # a key asked twice finds its row once
        for lock in (False, True):
            fast = keyed_rows(
                conn, xref, ("system", "external_object", "external_id"), keys, lock=lock
            )
            expected = (
                conn.execute(
                    select(xref).where(
                        keys_in((xref.c.system, xref.c.external_object, xref.c.external_id), keys)
                    )
                ).all()
                if keys
                else []
            )
            assert sorted(map(tuple, fast)) == sorted(map(tuple, expected))
        conn.execute(xref.delete())


def test_append_many_chains_like_append(engine: Engine) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    items: list[tuple[str, str, str, Any]] = [
        ("accord:crm", "record.changed", 'account/ä"b', {"z": [1, "ü"], "a": None}),
        ("accord", "dead_letter", "inbox/1", None),
        ("ünï\\code", "x", "y\n", {"nested": {"b": 1, "a": 2.5}}),
    ]
    with engine.begin() as conn:
        written = append_many(conn, items, at=at)
    assert [e.seq for e in written] == [1, 2, 3]
    for entry in written:
        assert entry.hash == entry.recomputed_hash()
        assert entry.hash == entry_hash(
            seq=entry.seq,
            at=at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            data=entry.data,
            prev_hash=entry.prev_hash,
        )
    assert written[1].data == {}
    with engine.connect() as conn:
        assert verify(conn).ok
        stored = entries(conn)
    assert stored == written


def test_claim_seqs_claims_like_claim_batch(engine: Engine) -> None:
    with engine.begin() as conn:
        box = Inbox(conn)
        for i in range(5):
            box.accept("crm", f"c-{i}", event_type="t", payload={"i": i})
    with engine.begin() as conn:
        first = Inbox(conn).claim_seqs(3, lease=timedelta(seconds=60))
    with engine.begin() as conn:
        rest = Inbox(conn).claim_batch(10, lease=timedelta(seconds=60))
    assert [attempts for _, attempts in first] == [1, 1, 1]
    assert [seq for seq, _ in first] == sorted(seq for seq, _ in first)
    assert {seq for seq, _ in first}.isdisjoint(e.seq for e in rest)
    assert len(rest) == 2


def test_claim_seqs_takes_due_events_oldest_first_and_only_of_the_system_asked(
    engine: Engine,
) -> None:
    """The prepared claim: pending and due failed events, oldest first, each once;
    an event held back (a lease, a retry's delay) is left; ``system`` filters."""
    with engine.begin() as conn:
        box = Inbox(conn)
        for i, system in enumerate(["crm", "erp", "crm", "erp", "crm"]):
            box.accept(system, f"s-{i}", event_type="t", payload={"i": i})
        seqs = [e.seq for e in box.claim_batch(10, lease=timedelta(seconds=60))]
        box.mark(seqs[0], InboxStatus.FAILED, error="retry now")
        box.mark(seqs[1], InboxStatus.FAILED, error="retry later", retry_after=timedelta(hours=1))
        box.mark(seqs[2:], InboxStatus.PENDING)
    with engine.begin() as conn:
        crm = Inbox(conn).claim_seqs(10, system="crm", lease=timedelta(seconds=60))
    assert crm == [(seqs[0], 2), (seqs[2], 2), (seqs[4], 2)]
    with engine.begin() as conn:
        others = Inbox(conn).claim_seqs(10, lease=timedelta(seconds=60))
    assert others == [(seqs[3], 2)]  # erp's failed event waits an hour; crm's are leased
    with pytest.raises(InvalidInput, match="at least 1"):
        with engine.begin() as conn:
            Inbox(conn).claim_seqs(0)


def test_db_time_reads_back_through_sqlalchemy(engine: Engine) -> None:
    at = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    statement = Prepared(
        "UPDATE inbox SET processed_at = {p}, outcome = {json} WHERE event_id = {p}"
    )
    with engine.begin() as conn:
        Inbox(conn).accept("crm", "t-1", event_type="t", payload={})
        statement.run_many(conn, [(db_time(conn, at), '{"a":[1,"b"]}', "t-1")])
        statement.run_many(conn, [])
    with engine.connect() as conn:
        row = conn.execute(select(inbox).where(inbox.c.event_id == "t-1")).one()
    assert row.processed_at == at
    assert row.outcome == {"a": [1, "b"]}
    with pytest.raises(ValueError, match="naive"):
        with engine.connect() as conn:
            db_time(conn, datetime(2026, 1, 1))


_json_scalars = st.none() | st.booleans() | st.integers() | st.text()
_json = st.recursive(
    _json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(_json_scalars)
def test_digest_of_a_scalar_is_the_digest_of_its_json(value: Any) -> None:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            digest(value)
        return
    assert digest(value) == hashlib.sha256(encoded).hexdigest()


@given(st.lists(st.text()))
def test_json_strings_is_canonical_json(values: list[str]) -> None:
    assert json_strings(values) == canonical_json(values)


@given(
    st.lists(st.text()),
    st.lists(st.tuples(st.text(), st.text(), st.integers(min_value=1))),
)
def test_outcome_text_is_canonical_json(keys: list[str], changes: list[Any]) -> None:
    text = _outcome_text(keys, changes)
    assert text == canonical_json({"effects": keys, "changes": [list(c) for c in changes]})


@given(st.dictionaries(st.text(), _json, max_size=4), st.integers(min_value=1))
def test_request_text_is_what_request_digest_hashes(fields: dict[str, Any], version: int) -> None:
    request = {"entity_type": "account", "id": "x", "version": version, "fields": fields}
    text = _request_text(request)
    assert hashlib.sha256(text.encode()).hexdigest() == request_digest(request)
    assert json.loads(text) == request


# -- intake on embedded SQLite -------------------------------------------------------


def _sqlite_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    upgrade(engine)
    return engine


def test_intake_holds_its_own_connection_only_on_a_sqlite_file(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    memory = make_engine("sqlite://")
    try:
        assert isinstance(InboxIntake.for_engine(engine), InboxIntake)
        assert InboxIntake.for_engine(memory) is None
        assert InboxIntake.for_engine(make_engine("postgresql://u@127.0.0.1/x")) is None
    finally:
        engine.dispose()
        memory.dispose()


def test_writers_of_one_process_queue_for_each_other_on_a_sqlite_file(tmp_path: Path) -> None:
    """Intake waits for a batch's write in Python and goes on the moment it
    commits, instead of sleeping in SQLite's busy handler past its end."""
    engine = _sqlite_engine(tmp_path)
    memory = make_engine("sqlite://")
    intake = InboxIntake.for_engine(engine)
    assert intake is not None
    lock = writer_lock(engine)
    order: list[str] = []
    try:
        assert writer_lock(engine) is lock  # one per engine
        assert writer_lock(make_engine(f"sqlite:///{tmp_path / 'other.db'}")) is not lock
        assert isinstance(writer_lock(memory), nullcontext)  # nothing shared to queue for
        assert isinstance(writer_lock(make_engine("postgresql://u@127.0.0.1/x")), nullcontext)

        def ingest() -> None:
            intake.accept("crm", "e-1", event_type="t", payload={"a": 1})
            order.append("event stored")

        with lock:  # as a batch's transaction holds it
            waiting = threading.Thread(target=ingest)
            waiting.start()
            waiting.join(0.2)
            assert waiting.is_alive()
            order.append("batch committed")
        waiting.join(10)
        assert order == ["batch committed", "event stored"]
        with engine.connect() as conn:
            assert conn.execute(select(inbox.c.event_id)).scalars().all() == ["e-1"]
    finally:
        intake.close()
        engine.dispose()
        memory.dispose()


def test_intake_stores_the_row_the_engine_path_stores_and_commits_it(
    tmp_path: Path,
) -> None:
    engine = _sqlite_engine(tmp_path)
    intake = InboxIntake.for_engine(engine)
    assert intake is not None
    payload = {"b": 2, "a": ["Ünï", 1.5], "fields": {"x": None}}
    try:
        before = datetime.now(UTC)
        assert intake.accept("crm", "e-1", event_type="t", payload=payload, trace_id="tr-1")
        assert not intake.accept("crm", "e-1", event_type="t", payload=payload)  # redelivery
        with engine.begin() as conn:
            assert Inbox(conn).accept(
                "crm", "e-2", event_type="t", payload=payload, trace_id="tr-1"
            )
        # read back by a connection of its own: committed, not merely in intake's transaction
        with engine.connect() as conn:
            fast, core = conn.execute(select(inbox).order_by(inbox.c.seq)).all()
        assert fast.status == core.status == "pending"
        assert fast.payload == core.payload == payload
        assert fast.trace_id == core.trace_id == "tr-1"
        assert fast.attempts == core.attempts == 0
        assert before <= fast.received_at <= core.received_at <= datetime.now(UTC)
        assert fast.seq < core.seq
    finally:
        intake.close()
        engine.dispose()


def test_intake_refuses_bad_input_and_keeps_working(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    intake = InboxIntake.for_engine(engine)
    assert intake is not None
    try:
        with pytest.raises(InvalidInput, match="JSON object"):
            intake.accept("crm", "bad-1", event_type="t", payload=["not", "an", "object"])  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="not a JSON document"):
            intake.accept("crm", "bad-2", event_type="t", payload={"x": float("nan")})
        with pytest.raises(Exception, match="NOT NULL"):
            intake.accept("crm", "bad-3", event_type=None, payload={})  # type: ignore[arg-type]
        assert intake.accept("crm", "good", event_type="t", payload={})
        intake.close()
        assert intake.accept("crm", "after-close", event_type="t", payload={})
        with engine.connect() as conn:
            stored = [row.event_id for row in conn.execute(select(inbox).order_by(inbox.c.seq))]
        assert stored == ["good", "after-close"]
    finally:
        intake.close()
        engine.dispose()


def test_concurrent_deliveries_of_one_event_are_accepted_once(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    intake = InboxIntake.for_engine(engine)
    assert intake is not None
    barrier = threading.Barrier(8)
    answers: list[bool] = []

    def deliver(i: int) -> None:
        barrier.wait(timeout=10)
        for n in range(50):
            answers.append(intake.accept("crm", f"e-{n}", event_type="t", payload={"by": i}))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers.count(True) == 50
        assert len(answers) == 400
        with engine.connect() as conn:
            assert len(conn.execute(select(inbox)).all()) == 50
    finally:
        intake.close()
        engine.dispose()


# -- canonical ids -------------------------------------------------------------------


def test_new_records_get_ids_that_sort_by_creation_time(engine: Engine, pipeline: Pipeline) -> None:
    for i in range(3):
        pipeline.ingest("crm", f"order-{i}", "account.updated", _event(10 + i, f"N{i}"))
    with engine.begin() as conn:
        seqs = [seq for seq, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30))]
    pipeline.apply_batch(sorted(seqs))
    with engine.connect() as conn:
        links = conn.execute(select(xref).order_by(xref.c.external_id)).all()
    ids = [link.canonical_id for link in links]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(len(cid) == 26 for cid in ids)  # ULIDs
    assert ids[0][:10] <= ids[1][:10] <= ids[2][:10]  # the 48-bit time part


def test_effect_keys_sort_in_the_order_of_the_events_that_made_them(
    engine: Engine, pipeline: Pipeline
) -> None:
    # events of existing records (an update) and of new ones, in one batch and in two
    for i in range(6):
        pipeline.ingest("crm", f"k-{i}", "account.updated", _event(20 + i % 4, f"K{i}"))
    with engine.begin() as conn:
        seqs = sorted(seq for seq, _ in Inbox(conn).claim_seqs(3, lease=timedelta(seconds=30)))
    first = pipeline.apply_batch(seqs)
    with engine.begin() as conn:
        rest = sorted(seq for seq, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)))
    second = pipeline.apply_batch(rest)
    assert first.dead == second.dead == 0
    with engine.connect() as conn:
        rows = conn.execute(select(inbox.c.seq, inbox.c.outcome).order_by(inbox.c.seq)).all()
        stored = set(conn.execute(select(effects.c.idempotency_key)).scalars())
    keys = [key for row in rows for key in row.outcome["effects"]]
    assert len(keys) == 6 and set(keys) == stored
    assert keys == sorted(keys)  # the ledger's index grows at its end
    again = [
        key
        for row in rows
        for key in [row.outcome["effects"][0]]
        if key[4:16] == f"{row.seq:012x}"  # the event's seq leads each key
    ]
    assert again == keys


def test_two_workers_meeting_one_new_external_key_make_one_record(postgres_url: str) -> None:
    """Both map an event about the same new account at the same moment (a barrier
    inside the mapping): one links its id, the other finds that link and applies
    on top of the same record."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    barrier = threading.Barrier(2)

    def mapping(event: Any) -> Any:
        barrier.wait(timeout=10)
        return passthrough(event)

    executor = EffectExecutor(SqlLedger(engine), {})
    first, second = (
        Pipeline(engine, POLICY, executor, handlers={"crm": mapping}) for _ in range(2)
    )
    first.ingest("crm", "race-1", "account.updated", _event(77, "First", seats=1))
    first.ingest("crm", "race-2", "account.updated", _event(77, "First", seats=2))
    with engine.begin() as conn:
        seqs = sorted(seq for seq, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)))
    outcomes: list[Any] = []
    threads = [
        threading.Thread(target=lambda p=p, s=s: outcomes.append(p.apply_batch([s])))
        for p, s in zip((first, second), seqs, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sum(outcome.applied for outcome in outcomes) == 2
        with engine.connect() as conn:
            links = conn.execute(select(xref)).all()
            stored = conn.execute(select(records)).all()
            versions = conn.execute(select(record_versions)).all()
        assert len(links) == 1
        assert [(r.id, r.version) for r in stored] == [(links[0].canonical_id, 2)]
        assert sorted(v.version for v in versions) == [1, 2]
        assert {v.id for v in versions} == {links[0].canonical_id}
    finally:
        engine.dispose()


def test_publishing_from_memory_gives_the_changes_the_store_holds(
    engine: Engine, recorder: RecorderServer
) -> None:
    """Versions just applied are published from memory; a pipeline that did not
    apply them (recovery, another worker) reads them back: the same changes."""
    vendor = IdempotentHttpVendor(recorder.url)
    executor = EffectExecutor(SqlLedger(engine), {"erp": vendor})
    route = [Route("account", "erp", "upsert_customer")]
    applier = Pipeline(engine, POLICY, executor, routes=route, stream=MemoryStream())
    other = Pipeline(engine, POLICY, executor, routes=route, stream=MemoryStream())
    try:
        applier.ingest("crm", "m-1", "account.updated", _event(1, "Ünï Ltd", seats=3))
        applier.ingest("crm", "m-2", "account.updated", _event(1, "Ünï Ltd", seats=4))
        applier.ingest("crm", "m-3", "account.updated", _event(2, "Other"))
        with engine.begin() as conn:
            seqs = sorted(s for s, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)))
        outcome = applier.apply_batch(seqs)
        assert len(outcome.changes) == 3
        assert applier.publish(outcome.changes) == 3
        assert other.publish(outcome.changes) == 3
        from_memory = [change for _, change in applier.stream.replay()]  # type: ignore[union-attr]
        from_store = [change for _, change in other.stream.replay()]  # type: ignore[union-attr]
        assert from_memory == from_store
        assert [(c.version, c.changed_fields) for c in from_memory] == [
            (1, ("legal_name", "seats")),
            (2, ("seats",)),
            (1, ("legal_name",)),
        ]
        assert dict(from_memory[1].data) == {"legal_name": "Ünï Ltd", "seats": 4}
        # published once, the versions are no longer held: a re-run reads the
        # store, and the stream drops the copies
        assert applier._recent.take_many(outcome.changes) == {}
        assert applier.publish(outcome.changes) == 3
        assert [c for _, c in applier.stream.replay()] == from_memory  # type: ignore[union-attr]
    finally:
        vendor.close()


def test_intents_handed_over_in_memory_send_what_the_ledger_holds(engine: Engine) -> None:
    """The effects of a batch are performed from memory as its apply just recorded them; a
    pipeline that did not apply them (recovery, another worker) reads them from
    the ledger. Both must send the vendor exactly the same items."""
    sent: list[list[dict[str, Any]]] = []

    def vendor_api(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        sent.append(items)
        results = [
            {"id": f"obj_{i}", "idempotency_key": item["idempotency_key"]}
            for i, item in enumerate(items)
        ]
        return httpx.Response(200, json={"results": results})

    vendor = IdempotentHttpVendor("http://vendor.test", transport=httpx.MockTransport(vendor_api))
    route = [Route("account", "erp", "upsert_customer")]
    applier = Pipeline(
        engine, POLICY, EffectExecutor(SqlLedger(engine), {"erp": vendor}), routes=route
    )
    other = Pipeline(
        engine, POLICY, EffectExecutor(SqlLedger(engine), {"erp": vendor}), routes=route
    )
    try:
        applier.ingest("crm", "h-1", "account.updated", _event(1, "Ünï", seats=3))
        applier.ingest("crm", "h-2", "account.updated", _event(1, "Ünï", seats=4.5))
        applier.ingest("crm", "h-3", "account.updated", _event(2, "Other", tags=["a", None]))
        with engine.begin() as conn:
            seqs = sorted(s for s, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)))
        outcome = applier.apply_batch(seqs)
        assert len(outcome.effects) == 3
        assert applier.run_effects(outcome.effects) == {"done": 3, "replayed": 0, "dead": 0}
        assert applier._fresh.take_many(outcome.effects) == {}  # taken once
        # as if recorded and never performed, for a process that did not apply them
        with engine.begin() as conn:
            conn.execute(
                update(effects).values(status="intent", attempts=0, external_id=None, result=None)
            )
        assert other.run_effects(outcome.effects) == {"done": 3, "replayed": 0, "dead": 0}
        assert len(sent) == 2
        assert sent[0] == sent[1]
        assert [item["idempotency_key"] for item in sent[0]] == outcome.effects
        with engine.connect() as conn:
            rows = conn.execute(select(effects).order_by(effects.c.idempotency_key)).all()
        assert [(r.status, r.attempts) for r in rows] == [("done", 1)] * 3
        assert [r.request for r in rows] == [item["body"] for item in sent[0]]
        # performed: a third run sends nothing
        assert applier.run_effects(outcome.effects)["replayed"] == 3
        assert len(sent) == 2
    finally:
        vendor.close()


def test_an_intent_bound_for_a_batch_api_is_looked_up_before_it_is_sent_again(
    engine: Engine,
) -> None:
    """Apply records an intent for a batch API as attempted, so the batch needs
    no write before its call. After a crash (the intents only in the ledger),
    each is looked up first: one the vendor already has is not sent again, one
    it lacks is sent once."""
    known: dict[str, str] = {}
    calls: list[tuple[str, str]] = []

    def vendor_api(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            key = request.url.params["idempotency_key"]
            calls.append(("lookup", key))
            found = [{"id": known[key], "idempotency_key": key}] if key in known else []
            return httpx.Response(200, json={"data": found})
        if request.url.path.endswith("/batch"):
            items = json.loads(request.content)["items"]
            calls.extend(("batch", item["idempotency_key"]) for item in items)
            results = []
            for item in items:
                known.setdefault(item["idempotency_key"], f"obj_{len(known)}")
                results.append({"id": known[item["idempotency_key"]]})
            return httpx.Response(200, json={"results": results})
        key = request.headers["Idempotency-Key"]
        calls.append(("send", key))
        known.setdefault(key, f"obj_{len(known)}")
        return httpx.Response(200, json={"id": known[key]})

    vendor = IdempotentHttpVendor("http://vendor.test", transport=httpx.MockTransport(vendor_api))
    route = [Route("account", "erp", "upsert_customer")]

    def pipeline() -> Pipeline:
        return Pipeline(
            engine, POLICY, EffectExecutor(SqlLedger(engine), {"erp": vendor}), routes=route
        )

    crashed, recovered = pipeline(), pipeline()
    try:
        crashed.ingest("crm", "l-1", "account.updated", _event(1, "Sent before the crash"))
        crashed.ingest("crm", "l-2", "account.updated", _event(2, "Never sent"))
        with engine.begin() as conn:
            seqs = sorted(s for s, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)))
        first, second = crashed.apply_batch(seqs).effects
        known[first] = "obj_before"  # the vendor applied it; its answer was lost
        assert recovered.run_effects([first, second]) == {"done": 1, "replayed": 1, "dead": 0}
        assert calls == [("lookup", first), ("lookup", second), ("send", second)]
        with engine.connect() as conn:
            rows = {r.idempotency_key: r for r in conn.execute(select(effects))}
        assert rows[first].external_id == "obj_before"
        assert [rows[k].status for k in (first, second)] == ["done", "done"]
        # the process that applied them would have batched them, no look-up
        calls.clear()
        crashed.ingest("crm", "l-3", "account.updated", _event(3, "Fresh"))
        with engine.begin() as conn:
            seqs = sorted(s for s, _ in Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)))
        (third,) = crashed.apply_batch(seqs).effects
        assert crashed.run_effects([third])["done"] == 1
        assert calls == [("batch", third)]
    finally:
        vendor.close()


# -- the batch's echo memory follows the port's rules ------------------------------

_ECHO_OPS = st.lists(
    st.tuples(
        st.sampled_from(["remember", "observe", "forget", "is_echo", "last_seen", "load"]),
        st.sampled_from(["crm", "erp"]),
        st.sampled_from(["A1", "A1", "A2"]),
        st.sampled_from(["legal_name", "legal_name", "seats"]),
        st.sampled_from(["d1", "d2"]),
    ),
    max_size=40,
)


_ECHO_ENGINES: list[Engine] = []


def _echo_engine() -> Engine:
    """One migrated in-memory store for every example (migrating costs 100 ms)."""
    if not _ECHO_ENGINES:
        engine = make_engine("sqlite://")
        upgrade(engine)
        _ECHO_ENGINES.append(engine)
    return _ECHO_ENGINES[0]


@settings(max_examples=300, deadline=None)
@given(first=_ECHO_OPS, then=_ECHO_OPS)
def test_the_batch_echo_memory_answers_as_the_port_does(
    first: list[tuple[str, str, str, str, str]], then: list[tuple[str, str, str, str, str]]
) -> None:
    """BulkEcho runs the EchoMemory rules on its dictionaries directly; for any
    sequence of calls it answers as the port's own methods do (InMemoryEchoMemory),
    and what it writes back reads back the same in the next batch."""
    engine = _echo_engine()
    with engine.begin() as conn:
        conn.execute(echo_records.delete())
    reference = InMemoryEchoMemory()
    keys = [("account", "A1"), ("account", "A2")]

    def run(echo: Any, ops: list[tuple[str, str, str, str, str]]) -> list[Any]:
        answers: list[Any] = []
        for op, system, entity_id, field_name, value in ops:
            if op in ("remember", "observe"):
                getattr(echo, op)(system, "account", entity_id, field_name, value)
            elif op == "forget":
                echo.forget(system, "account", entity_id, field_name)
            elif op == "is_echo":
                answers.append(echo.is_echo(system, "account", entity_id, field_name, value))
            elif op == "last_seen":
                answers.append(echo.last_seen(system, "account", entity_id, field_name))
            else:
                state = echo.load(EchoKey(system, "account", entity_id, field_name))
                answers.append(state if state is None or state != FieldSync() else None)
        return answers

    for ops in (first, then):  # two batches: the second starts from what the first stored
        with engine.begin() as conn:
            bulk = BulkEcho(conn, keys)
            assert run(bulk, ops) == run(reference, ops)
            bulk.flush()
