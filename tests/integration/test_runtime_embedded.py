"""The runtime on the embedded default: SQLite, DBOS, a real HTTP stand-in."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from accord.bootstrap import Hub, build_hub
from accord.config import Settings
from accord.ownership import load_policy
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.pipeline import Route
from accord.sandbox.recorder import Faults, RecorderServer
from accord.store import Exceptions, Records, verify
from accord.store.tables import inbox, records

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


def account_event(i: int, **fields: object) -> dict[str, object]:
    return {
        "entity_type": "account",
        "external_object": "Account",
        "external_id": f"001{i:06d}",
        "fields": {"legal_name": f"Customer {i} Ltd", **fields},
    }


@pytest.fixture
def recorder() -> Iterator[RecorderServer]:
    with RecorderServer(seed=3) as server:
        yield server


@pytest.fixture
def hub(tmp_path: Path, recorder: RecorderServer) -> Iterator[Hub]:
    settings = Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'accord.db'}",
            "runtime": {"retry": {"initial_interval": 0.001, "maximum_attempts": 25}},
        }
    )
    hub = build_hub(
        settings,
        vendors={"erp": IdempotentHttpVendor(recorder.url)},
        routes=[Route("account", "erp", "upsert_customer")],
        policy=POLICY,
    )
    with hub:
        yield hub


def count(hub: Hub, table: object) -> int:
    with hub.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_events_flow_from_inbox_to_canonical_store_to_one_effect_each(
    hub: Hub, recorder: RecorderServer
) -> None:
    for i in range(300):
        assert hub.pipeline.ingest("crm", f"evt-{i}", "account.updated", account_event(i))
    assert hub.worker.drain(60)
    assert count(hub, records) == 300
    assert recorder.stats()["objects"] == 300
    assert hub.pipeline.fallbacks == 0  # the batch path did the work
    requests = recorder.stats()["requests"]
    assert requests["batch"] <= 300 / 2  # effects travel in vendor batches
    assert requests["write"] == 300
    with hub.engine.connect() as conn:
        assert verify(conn).ok


def test_a_redelivered_webhook_is_acknowledged_and_ignored(
    hub: Hub, recorder: RecorderServer
) -> None:
    assert hub.pipeline.ingest("crm", "evt-1", "account.updated", account_event(1))
    assert not hub.pipeline.ingest("crm", "evt-1", "account.updated", account_event(1))
    assert hub.worker.drain(30)
    assert count(hub, inbox) == 1
    assert recorder.stats()["objects"] == 1


def test_a_change_only_creates_a_new_version_and_a_new_effect(
    hub: Hub, recorder: RecorderServer
) -> None:
    hub.pipeline.ingest("crm", "e1", "account.updated", account_event(1))
    hub.pipeline.ingest("crm", "e2", "account.updated", account_event(1))  # same data
    hub.pipeline.ingest("crm", "e3", "account.updated", account_event(1, domain="c1.example"))
    assert hub.worker.drain(30)
    with hub.engine.connect() as conn:
        (row,) = conn.execute(select(records)).all()
    assert row.version == 2
    assert recorder.stats()["objects"] == 2


def test_non_owner_change_becomes_an_ownership_conflict_and_is_not_applied(hub: Hub) -> None:
    hub.pipeline.ingest("crm", "e1", "account.updated", account_event(1, payment_terms_days=30))
    assert hub.worker.drain(30)
    hub.pipeline.ingest("erp", "x1", "customer.updated", account_event(9, payment_terms_days=45))
    hub.pipeline.ingest("crm", "e2", "account.updated", account_event(1, payment_terms_days=60))
    assert hub.worker.drain(30)
    with hub.engine.connect() as conn:
        conflicts = Exceptions(conn).list(type="ownership_conflict")
        record = Records(conn).get("account", _canonical_id(hub, 1))
    assert record is not None and record.data["payment_terms_days"] == 30
    assert any(c.context["incoming"] == 60 and c.context["owner"] == "erp" for c in conflicts)
    assert all(c.role == "finance" for c in conflicts)


def _canonical_id(hub: Hub, i: int) -> str:
    from accord.store import Xref

    with hub.engine.connect() as conn:
        link = Xref(conn).by_external("crm", "Account", f"001{i:06d}")
    assert link is not None
    return link.canonical_id


def test_poison_event_is_dead_lettered_and_never_blocks_the_others(
    hub: Hub, recorder: RecorderServer
) -> None:
    hub.pipeline.ingest("crm", "ok-1", "account.updated", account_event(1))
    hub.pipeline.ingest("crm", "bad", "account.updated", {"entity_type": "account"})
    hub.pipeline.ingest("crm", "ok-2", "account.updated", account_event(2))
    assert hub.worker.drain(30)
    assert recorder.stats()["objects"] == 2
    with hub.engine.connect() as conn:
        (dead,) = Exceptions(conn).list(type="dead_letter")
    assert "external_object" in dead.summary and dead.context["event_id"] == "bad"


def test_effects_survive_vendor_faults_exactly_once(hub: Hub, recorder: RecorderServer) -> None:
    recorder.faults = Faults(
        error_rate=0.15, throttle_rate=0.1, retry_after=0.01, lost_response_rate=0.2
    )
    for i in range(100):
        hub.pipeline.ingest("crm", f"evt-{i}", "account.updated", account_event(i))
    assert hub.worker.drain(120)
    stats = recorder.stats()
    assert stats["objects"] == 100
    assert stats["requests"]["write"] > 100
    with hub.engine.connect() as conn:
        assert Exceptions(conn).list(type="dead_letter") == []


def test_poison_event_replays_to_success_after_the_fix(hub: Hub, recorder: RecorderServer) -> None:
    from accord.runtime.dlq import dead_letters, replay
    from accord.runtime.pipeline import CanonicalUpsert, InboundEvent

    hub.pipeline.ingest("crm", "bad", "account.updated", {"id": "001X", "name": "Legacy Ltd"})
    assert hub.worker.drain(30)
    (letter,) = dead_letters(hub.engine)
    assert letter.kind == "event" and "entity_type" in letter.reason

    def legacy(event: InboundEvent) -> list[CanonicalUpsert]:  # the fix: a mapping for it
        payload = event.payload
        return [
            CanonicalUpsert(
                "account", "Account", str(payload["id"]), {"legal_name": payload["name"]}
            )
        ]

    hub.pipeline.handlers["crm"] = legacy
    assert replay(hub.engine, letter.id)["result"] == "queued"
    assert hub.worker.drain(30)
    assert dead_letters(hub.engine) == []
    assert recorder.stats()["objects"] == 1


def test_effect_refused_by_the_vendor_replays_once_the_vendor_recovers(
    hub: Hub, recorder: RecorderServer
) -> None:
    from accord.runtime.dlq import dead_letters, replay
    from accord.runtime.effects import EffectExecutor
    from accord.runtime.pipeline import SqlLedger
    from accord.runtime.retry import RetryPolicy

    hub.pipeline.executor = EffectExecutor(
        SqlLedger(hub.engine), hub.vendors, RetryPolicy(initial_interval=0, maximum_attempts=2)
    )
    recorder.faults = Faults(error_rate=1.0)
    hub.pipeline.ingest("crm", "e1", "account.updated", account_event(1))
    assert hub.worker.drain(30)
    (letter,) = dead_letters(hub.engine)
    assert letter.kind == "effect" and "gave up after 2 attempts" in letter.reason
    recorder.faults = Faults()
    result = replay(hub.engine, letter.id)
    assert result["result"]["done"] == 1
    assert recorder.stats()["objects"] == 1
    assert dead_letters(hub.engine) == []


def test_a_batch_that_fails_once_is_retried_as_a_checkpointed_step(
    hub: Hub, recorder: RecorderServer
) -> None:
    """A batch's work runs in its workflow without a step while it succeeds;
    when it fails, DBOS runs it again as the checkpointed ``batch_step``, and a
    transient fault then costs nothing but the retry."""
    from dbos import DBOS

    from accord.errors import TransientError
    from accord.runtime.dlq import dead_letters
    from accord.runtime.pipeline import InboundEvent, passthrough

    failures = []

    def flaky(event: InboundEvent) -> object:
        if not failures:
            failures.append(event.event_id)
            raise TransientError("the mapping service blinked")
        return passthrough(event)

    hub.pipeline.ingest("crm", "ok-1", "account.updated", account_event(1))
    assert hub.worker.drain(30)
    hub.pipeline.handlers["crm"] = flaky  # type: ignore[assignment]
    hub.pipeline.ingest("crm", "flaky-1", "account.updated", account_event(2))
    assert hub.worker.drain(30)
    assert failures == ["flaky-1"]
    assert dead_letters(hub.engine) == []
    assert count(hub, records) == 2
    assert recorder.stats()["objects"] == 2
    steps = {
        workflow.workflow_id: [
            step["function_name"] for step in DBOS.list_workflow_steps(workflow.workflow_id)
        ]
        for workflow in DBOS.list_workflows()
        if workflow.workflow_id.startswith("batch-")
    }
    # the batch that went through ran no step; the one that failed, one
    assert sorted(steps.values()) == [[], ["batch_step"]]
    assert all(w.status == "SUCCESS" for w in DBOS.list_workflows() if w.workflow_id in steps)


def test_failed_workflow_is_dead_lettered_and_forked_from_its_failed_step(
    hub: Hub, recorder: RecorderServer
) -> None:
    from accord.errors import TransientError
    from accord.runtime.dlq import dead_letters, replay
    from accord.runtime.pipeline import InboundEvent, passthrough

    def down(event: InboundEvent) -> list[object]:
        raise TransientError("the mapping service is down")

    hub.pipeline.handlers["crm"] = down  # type: ignore[assignment]
    hub.pipeline.ingest("crm", "e1", "account.updated", account_event(1))
    deadline = __import__("time").monotonic() + 30
    while not dead_letters(hub.engine) and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    hub.worker.stop()
    letters = dead_letters(hub.engine)
    assert letters and letters[0].kind == "workflow"
    hub.pipeline.handlers["crm"] = passthrough
    result = replay(hub.engine, letters[0].id)
    assert result["from_step"] >= 1 and result["result"]["applied"] == 1
    assert recorder.stats()["objects"] == 1


def test_a_batch_that_fails_is_applied_event_by_event_isolating_the_bad_one(
    hub: Hub, recorder: RecorderServer
) -> None:
    from accord.runtime.dlq import dead_letters
    from accord.runtime.pipeline import InboundEvent, passthrough

    def sets_are_not_json(event: InboundEvent) -> object:
        upserts = list(passthrough(event))
        if event.event_id == "bad":  # slips past the mapping, fails at the store
            upserts[0] = type(upserts[0])("account", "Account", "BAD", {"tags": {"a", "b"}})
        return upserts

    hub.worker.stop()
    hub.pipeline.handlers["crm"] = sets_are_not_json  # type: ignore[assignment]
    for event_id in ("ok-1", "bad", "ok-2"):
        hub.pipeline.ingest("crm", event_id, "account.updated", account_event(len(event_id)))
    seqs = [seq for seq, _ in hub.pipeline.claim(10, __import__("datetime").timedelta(seconds=30))]
    outcome = hub.pipeline.apply_batch(seqs)
    assert hub.pipeline.fallbacks == 1
    assert (outcome.applied, outcome.dead) == (2, 1)
    (letter,) = dead_letters(hub.engine, include_workflows=False)
    assert letter.context["event_id"] == "bad"


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        # one worker process holds the store: each claim takes all that is due
        ("sqlite", [40, 40, 40, 30, 0, 0, 0]),
        # workers share the store: full claims double, so they share a burst
        ("postgresql", [10, 20, 40, 40, 40, 0, 0]),
    ],
)
def test_batches_grow_while_a_backlog_lasts_and_shrink_when_it_is_gone(
    tmp_path: Path,
    recorder: RecorderServer,
    request: pytest.FixtureRequest,
    store: str,
    expected: list[int],
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'accord.db'}"
        if store == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    settings = Settings.model_validate(
        {
            "database_url": url,
            "runtime": {"batch_size": 10, "max_batch_size": 40, "batch_wait_ms": 5},
        }
    )
    hub = build_hub(
        settings,
        vendors={"erp": IdempotentHttpVendor(recorder.url)},
        routes=[Route("account", "erp", "upsert_customer")],
        policy=POLICY,
    )
    hub.start(dispatch=False)  # no dispatcher threads: this test claims
    try:
        hub.pipeline.ingest_many(
            [
                {
                    "system": "crm",
                    "event_id": f"burst-{i}",
                    "event_type": "account.updated",
                    "payload": account_event(i),
                }
                for i in range(150)
            ]
        )
        sizes = [hub.worker.run_once() for _ in range(7)]
        assert sizes == expected
        # the backlog is gone: the next event goes in a small, quick batch again
        hub.pipeline.ingest("crm", "late-1", "account.updated", account_event(500))
        assert hub.worker.run_once() == 1
        assert count(hub, records) == 151
        assert recorder.stats()["objects"] == 151
    finally:
        hub.stop()


def test_the_largest_batch_is_at_least_the_batch_size() -> None:
    assert Settings.model_validate({"runtime": {"batch_size": 5000}}).runtime.largest_batch == 5000
    assert Settings.model_validate({}).runtime.largest_batch == 1000
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings.model_validate({"runtime": {"batch_size": 500, "max_batch_size": 100}})


def test_the_hub_runs_the_cyclic_collector_less_often_and_puts_it_back(tmp_path: Path) -> None:
    before = gc.get_threshold()
    settings = Settings.model_validate(
        {"database_url": f"sqlite:///{tmp_path / 'accord.db'}", "runtime": {"gc_threshold": 12345}}
    )
    hub = build_hub(settings, vendors={}, routes=[], policy=POLICY)
    hub.start(dispatch=False)
    try:
        assert gc.get_threshold() == (12345, 50, 1000)
    finally:
        hub.stop()
    assert gc.get_threshold() == before
    untouched = Settings.model_validate(
        {"database_url": f"sqlite:///{tmp_path / 'other.db'}", "runtime": {"gc_threshold": 0}}
    )
    hub = build_hub(untouched, vendors={}, routes=[], policy=POLICY)
    hub.start(dispatch=False)
    try:
        assert gc.get_threshold() == before
    finally:
        hub.stop()


def test_a_waiting_dispatcher_is_woken_by_the_events_this_process_stores(hub: Hub) -> None:
    pipeline = hub.pipeline
    mark = pipeline.arrivals
    woke: list[int] = []
    waiter = threading.Thread(
        target=lambda: woke.append(pipeline.wait_for_arrivals(mark, 2, timeout=3600))
    )
    waiter.start()
    pipeline.ingest("crm", "wake-1", "account.updated", account_event(901))
    pipeline.ingest("crm", "wake-1", "account.updated", account_event(901))  # a redelivery
    pipeline.ingest_many(
        [
            {
                "system": "crm",
                "event_id": "wake-2",
                "event_type": "account.updated",
                "payload": account_event(902),
            }
        ]
    )
    waiter.join(timeout=30)
    assert not waiter.is_alive()  # woken by the second new event, not by its hour-long timeout
    assert woke == [mark + 2]
    # nothing more arrives: a short wait runs out and reports the same mark
    assert pipeline.wait_for_arrivals(mark + 2, 1, timeout=0.01) == mark + 2


def test_waiting_dispatchers_are_each_woken_when_their_own_batch_can_fill(hub: Hub) -> None:
    """Intake wakes waiters only once the smallest count one waits for is
    reached; each returns when its own is, not before."""
    pipeline = hub.pipeline
    mark = pipeline.arrivals
    woke: dict[str, int] = {}

    def wait(name: str, count: int) -> None:
        woke[name] = pipeline.wait_for_arrivals(mark, count, timeout=3600)

    waiters = [
        threading.Thread(target=wait, args=("one", 1)),
        threading.Thread(target=wait, args=("three", 3)),
    ]
    for waiter in waiters:
        waiter.start()
    pipeline.ingest("crm", "fill-1", "account.updated", account_event(911))
    waiters[0].join(timeout=30)
    assert woke == {"one": mark + 1}
    pipeline.ingest("crm", "fill-2", "account.updated", account_event(912))
    waiters[1].join(timeout=0.2)
    assert waiters[1].is_alive()  # two of its three: still waiting
    pipeline.ingest("crm", "fill-3", "account.updated", account_event(913))
    waiters[1].join(timeout=30)
    assert woke == {"one": mark + 1, "three": mark + 3}
