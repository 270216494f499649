"""The quota governor: one API budget per vendor account, shared by all work.

Every connector call passes through :meth:`Governor.acquire` before it is sent
and :meth:`Governor.release` after (``Connector.request`` does both), so the
governor sees all traffic to a vendor and keeps it inside the vendor's published
limits — per second, per minute, per rolling day and in flight at once — instead
of discovering them through 429s. What it does, in order, on each acquire:

1. **Circuit breaker.** After ``failure_threshold`` consecutive failures the
   vendor is presumed down: acquire fails at once with
   :class:`CircuitOpen` (a :class:`~accord.errors.TransientError` whose
   ``retry_after`` is the cool-down left), so workflows back off instead of
   hammering it. After the cool-down one caller is let through as a probe; its
   success closes the circuit, its failure opens it again.
2. **Pause.** A ``Retry-After`` reported to :meth:`Governor.release` pauses the
   vendor for every caller in every process until it has passed; acquire waits,
   it does not fail.
3. **Budget.** Each window is rolling and counted in buckets; a call counts
   against a window until its whole bucket has left it. So no span of the
   window's length, wherever it starts, ever holds more calls than the limit,
   whether the vendor counts in fixed or in sliding windows. When a window is
   spent, acquire sleeps until the oldest bucket leaves it — for a spent daily
   budget, hours — and then goes on: the work pauses, it does not fail.
4. **Concurrency.** A slot per call in flight, given back by release. A slot
   is leased (``slot_lease``): one held by a process that died is reclaimed when
   the lease runs out.
5. **Priority.** Lower numbers go first (payments and invoices 1, enrichment
   9). A caller that has to wait registers with its priority; a caller may only
   take capacity that is not needed by the registered waiters of a higher
   priority. Among equal priorities the order is not guaranteed.

Two implementations with the same semantics (they share the decision code):
:class:`MemoryGovernor` keeps the state in the process (tests, the embedded
mode with one process); :class:`DbGovernor` keeps it in the store's
``quota_usage`` and ``quota_state`` tables, so that every worker process on any
machine shares one budget. Each of its steps is one short transaction that
first updates the vendor's ``quota_state`` row — which serialises the
governors of all processes on that vendor, on SQLite and PostgreSQL alike —
and then charges each window with ``UPDATE … SET used = used + 1 WHERE used <
cap RETURNING used``.

Time is injectable: ``clock`` returns seconds since the epoch (like
:func:`time.time`) and ``sleep`` waits (like :func:`time.sleep`). Pass both to
run the governor on simulated time; with the default real time a waiter is
also woken early by a release in its own process.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row

from accord.errors import InvalidInput, TransientError
from accord.store.quota_tables import quota_state, quota_usage

__all__ = [
    "DEFAULT_QUOTAS",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "DbGovernor",
    "Governor",
    "MemoryGovernor",
    "QuotaPolicy",
    "VendorStatus",
    "quota_policies",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """A vendor account's API budget; every limit is optional (``None``: no limit).

    Windows are rolling, never calendar-aligned: a limit holds for *every* span of
    the window's length. A vendor that publishes "N per k seconds" is written
    ``per_second=N // k`` (HubSpot's 100 per 10 s is ``per_second=10``).
    """

    per_second: int | None = None
    """Calls in any span of one second (counted in 10 ms buckets)."""
    per_minute: int | None = None
    """Calls in any span of 60 seconds (counted in 600 ms buckets)."""
    per_day: int | None = None
    """Calls in any **rolling 24 hours**, not per calendar day (counted in 10-minute
    buckets): how Salesforce counts its daily API budget. Against a vendor that
    resets at midnight it is safe too, but yesterday evening's calls still count
    this morning."""
    concurrency: int | None = None
    """Calls in flight at once, across every worker (NetSuite's slots, Xero's 5)."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{spec.name} must be a positive whole number or None: {value!r}")

    @property
    def unlimited(self) -> bool:
        """True when the policy limits nothing."""
        return all(getattr(self, spec.name) is None for spec in fields(self))

    def with_overrides(self, overrides: Mapping[str, float | int | None]) -> QuotaPolicy:
        """This policy with the limits that ``accord.yaml`` overrides (``systems.X.quota``).

        A key that is not a limit, or a value that is not a positive whole number
        (or ``None`` to lift the limit), is refused with the key named.
        """
        known = {spec.name for spec in fields(self)}
        changes: dict[str, int | None] = {}
        for key, value in overrides.items():
            if key not in known:
                raise InvalidInput(
                    f"unknown quota limit {key!r} (one of {', '.join(sorted(known))})",
                    record="quota",
                    field=key,
                )
            if value is None:
                changes[key] = None
                continue
            if (
                isinstance(value, bool)
                or not math.isfinite(value)
                or value != int(value)
                or value < 1
            ):
                raise InvalidInput(
                    f"must be a positive whole number, not {value!r}", record="quota", field=key
                )
            changes[key] = int(value)
        return replace(self, **changes)


