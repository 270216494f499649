"""The quota governor, on simulated time, in memory and in the store.

Every behaviour test runs three times: ``memory`` (:class:`MemoryGovernor`),
``sqlite`` (:class:`DbGovernor` on a migrated SQLite file) and ``postgresql``
(:class:`DbGovernor` on a fresh database from the ``postgres_url`` fixture).
Where a test needs "another worker", the database backends build a second
governor on the same engine, which shares nothing with the first but the
database; in memory it is the same governor. Time is :class:`VirtualTime`:
threads sleep on it, and it jumps to the next wake-up once every thread sleeps,
so a simulated day takes milliseconds. One test runs two real OS processes on
real time against one SQLite file.
"""

from __future__ import annotations

import bisect
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from accord.connectors.governor import (
    DEFAULT_QUOTAS,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    DbGovernor,
    Governor,
    MemoryGovernor,
    QuotaPolicy,
    quota_policies,
)
from accord.errors import InvalidInput, TransientError
from accord.store import make_engine, upgrade

T = TypeVar("T")

START = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
DAY = 86_400.0


class VirtualTime:
    """Simulated time shared by threads.

    ``sleep`` blocks the calling thread until the clock reaches its deadline; the
    clock jumps to the earliest deadline as soon as every taking-part thread is
    asleep. The test's own thread takes part, except while :meth:`run` waits.
    """

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._cond = threading.Condition()
        self._live = 1
        self._deadlines: list[float] = []

    def clock(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            deadline = self._now + max(seconds, 0.0)
            self._deadlines.append(deadline)
            try:
                self._advance()
                while self._now < deadline:
                    if not self._cond.wait(timeout=30):
                        raise RuntimeError("virtual time is stuck")
            finally:
                self._deadlines.remove(deadline)

    def _advance(self) -> None:
        asleep = [deadline for deadline in self._deadlines if deadline > self._now]
        if asleep and len(asleep) >= self._live:
            self._now = min(asleep)
            self._cond.notify_all()

    def run(self, *work: Callable[[], T]) -> list[T]:
        """Run each callable in a thread of its own; return their results in order."""
        results: dict[int, T] = {}
        errors: list[BaseException] = []

        def body(index: int, job: Callable[[], T]) -> None:
            try:
                results[index] = job()
            except BaseException as exc:  # re-raised in the test's thread
                errors.append(exc)
            finally:
                with self._cond:
                    self._live -= 1
                    self._advance()

        with self._cond:
            self._live += len(work) - 1
        threads = [threading.Thread(target=body, args=(i, job)) for i, job in enumerate(work)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with self._cond:
            self._live += 1
        if errors:
            raise errors[0]
        return [results[i] for i in range(len(work))]


@dataclass
class Backend:
    name: str
    time: VirtualTime
    engine: Engine | None = None

    def governor(self, policies: Mapping[str, QuotaPolicy], **options: Any) -> Governor:
        options = {"clock": self.time.clock, "sleep": self.time.sleep, **options}
        if self.engine is None:
            return MemoryGovernor(policies, **options)
        return DbGovernor(self.engine, policies, **options)

    def peer(self, governor: Governor) -> Governor:
        """Another worker's governor over the same state (in memory: the same one)."""
        if self.engine is None:
            return governor
        return DbGovernor(
            self.engine,
            governor.policies,
            breaker=governor.breaker,
            clock=self.time.clock,
            sleep=self.time.sleep,
            poll_interval=governor.poll_interval,
            slot_lease=governor.slot_lease,
            max_wait=governor.max_wait,
        )


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", VirtualTime())
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'accord.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield Backend(request.param, VirtualTime(), engine)
    finally:
        engine.dispose()


def most_in_any_span(times: list[float], length: float) -> int:
    """The most grants that any half-open span ``[t, t + length)`` holds."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + length) - i for i, t in enumerate(ordered)), default=0
    )


# --------------------------------------------------------------------------- budgets


def test_no_window_and_no_concurrency_limit_is_ever_exceeded(backend: Backend) -> None:
    policy = QuotaPolicy(per_second=5, per_minute=40, per_day=120, concurrency=3)
    governor = backend.governor({"acme": policy}, poll_interval=0.25)
    vt = backend.time
    granted: list[float] = []
    holding = 0
    most_held = 0
    lock = threading.Lock()

    def worker(seed: int) -> int:
        nonlocal holding, most_held
        rng = random.Random(seed)
        mine = backend.peer(governor)
        for _ in range(35):
            mine.acquire("acme", priority=rng.choice((1, 5, 9)))
            with lock:
                granted.append(vt.clock())
                holding += 1
                most_held = max(most_held, holding)
            vt.sleep(rng.uniform(0.0, 0.4))
            with lock:
                holding -= 1
            mine.release("acme")
        return seed

    assert vt.run(*(lambda seed=seed: worker(seed) for seed in range(4))) == [0, 1, 2, 3]

    assert len(granted) == 140
    assert most_in_any_span(granted, 1) <= 5
    assert most_in_any_span(granted, 60) <= 40
    assert most_in_any_span(granted, DAY) <= 120
    assert most_held <= 3
    # The budget was used, not just respected: the first 120 went in the first day.
    assert sorted(granted)[119] - START < 3600
    assert sorted(granted)[120] - START >= DAY


def test_a_spent_daily_budget_pauses_the_work_until_the_window_reopens(backend: Backend) -> None:
    governor = backend.governor({"acme": QuotaPolicy(per_day=3)})
    vt = backend.time
    for _ in range(3):
        governor.acquire("acme")
        governor.release("acme")
    assert governor.status("acme").used == {"day": 3}

    governor.acquire("acme")  # blocks (simulated) instead of failing

    waited = vt.clock() - START
    assert DAY <= waited <= DAY + 600 + 1  # reopens when the first 10-minute bucket leaves
    assert governor.status("acme").used == {"day": 1}


def test_a_window_counts_every_span_not_calendar_intervals(backend: Backend) -> None:
    governor = backend.governor({"acme": QuotaPolicy(per_minute=2)})
    vt = backend.time
    vt.sleep(59.5)  # just before a minute boundary
    times = []
    for _ in range(4):
        governor.acquire("acme")
        times.append(vt.clock() - START)
        governor.release("acme")
    # A fixed window would have let two more through at 60 s.
    assert times[:2] == [59.5, 59.5]
    assert times[2] > 59.5 + 60
    assert most_in_any_span(times, 60) == 2


def test_lower_priority_numbers_are_served_first(backend: Backend) -> None:
    governor = backend.governor({"acme": QuotaPolicy(per_minute=1)})
    vt = backend.time
    governor.acquire("acme")
    governor.release("acme")
    served: list[int] = []

    def caller(priority: int) -> None:
        mine = backend.peer(governor)
        mine.acquire("acme", priority)
        served.append(priority)
        mine.release("acme")

    vt.run(*(lambda p=p: caller(p) for p in (9, 5, 1, 7)))

    assert served == [1, 5, 7, 9]
    assert governor.status("acme").waiting == 0


def test_a_waiter_is_not_held_back_when_there_is_room_for_it_too(backend: Backend) -> None:
    governor = backend.governor({"acme": QuotaPolicy(concurrency=2)}, poll_interval=0.2)
    vt = backend.time
    started: dict[str, float] = {}

    def call(name: str, priority: int, delay: float, hold: float) -> None:
        vt.sleep(delay)
        mine = backend.peer(governor)
        mine.acquire("acme", priority)
        started[name] = vt.clock() - START
        vt.sleep(hold)
        mine.release("acme")

    vt.run(
        lambda: call("holder", 5, 0, 5),
        lambda: call("other holder", 5, 0, 5),
        lambda: call("urgent", 1, 1, 1),
        lambda: call("enrichment", 9, 2, 1),
    )
    # Two slots free at 5 s and one urgent waiter: enrichment takes the other.
    assert 5 <= started["urgent"] <= 5.2
    assert 5 <= started["enrichment"] <= 5.2


# --------------------------------------------------------------------------- Retry-After


def test_retry_after_pauses_the_vendor_for_every_caller(backend: Backend) -> None:
    governor = backend.governor({})
    vt = backend.time
    governor.acquire("acme")
    governor.release("acme", retry_after=30, ok=False)

    status = governor.status("acme")
    assert status.paused_until == pytest.approx(START + 30)
    assert status.failures == 0  # a vendor that says when to come back is not down

    other = backend.peer(governor)
    other.acquire("acme")  # waits, does not fail
    assert vt.clock() == pytest.approx(START + 30, abs=0.01)
    assert other.status("acme").paused_until is None


def test_a_shorter_retry_after_does_not_shorten_a_longer_pause(backend: Backend) -> None:
    governor = backend.governor({})
    for delay in (40.0, 5.0):
        governor.acquire("acme")
        governor.release("acme", retry_after=delay, ok=False)
    assert governor.status("acme").paused_until == pytest.approx(START + 40)


def test_a_pause_of_one_vendor_leaves_the_others_alone(backend: Backend) -> None:
    governor = backend.governor({})
    governor.acquire("acme")
    governor.release("acme", retry_after=300, ok=False)
    governor.acquire("other")
    assert backend.time.clock() == START


# --------------------------------------------------------------------------- circuit breaker


def fail(governor: Governor, times: int) -> None:
    for _ in range(times):
        governor.acquire("acme")
        governor.release("acme", ok=False)


def test_the_circuit_opens_after_repeated_failures_and_refuses_with_retry_after(
    backend: Backend,
) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down=60, probe_timeout=15)
    governor = backend.governor({}, breaker=breaker)
    vt = backend.time
    fail(governor, 3)
    assert governor.status("acme").breaker is BreakerState.OPEN

    with pytest.raises(CircuitOpen) as refused:
        backend.peer(governor).acquire("acme")
    assert isinstance(refused.value, TransientError) and refused.value.retryable
    assert refused.value.retry_after == pytest.approx(60)

    vt.sleep(20)
    with pytest.raises(TransientError) as later:
        governor.acquire("acme")
    assert later.value.retry_after == pytest.approx(40)
    assert governor.status("acme").waiting == 0


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_the_circuit(
    backend: Backend,
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cool_down=60, probe_timeout=15)
    governor = backend.governor({}, breaker=breaker)
    vt = backend.time
    fail(governor, 2)
    vt.sleep(60)

    governor.acquire("acme")  # the probe
    assert governor.status("acme").breaker is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen) as meanwhile:
        backend.peer(governor).acquire("acme")
    assert meanwhile.value.retry_after == pytest.approx(15)

    governor.release("acme", ok=True)
    assert governor.status("acme").breaker is BreakerState.CLOSED
    backend.peer(governor).acquire("acme")
    backend.peer(governor).acquire("acme")


def test_a_failed_probe_opens_the_circuit_for_another_cool_down(backend: Backend) -> None:
    governor = backend.governor({}, breaker=CircuitBreaker(failure_threshold=2, cool_down=60))
    vt = backend.time
    fail(governor, 2)
    vt.sleep(61)
    governor.acquire("acme")
    governor.release("acme", ok=False)

    with pytest.raises(CircuitOpen) as refused:
        governor.acquire("acme")
    assert refused.value.retry_after == pytest.approx(60)


def test_a_probe_that_never_reports_back_lets_another_caller_probe(backend: Backend) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cool_down=10, probe_timeout=15)
    governor = backend.governor({}, breaker=breaker)
    vt = backend.time
    fail(governor, 1)
    vt.sleep(10)
    governor.acquire("acme")  # the probe's worker dies: no release
    vt.sleep(15)
    backend.peer(governor).acquire("acme")
    assert governor.status("acme").breaker is BreakerState.HALF_OPEN


def test_a_success_resets_the_count_of_consecutive_failures(backend: Backend) -> None:
    governor = backend.governor({}, breaker=CircuitBreaker(failure_threshold=3))
    fail(governor, 2)
    governor.acquire("acme")
    governor.release("acme", ok=True)
    fail(governor, 2)
    status = governor.status("acme")
    assert (status.breaker, status.failures) == (BreakerState.CLOSED, 2)


# --------------------------------------------------------------------------- concurrency


def test_concurrency_slots_are_shared_by_every_worker_and_given_back(backend: Backend) -> None:
    governor = backend.governor({"acme": QuotaPolicy(concurrency=2)}, poll_interval=0.2)
    vt = backend.time
    started: dict[str, float] = {}

    def call(name: str, delay: float, hold: float) -> None:
        vt.sleep(delay)
        mine = backend.peer(governor)
        mine.acquire("acme")
        started[name] = vt.clock() - START
        vt.sleep(hold)
        mine.release("acme")

    vt.run(
        lambda: call("a", 0, 10),
        lambda: call("b", 0, 12),
        lambda: call("c", 1, 1),
        lambda: call("d", 2, 1),
    )

    assert started["a"] == started["b"] == 0
    # c and d wait for a slot; whichever gets a's slot at 10 s frees it at 11 s.
    first, second = sorted((started["c"], started["d"]))
    assert 10 <= first <= 10.2
    assert 11 <= second <= 11.4
    assert governor.status("acme").inflight == 0


def test_a_slot_never_given_back_is_reclaimed_when_its_lease_runs_out(backend: Backend) -> None:
    governor = backend.governor(
        {"acme": QuotaPolicy(concurrency=1)}, slot_lease=30, poll_interval=0.5
    )
    governor.acquire("acme")  # its worker dies: no release
    backend.peer(governor).acquire("acme")
    assert 30 <= backend.time.clock() - START <= 30.5


def test_max_wait_turns_a_long_wait_into_a_transient_error(backend: Backend) -> None:
    governor = backend.governor({"acme": QuotaPolicy(per_day=1)}, max_wait=60)
    governor.acquire("acme")
    governor.release("acme")
    with pytest.raises(TransientError) as refused:
        governor.acquire("acme")
    assert DAY <= (refused.value.retry_after or 0) <= DAY + 600
    assert backend.time.clock() == START  # refused at once, without sleeping
    assert governor.status("acme").waiting == 0


# --------------------------------------------------------------------------- policies


def test_the_defaults_are_the_published_limits() -> None:
    assert DEFAULT_QUOTAS["salesforce"] == QuotaPolicy(per_day=100_000)
    assert DEFAULT_QUOTAS["netsuite"] == QuotaPolicy(concurrency=15)
    assert DEFAULT_QUOTAS["hubspot"] == QuotaPolicy(per_second=10, per_day=250_000)
    assert DEFAULT_QUOTAS["stripe"] == QuotaPolicy(per_second=100)
    assert DEFAULT_QUOTAS["xero"] == QuotaPolicy(per_minute=60, per_day=5_000, concurrency=5)
    assert DEFAULT_QUOTAS["quickbooks"] == QuotaPolicy(per_second=10, per_minute=500)
    assert DEFAULT_QUOTAS["harvest"] == QuotaPolicy(per_second=6)
    # Harvest allows 100 per 15 s: 6 a second keeps every 15 s span within it.
    assert 15 * DEFAULT_QUOTAS["harvest"].per_second <= 100


@pytest.mark.parametrize(
    "limits",
    [{"per_second": 0}, {"per_minute": -5}, {"per_day": 2.5}, {"concurrency": True}],
    ids=str,
)
def test_a_policy_refuses_limits_that_are_not_positive_whole_numbers(
    limits: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        QuotaPolicy(**limits)


def test_configuration_overrides_apply_on_top_of_the_defaults() -> None:
    policies = quota_policies(
        {"salesforce": {"per_day": 150_000.0}, "stripe": {"per_second": 25}, "acme": {}}
    )
    assert policies["salesforce"] == QuotaPolicy(per_day=150_000)
    assert policies["stripe"].per_second == 25
    assert policies["acme"].unlimited
    assert policies["xero"] == DEFAULT_QUOTAS["xero"]
    assert DEFAULT_QUOTAS["salesforce"].per_day == 100_000


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"per_hour": 10}, "per_hour"), ({"per_day": 0.5}, "per_day")],
)
def test_a_bad_override_is_refused_naming_its_key(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        QuotaPolicy().with_overrides(overrides)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"quota.{field}: ")


def test_a_breaker_refuses_a_threshold_below_one() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


# --------------------------------------------------------------------------- real processes


def _burst(url: str, count: int, start: Any, results: Any) -> None:
    """One worker process: ``count`` calls as fast as the shared governor allows."""
    engine = make_engine(url)
    readings: list[float] = []

    def clock() -> float:
        readings.append(time.time())
        return readings[-1]

    governor = DbGovernor(engine, {"acme": QuotaPolicy(per_second=20)}, clock=clock)
    granted = []
    start.wait(timeout=60)
    for _ in range(count):
        governor.acquire("acme")
        granted.append(readings[-1])  # the time the grant was decided at
        # the call itself, however short: with none, one process's release and
        # next acquire follow back to back, and the other, asleep in SQLite's
        # busy handler, could miss every gap between them
        time.sleep(0.002)
        governor.release("acme")
    engine.dispose()
    results.put(granted)


def test_two_processes_sharing_one_sqlite_file_share_one_budget(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'accord.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=_burst, args=(url, 30, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        granted = [results.get(timeout=60), results.get(timeout=60)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
        results.close()
        results.join_thread()
    assert [worker.exitcode for worker in workers] == [0, 0]

    every = granted[0] + granted[1]
    assert len(every) == 60
    assert most_in_any_span(every, 1.0) <= 20
    # The two processes were granted calls over the same stretch of time.
    assert max(min(granted[0]), min(granted[1])) < min(max(granted[0]), max(granted[1]))