#: The published limits of each vendor (``shared/specs/README.md``), for one
#: account on its standard tier. Override per system in ``accord.yaml``.
DEFAULT_QUOTAS: Mapping[str, QuotaPolicy] = MappingProxyType(
    {
        # Org-wide rolling 24 h budget: 100,000 plus a share per licence.
        "salesforce": QuotaPolicy(per_day=100_000),
        # Per-account concurrency slots (15 on the shared tier), shared with
        # every other integration of the account.
        "netsuite": QuotaPolicy(concurrency=15),
        # 100 per 10 s per app; 250,000 a day on the lowest tier.
        "hubspot": QuotaPolicy(per_second=10, per_day=250_000),
        # 100 per second in live mode (25 in test mode).
        "stripe": QuotaPolicy(per_second=100),
        # Per tenant: 5 in flight, 60 a minute, 5,000 a day.
        "xero": QuotaPolicy(per_minute=60, per_day=5_000, concurrency=5),
        # Per company: 10 a second, 500 a minute.
        "quickbooks": QuotaPolicy(per_second=10, per_minute=500),
        # 100 per 15 s: 6 a second is the most that keeps every 15 s span at 100.
        "harvest": QuotaPolicy(per_second=6),
    }
)


def quota_policies(
    overrides: Mapping[str, Mapping[str, float | int | None]] | None = None,
    defaults: Mapping[str, QuotaPolicy] = DEFAULT_QUOTAS,
) -> dict[str, QuotaPolicy]:
    """The policy of every vendor: the defaults with ``accord.yaml``'s overrides applied.

    >>> quota_policies({"stripe": {"per_second": 25}})["stripe"]
    QuotaPolicy(per_second=25, per_minute=None, per_day=None, concurrency=None)
    """
    policies = dict(defaults)
    for vendor, limits in (overrides or {}).items():
        policies[vendor] = policies.get(vendor, QuotaPolicy()).with_overrides(limits)
    return policies


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """When to stop calling a vendor that is down, and how to find out it is back."""

    failure_threshold: int = 5
    """Consecutive failed calls (``release(ok=False)`` without ``retry_after``) that
    open the circuit."""
    cool_down: float = 30.0
    """Seconds the circuit stays open; meanwhile acquire fails at once with the
    time left as ``retry_after``."""
    probe_timeout: float = 15.0
    """Seconds the one half-open probe may take before another caller may probe
    instead (its worker may have died); a little over a connector's timeout.
    Other callers are refused meanwhile, with the time left as ``retry_after``."""

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cool_down < 0 or self.probe_timeout <= 0:
            raise ValueError("cool_down must not be negative and probe_timeout must be positive")


class BreakerState(StrEnum):
    CLOSED = "closed"
    """Calls flow; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """One probe call is in flight; its outcome closes or reopens the circuit."""


class CircuitOpen(TransientError):
    """The vendor's circuit is open: do not call it before ``retry_after`` seconds."""

    def __init__(self, vendor: str, message: str, *, retry_after: float) -> None:
        super().__init__(f"{vendor}: {message}", retry_after=retry_after)
        self.vendor = vendor


@dataclass(frozen=True, slots=True)
class VendorStatus:
    """What the governor knows about one vendor now (for metrics, the CLI, tests)."""

    vendor: str
    used: Mapping[str, int]
    """Calls counted now in each window of the policy (``second``, ``minute``, ``day``)."""
    inflight: int
    paused_until: float | None
    breaker: BreakerState
    failures: int
    waiting: int
    """Callers registered as waiting."""


# --------------------------------------------------------------------------- the decisions


@dataclass(frozen=True, slots=True)
class _Window:
    name: str
    length_ms: int
    bucket_ms: int

    def bucket(self, now_ms: float) -> int:
        return int(now_ms // self.bucket_ms) * self.bucket_ms

    def counts(self, start_ms: int, now_ms: float) -> bool:
        """Whether the bucket starting at ``start_ms`` still counts at ``now_ms``."""
        return start_ms + self.bucket_ms > now_ms - self.length_ms

    def reopens(self, start_ms: int) -> float:
        """When the bucket starting at ``start_ms`` stops counting (epoch seconds)."""
        return (start_ms + self.bucket_ms + self.length_ms) / 1000


# A bucket is about a hundredth of its window: a call counts for at most one
# bucket longer than the window, so the governor can use about 99 % of a rate.
_SECOND = _Window("second", 1_000, 10)
_MINUTE = _Window("minute", 60_000, 600)
_DAY = _Window("day", 86_400_000, 600_000)
_WINDOWS = (_SECOND, _MINUTE, _DAY)
_UNLIMITED = QuotaPolicy()
#: The shortest pause between two attempts, against float rounding and spinning.
_MIN_PAUSE = 0.001


def _limits(policy: QuotaPolicy) -> list[tuple[_Window, int]]:
    pairs = ((_SECOND, policy.per_second), (_MINUTE, policy.per_minute), (_DAY, policy.per_day))
    return [(window, limit) for window, limit in pairs if limit is not None]


@dataclass(slots=True)
class _Charge:
    """One call granted against one bucket, which may then hold at most ``cap``."""

    window: str
    start_ms: int
    cap: int


@dataclass(slots=True)
class _State:
    """One vendor's quota state, as both implementations hold it during a step."""

    paused_until: float | None = None
    leases: list[float] = field(default_factory=list)
    breaker: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float | None = None
    waiters: dict[str, tuple[int, float]] = field(default_factory=dict)
    usage: dict[str, dict[int, int]] = field(default_factory=dict)
    charges: list[_Charge] = field(default_factory=list)

    def expire(self, now: float) -> None:
        """Forget what has run out: leases, registrations, the pause, old buckets."""
        self.leases = [lease for lease in self.leases if lease > now]
        self.waiters = {key: entry for key, entry in self.waiters.items() if entry[1] > now}
        if self.paused_until is not None and self.paused_until <= now:
            self.paused_until = None
        now_ms = now * 1000
        for window in _WINDOWS:
            buckets = self.usage.get(window.name)
            if buckets is None:
                continue
            for start in [s for s in buckets if not window.counts(s, now_ms)]:
                del buckets[start]
            if not buckets:
                del self.usage[window.name]

    def used(self, window: _Window, now: float) -> int:
        now_ms = now * 1000
        buckets = self.usage.get(window.name, {})
        return sum(used for start, used in buckets.items() if window.counts(start, now_ms))


@dataclass(frozen=True, slots=True)
class _Outcome:
    granted: bool = False
    wait_until: float | None = None
    """Not granted: when to try again."""
    error: TransientError | None = None
    """Not granted: fail now with this."""


@dataclass(frozen=True, slots=True)
class _Rules:
    policy: QuotaPolicy
    breaker: CircuitBreaker
    poll_interval: float
    slot_lease: float
    waiter_grace: float


def _admit(
    vendor: str, state: _State, rules: _Rules, now: float, priority: int, waiter: str
) -> _Outcome:
    """Grant one call now, or say how long to wait, or refuse (circuit open)."""
    state.expire(now)
    probe = False
    if state.breaker is not BreakerState.CLOSED:
        since = state.opened_at if state.opened_at is not None else now
        if state.breaker is BreakerState.OPEN:
            until = since + rules.breaker.cool_down
            why = "circuit open after repeated failures"
        else:
            until = since + rules.breaker.probe_timeout
            why = "circuit half-open, a probe is in flight"
        if now < until:
            state.waiters.pop(waiter, None)
            return _Outcome(error=CircuitOpen(vendor, why, retry_after=until - now))
        probe = True

    def wait(until: float) -> _Outcome:
        state.waiters[waiter] = (priority, until + rules.waiter_grace)
        return _Outcome(wait_until=until)

    if state.paused_until is not None:
        return wait(state.paused_until)

    limits = _limits(rules.policy)
    capacity = math.inf
    reopen: list[float] = []
    used: dict[str, int] = {}
    now_ms = now * 1000
    for window, limit in limits:
        used[window.name] = state.used(window, now)
        room = limit - used[window.name]
        if room <= 0:
            buckets = state.usage[window.name]
            oldest = min(start for start in buckets if window.counts(start, now_ms))
            reopen.append(window.reopens(oldest) + 1e-6)
        capacity = min(capacity, room)
    if rules.policy.concurrency is not None:
        room = rules.policy.concurrency - len(state.leases)
        if room <= 0:
            reopen.append(now + rules.poll_interval)
        capacity = min(capacity, room)
    if capacity <= 0:
        return wait(max(reopen))
    ahead = sum(1 for key, (p, _) in state.waiters.items() if p < priority and key != waiter)
    if capacity <= ahead:
        return wait(now + rules.poll_interval)

    state.waiters.pop(waiter, None)
    for window, limit in limits:
        start = window.bucket(now_ms)
        buckets = state.usage.setdefault(window.name, {})
        before = buckets.get(start, 0)
        buckets[start] = before + 1
        state.charges.append(_Charge(window.name, start, limit - (used[window.name] - before)))
    bisect.insort(state.leases, now + rules.slot_lease)
    if probe:
        state.breaker, state.opened_at = BreakerState.HALF_OPEN, now
    return _Outcome(granted=True)


def _release(state: _State, rules: _Rules, now: float, retry_after: float | None, ok: bool) -> None:
    """Give the slot back, pause on ``Retry-After``, and feed the breaker."""
    state.expire(now)
    if state.leases:
        # Slots are anonymous: the earliest lease goes. Should it belong to a live
        # call, that call's own lease is the one left, and it runs out in its turn.
        state.leases.pop(0)
    if retry_after is not None and retry_after > 0:
        until = now + retry_after
        if state.paused_until is None or until > state.paused_until:
            state.paused_until = until
    if ok:
        if state.breaker is BreakerState.HALF_OPEN:
            state.breaker, state.opened_at = BreakerState.CLOSED, None
        if state.breaker is BreakerState.CLOSED:
            state.failures = 0
    elif retry_after is None:
        # A call that came with a Retry-After is a vendor that answers: the pause
        # handles it. Failures of calls begun before the circuit opened are ignored.
        if state.breaker is BreakerState.CLOSED:
            state.failures += 1
            if state.failures >= rules.breaker.failure_threshold:
                state.breaker, state.opened_at = BreakerState.OPEN, now
        elif state.breaker is BreakerState.HALF_OPEN:
            state.breaker, state.opened_at = BreakerState.OPEN, now


def _status(vendor: str, state: _State, rules: _Rules, now: float) -> VendorStatus:
    state.expire(now)
    return VendorStatus(
        vendor=vendor,
        used={window.name: state.used(window, now) for window, _ in _limits(rules.policy)},
        inflight=len(state.leases),
        paused_until=state.paused_until,
        breaker=state.breaker,
        failures=state.failures,
        waiting=len(state.waiters),
    )


# --------------------------------------------------------------------------- the governors


class Governor(ABC):
    """The quota governor; satisfies the ``Governor`` protocol of ``connectors.base``.

    ``policies`` maps each vendor (the connector's ``name``) to its
    :class:`QuotaPolicy`, by default :data:`DEFAULT_QUOTAS`; a vendor without one
    is not limited, but still has a circuit breaker. ``max_wait``, when set, caps
    how long acquire blocks: a longer wait raises
    :class:`~accord.errors.TransientError` with ``retry_after`` instead, for a
    caller that would rather sleep durably (a workflow) than hold a thread.
    """

    def __init__(
        self,
        policies: Mapping[str, QuotaPolicy] | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        poll_interval: float = 0.05,
        slot_lease: float = 300.0,
        max_wait: float | None = None,
    ) -> None:
        if poll_interval <= 0 or slot_lease <= 0:
            raise ValueError("poll_interval and slot_lease must be positive")
        if max_wait is not None and max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self.policies: dict[str, QuotaPolicy] = dict(
            DEFAULT_QUOTAS if policies is None else policies
        )
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.poll_interval = poll_interval
        self.slot_lease = slot_lease
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._wake = threading.Condition()

    def policy(self, vendor: str) -> QuotaPolicy:
        return self.policies.get(vendor, _UNLIMITED)

    def _rules(self, vendor: str) -> _Rules:
        return _Rules(
            policy=self.policy(vendor),
            breaker=self.breaker,
            poll_interval=self.poll_interval,
            slot_lease=self.slot_lease,
            # A waiter re-registers on every attempt; one that stops (its process
            # died) stops holding back lower priorities this long after its wake-up.
            waiter_grace=max(20 * self.poll_interval, 2.0),
        )

    @abstractmethod
    def _step(self, vendor: str, change: Callable[[_State, float], T]) -> T:
        """Apply ``change(state, now)`` to the vendor's state atomically.

        ``now`` is read once the state is held, never before.
        """

    def acquire(self, vendor: str, priority: int = 5) -> None:
        """Wait until a call to ``vendor`` fits every limit, then count it.

        Blocks through spent windows, pauses and full slots; raises
        :class:`CircuitOpen` while the vendor's circuit is open.
        """
        rules = self._rules(vendor)
        waiter = uuid.uuid4().hex
        started = self._clock()
        registered = False
        granted = False
        try:
            while True:
                outcome = self._step(
                    vendor, lambda state, now: _admit(vendor, state, rules, now, priority, waiter)
                )
                if outcome.granted:
                    granted = True
                    return
                if outcome.error is not None:
                    registered = False  # the refusal removed the registration
                    raise outcome.error
                assert outcome.wait_until is not None
                registered = True
                now = self._clock()
                if self.max_wait is not None and outcome.wait_until - started > self.max_wait:
                    raise TransientError(
                        f"{vendor}: quota reopens in {outcome.wait_until - now:.1f} s",
                        retry_after=max(outcome.wait_until - now, 0.0),
                    )
                self._pause(max(outcome.wait_until - now, _MIN_PAUSE))
        finally:
            if registered and not granted:
                # Best effort: a registration left behind expires on its own.
                with suppress(Exception):
                    self._step(vendor, lambda state, now: state.waiters.pop(waiter, None))

    def release(self, vendor: str, *, retry_after: float | None = None, ok: bool = True) -> None:
        """The call is over: free its slot, pause on ``retry_after``, feed the breaker.

        ``ok`` says whether the vendor answered as a healthy vendor does; a
        request refused for its own fault (400, 404, 422) is ``ok`` for the breaker.
        """
        rules = self._rules(vendor)
        self._step(vendor, lambda state, now: _release(state, rules, now, retry_after, ok))
        with self._wake:
            self._wake.notify_all()

    def status(self, vendor: str) -> VendorStatus:
        rules = self._rules(vendor)
        return self._step(vendor, lambda state, now: _status(vendor, state, rules, now))

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            return
        with self._wake:
            self._wake.wait(seconds)


class MemoryGovernor(Governor):
    """The governor for one process: state in memory, behind one lock."""

    def __init__(self, policies: Mapping[str, QuotaPolicy] | None = None, **options: Any) -> None:
        super().__init__(policies, **options)
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _step(self, vendor: str, change: Callable[[_State, float], T]) -> T:
        with self._lock:
            state = self._states.setdefault(vendor, _State())
            try:
                return change(state, self._clock())
            finally:
                state.charges.clear()


class _Contended(Exception):
    """A bucket was charged by someone else mid-step; the step is run again."""


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class DbGovernor(Governor):
    """The governor shared by every process that uses the same store.

    The database must be migrated (:func:`accord.store.upgrade`). Each acquire
    and release is one short transaction; waiting happens outside transactions.
    """

    #: How often (clock seconds) a process deletes the buckets that stopped counting.
    prune_every = 60.0

    def __init__(
        self,
        engine: Engine,
        policies: Mapping[str, QuotaPolicy] | None = None,
        **options: Any,
    ) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"DbGovernor runs on SQLite or PostgreSQL, not {engine.dialect.name}")
        super().__init__(policies, **options)
        self.engine = engine
        self._pruned: dict[str, float] = {}

    def _insert_ignoring_conflicts(self, table: Any, values: Mapping[str, Any]) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql_insert(table).values(**values).on_conflict_do_nothing()
        return sqlite_insert(table).values(**values).on_conflict_do_nothing()

    def _ensure(self, conn: Connection, vendor: str) -> None:
        conn.execute(
            self._insert_ignoring_conflicts(
                quota_state,
                {
                    "vendor": vendor,
                    "paused_until": None,
                    "inflight": 0,
                    "leases": [],
                    "breaker": BreakerState.CLOSED.value,
                    "failures": 0,
                    "opened_at": None,
                    "waiters": {},
                    "version": 0,
                },
            )
        )

    def _lock(self, conn: Connection, vendor: str) -> Row[Any] | None:
        # The update takes the row's lock (PostgreSQL) or the database's write
        # lock (SQLite) for the rest of the transaction: the vendor's steps run
        # one at a time across all processes.
        return conn.execute(
            update(quota_state)
            .where(quota_state.c.vendor == vendor)
            .values(version=quota_state.c.version + 1)
            .returning(
                quota_state.c.paused_until,
                quota_state.c.leases,
                quota_state.c.breaker,
                quota_state.c.failures,
                quota_state.c.opened_at,
                quota_state.c.waiters,
            )
        ).one_or_none()

    def _load(self, conn: Connection, vendor: str, row: Row[Any], now: float) -> _State:
        state = _State(
            paused_until=_seconds(row.paused_until),
            leases=sorted(float(lease) for lease in row.leases),
            breaker=BreakerState(row.breaker),
            failures=int(row.failures),
            opened_at=_seconds(row.opened_at),
            waiters={key: (int(p), float(exp)) for key, (p, exp) in row.waiters.items()},
        )
        limits = _limits(self.policy(vendor))
        if limits:
            counting = [
                and_(
                    quota_usage.c.window == window.name,
                    quota_usage.c.window_start
                    > _at(now - (window.length_ms + window.bucket_ms) / 1000),
                )
                for window, _ in limits
            ]
            rows = conn.execute(
                select(quota_usage.c.window, quota_usage.c.window_start, quota_usage.c.used).where(
                    quota_usage.c.vendor == vendor, or_(*counting)
                )
            )
            for name, start, used in rows:
                state.usage.setdefault(name, {})[round(start.timestamp() * 1000)] = int(used)
        return state

    def _store(self, conn: Connection, vendor: str, state: _State) -> None:
        conn.execute(
            update(quota_state)
            .where(quota_state.c.vendor == vendor)
            .values(
                paused_until=None if state.paused_until is None else _at(state.paused_until),
                inflight=len(state.leases),
                leases=state.leases,
                breaker=state.breaker.value,
                failures=state.failures,
                opened_at=None if state.opened_at is None else _at(state.opened_at),
                waiters={key: [p, exp] for key, (p, exp) in state.waiters.items()},
            )
        )

    def _charge(self, conn: Connection, vendor: str, charge: _Charge) -> None:
        start = _at(charge.start_ms / 1000)
        charged = conn.execute(
            update(quota_usage)
            .where(
                quota_usage.c.vendor == vendor,
                quota_usage.c.window == charge.window,
                quota_usage.c.window_start == start,
                quota_usage.c.used < charge.cap,
            )
            .values(used=quota_usage.c.used + 1)
            .returning(quota_usage.c.used)
        ).first()
        if charged is not None:
            return
        created = conn.execute(
            self._insert_ignoring_conflicts(
                quota_usage,
                {"vendor": vendor, "window": charge.window, "window_start": start, "used": 1},
            ).returning(quota_usage.c.used)
        ).first()
        if created is None:
            raise _Contended(vendor)

    def _prune(self, conn: Connection, vendor: str, now: float) -> None:
        if now - self._pruned.get(vendor, -math.inf) < self.prune_every:
            return
        self._pruned[vendor] = now
        stale = [
            and_(
                quota_usage.c.window == window.name,
                quota_usage.c.window_start
                <= _at(now - (window.length_ms + window.bucket_ms) / 1000),
            )
            for window in _WINDOWS
        ]
        conn.execute(delete(quota_usage).where(quota_usage.c.vendor == vendor, or_(*stale)))

    def _step(self, vendor: str, change: Callable[[_State, float], T]) -> T:
        for _ in range(10):
            try:
                with self.engine.begin() as conn:
                    row = self._lock(conn, vendor)
                    if row is None:
                        self._ensure(conn, vendor)
                        row = self._lock(conn, vendor)
                        assert row is not None
                    now = self._clock()
                    state = self._load(conn, vendor, row, now)
                    result = change(state, now)
                    self._store(conn, vendor, state)
                    for charge in state.charges:
                        self._charge(conn, vendor, charge)
                    self._prune(conn, vendor, now)
                    return result
            except _Contended:
                continue
        raise TransientError(f"{vendor}: quota usage kept changing under the governor")
