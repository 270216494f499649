"""Quota-governor benchmark: how much of a vendor's budget the governor uses, with no 429s.

Runs :class:`accord.connectors.governor.MemoryGovernor` on a simulated clock through
a discrete-event loop (no threads, no wall-time sleeping) against three vendor-style
limits over a simulated day, with more demand than each limit allows:

- ``salesforce``: 100,000 calls per rolling 24 h, 150,000 wanted in bursts;
- ``netsuite``: 15 concurrency slots, calls of 0.2-2.0 s, 20 callers;
- ``hubspot``: 10/s (100 per 10 s) and 250,000 a day, 400,000 wanted in bursts.

A stand-in vendor on the same clock enforces the published limit independently
(exact sliding windows, exact in-flight count) and counts every call that would
exceed it as rejected, as a vendor answering 429 would. Figures are printed beside
their targets; the benchmark never fails because one was missed.

    .venv/bin/python bench/bench_governor.py --quick       # a simulated hour, limits / 24
    .venv/bin/python bench/bench_governor.py               # a simulated day
    .venv/bin/python bench/bench_governor.py --json
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import platform
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accord.connectors.governor import DEFAULT_QUOTAS, MemoryGovernor, QuotaPolicy

TARGET_BUDGET_USE = 0.95
TARGET_REJECTED = 0
DAY = 86_400.0
HOUR = 3_600.0
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the simulated clock starts here


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    vendor: str
    policy: QuotaPolicy
    demand: int
    """Calls wanted over the span (0: every caller calls back to back)."""
    bursts: int
    """Bursts the demand arrives in, at random moments of the span."""
    callers: int
    """Callers (worker threads of the integration) taking calls from the backlog."""
    duration: tuple[float, float]
    """Simulated seconds a call takes at the vendor, uniform in this range."""
    vendor_limits: tuple[tuple[float, int], ...]
    """The vendor's own sliding windows: (seconds, calls)."""
    vendor_slots: int | None
    capacity: float
    """The most calls the binding limit allows over the span."""
    binding: str


def _scenarios(span: float) -> list[Scenario]:
    scale = span / DAY
    sf_day = round(DEFAULT_QUOTAS["salesforce"].per_day * scale)  # type: ignore[operator]
    hs_day = round(DEFAULT_QUOTAS["hubspot"].per_day * scale)  # type: ignore[operator]
    slots = DEFAULT_QUOTAS["netsuite"].concurrency or 15
    ns_mean = (0.2 + 2.0) / 2
    return [
        Scenario(
            name="Salesforce-style rolling 24 h budget",
            vendor="salesforce",
            policy=QuotaPolicy(per_day=sf_day),
            demand=round(sf_day * 1.5),
            bursts=max(10, round(300 * scale)),
            callers=10,
            duration=(0.1, 0.5),
            vendor_limits=((DAY, sf_day),),
            vendor_slots=None,
            capacity=sf_day,
            binding=f"{sf_day:,} per rolling 24 h",
        ),
        Scenario(
            name="NetSuite-style concurrency slots",
            vendor="netsuite",
            policy=QuotaPolicy(concurrency=slots),
            demand=0,
            bursts=0,
            callers=slots + 3,
            duration=(0.2, 2.0),
            vendor_limits=(),
            vendor_slots=slots,
            capacity=slots * span / ns_mean,
            binding=f"{slots} in flight (slot-seconds)",
        ),
        Scenario(
            name="HubSpot-style 100 per 10 s + daily",
            vendor="hubspot",
            policy=QuotaPolicy(per_second=10, per_day=hs_day),
            demand=round(hs_day * 1.6),
            bursts=max(10, round(400 * scale)),
            callers=20,
            duration=(0.05, 0.3),
            vendor_limits=((10.0, 100), (DAY, hs_day)),
            vendor_slots=None,
            capacity=min(hs_day, 10 * span),
            binding=f"{hs_day:,} a day" if hs_day <= 10 * span else "10/s",
        ),
    ]


class _Blocked(Exception):
    """Raised by the injected sleep: the caller must try again ``seconds`` later."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class _Vendor:
    """The vendor's own bookkeeping: exact sliding windows and an in-flight count."""

    def __init__(self, limits: tuple[tuple[float, int], ...], slots: int | None) -> None:
        self.windows = [(length, cap, deque[float]()) for length, cap in limits]
        self.slots = slots
        self.inflight = 0
        self.rejected = 0
        self.peak_inflight = 0

    def admit(self, now: float) -> bool:
        for length, cap, log in self.windows:
            while log and log[0] <= now - length:
                log.popleft()
            if len(log) >= cap:
                self.rejected += 1
                return False
        if self.slots is not None and self.inflight >= self.slots:
            self.rejected += 1
            return False
        for _, _, log in self.windows:
            log.append(now)
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        return True

    def finish(self) -> None:
        self.inflight -= 1


def _ideal(scenario: Scenario, arrivals: list[tuple[float, int]], span: float) -> float:
    """The most calls any scheduler could serve: the demand as it arrives, at the
    vendor's short-window rate (100 per 10 s is 10/s), up to its long-window cap."""
    short = [cap / length for length, cap in scenario.vendor_limits if length < DAY]
    rate = min(short) if short else math.inf
    cap = min((cap for length, cap in scenario.vendor_limits if length >= DAY), default=math.inf)
    served = backlog = 0.0
    moments = [*arrivals, (span, 0)]
    for (moment, size), (following, _) in zip(moments, moments[1:], strict=False):
        backlog += size
        done = min(backlog, rate * (following - moment), cap - served)
        served += done
        backlog -= done
    return min(served, cap)


def _rate_use(scenario: Scenario, grants: list[float]) -> float | None:
    """Calls per second granted in the busiest 10 s spans, as a share of the vendor's rate.

    Over the spans of 10 s (aligned) holding at least 90 % of the short limit's share:
    how close the governor runs to the vendor's short window while it binds."""
    short = [(length, cap) for length, cap in scenario.vendor_limits if length < DAY]
    if not short or not grants:
        return None
    length, cap = short[0]
    counts: dict[int, int] = {}
    for moment in grants:
        key = int(moment // length)
        counts[key] = counts.get(key, 0) + 1
    bound = [n for n in counts.values() if n >= 0.8 * cap]
    return round(sum(bound) / (len(bound) * cap), 4) if bound else None


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def simulate(scenario: Scenario, span: float, seed: int, wake: bool) -> dict[str, Any]:
    """Run one scenario for ``span`` simulated seconds; return its figures."""
    rng = random.Random(seed)
    now = [EPOCH]
    end = EPOCH + span

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        raise _Blocked(seconds)

    governor = MemoryGovernor({scenario.vendor: scenario.policy}, clock=clock, sleep=sleep)
    vendor = _Vendor(scenario.vendor_limits, scenario.vendor_slots)
    events: list[tuple[float, int, Callable[[], None]]] = []
    seq = 0

    def at(moment: float, action: Callable[[], None]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (moment, seq, action))

    backlog: deque[float] = deque()  # when each waiting call was wanted
    idle: list[int] = []
    blocked: set[int] = set()
    generation = [0] * scenario.callers
    asked_at = [0.0] * scenario.callers
    waits: list[float] = []
    grants: list[float] = []
    arrivals: list[tuple[float, int]] = []
    served = 0
    attempts = 0
    busy = 0.0
    closed_loop = scenario.demand == 0

    def take(caller: int) -> None:
        if closed_loop:
            asked_at[caller] = now[0]
        elif backlog:
            asked_at[caller] = backlog.popleft()
        else:
            idle.append(caller)
            return
        attempt(caller, generation[caller])

    def schedule(caller: int, moment: float) -> None:
        generation[caller] += 1
        token = generation[caller]
        at(moment, lambda: attempt(caller, token))

    def attempt(caller: int, token: int) -> None:
        nonlocal served, attempts, busy
        if token != generation[caller]:
            return  # superseded by an earlier wake-up
        attempts += 1
        try:
            governor.acquire(scenario.vendor)
        except _Blocked as wait:
            blocked.add(caller)
            schedule(caller, now[0] + wait.seconds)
            return
        blocked.discard(caller)
        if not vendor.admit(now[0]):
            governor.release(scenario.vendor, retry_after=1.0, ok=False)
            schedule(caller, now[0] + 1.0)
            return
        waits.append(now[0] - asked_at[caller])
        grants.append(now[0] - EPOCH)
        served += 1
        took = rng.uniform(*scenario.duration)
        busy += min(took, end - now[0])
        at(now[0] + took, lambda: finish(caller))

    def finish(caller: int) -> None:
        vendor.finish()
        governor.release(scenario.vendor)
        if wake:
            # As with real time: a release wakes the waiters of its own process.
            for other in list(blocked):
                schedule(other, now[0])
        at(now[0], lambda: take(caller))  # after the waiters just woken

    def burst(size: int) -> None:
        backlog.extend([now[0]] * size)
        while idle and backlog:
            take(idle.pop())

    if not closed_loop:
        moments = sorted(rng.uniform(0, span) for _ in range(scenario.bursts))
        weights = [rng.paretovariate(1.5) for _ in moments]
        total = sum(weights)
        sizes = [int(scenario.demand * w / total) for w in weights]
        sizes[-1] += scenario.demand - sum(sizes)
        arrivals = list(zip(moments, sizes, strict=True))
        for moment, size in arrivals:
            at(EPOCH + moment, lambda size=size: burst(size))
    for caller in range(scenario.callers):
        at(EPOCH, lambda caller=caller: take(caller))

    wall_start = time.perf_counter()
    while events and events[0][0] < end:
        moment, _, action = heapq.heappop(events)
        now[0] = moment
        action()
    wall = time.perf_counter() - wall_start

    if scenario.vendor_slots is not None:
        possible = scenario.capacity
        use = busy / (scenario.vendor_slots * span)
    else:
        possible = _ideal(scenario, arrivals, span)
        use = served / possible
    return {
        "vendor": scenario.vendor,
        "scenario": scenario.name,
        "policy": {k: v for k, v in _policy(scenario.policy).items() if v is not None},
        "binding_limit": scenario.binding,
        "simulated_s": span,
        "demand": scenario.demand or None,
        "callers": scenario.callers,
        "served": served,
        "max_possible": round(possible),
        "binding_capacity": round(scenario.capacity),
        "per_second_use_while_bound": _rate_use(scenario, grants),
        "budget_use": round(use, 4),
        "rejected": vendor.rejected,
        "vendor_peak_inflight": vendor.peak_inflight,
        "wait_mean_s": round(sum(waits) / len(waits), 3) if waits else 0.0,
        "wait_p99_s": round(_percentile(waits, 0.99), 3),
        "wait_max_s": round(max(waits, default=0.0), 3),
        "backlog_at_end": len(backlog) + len(blocked) if not closed_loop else None,
        "acquire_attempts": attempts,
        "wall_s": round(wall, 3),
    }


def _policy(policy: QuotaPolicy) -> dict[str, int | None]:
    return {
        "per_second": policy.per_second,
        "per_minute": policy.per_minute,
        "per_day": policy.per_day,
        "concurrency": policy.concurrency,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a simulated hour, daily limits scaled to it"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--no-wake",
        action="store_true",
        help="waiters only poll (as across processes); by default a release wakes them",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    span = HOUR if args.quick else DAY
    started = time.perf_counter()
    runs = [
        simulate(scenario, span, args.seed + index, wake=not args.no_wake)
        for index, scenario in enumerate(_scenarios(span))
    ]
    return {
        "simulated": "hour" if args.quick else "day",
        "seed": args.seed,
        "wake_on_release": not args.no_wake,
        "python": platform.python_version(),
        "target_budget_use": TARGET_BUDGET_USE,
        "target_rejected": TARGET_REJECTED,
        "scenarios": runs,
        "wall_s": round(time.perf_counter() - started, 3),
    }


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(figures: dict[str, Any]) -> str:
    """The figures as a table for people."""
    f = figures
    head = (
        f"quota governor on a simulated {f['simulated']} (seed {f['seed']}, Python {f['python']},"
        f" {'release wakes waiters' if f['wake_on_release'] else 'waiters poll only'})"
    )
    rows = [head]
    table = [
        ("vendor", "budget used", "target", "rejected", "target", "wait mean", "wait p99", "wall"),
    ]
    for run in f["scenarios"]:
        use = run["budget_use"]
        table.append(
            (
                run["vendor"],
                f"{use:.1%}",
                f"≥ {f['target_budget_use']:.0%} {_verdict(use >= f['target_budget_use'])}",
                f"{run['rejected']:,}",
                f"{f['target_rejected']} {_verdict(run['rejected'] <= f['target_rejected'])}",
                f"{run['wait_mean_s']:,.2f} s",
                f"{run['wait_p99_s']:,.2f} s",
                f"{run['wall_s']:.1f} s",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        rows.append(
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        )
    rows.append("")
    for run in f["scenarios"]:
        demand = f"{run['demand']:,} wanted" if run["demand"] else "callers call back to back"
        backlog = run["backlog_at_end"]
        left = f", {backlog:,} still waiting at the end" if backlog else ""
        rows.append(
            f"  {run['vendor']}: {run['scenario']}; binding {run['binding_limit']};"
            f" {run['callers']} callers, {demand}; served {run['served']:,} of"
            f" {run['max_possible']:,} possible{left}; vendor peak in flight"
            f" {run['vendor_peak_inflight']}; max wait {run['wait_max_s']:,.1f} s;"
            f" {run['acquire_attempts']:,} acquire attempts"
        )
        if run["per_second_use_while_bound"] is not None:
            rows.append(
                f"    while the 10 s window binds: {run['per_second_use_while_bound']:.1%} of"
                " the vendor's rate (waits count from when a call was wanted; calls still"
                " waiting at the end are left out)"
            )
    rows.append(f"  total wall time {f['wall_s']:.1f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    figures = measure(args)
    if args.json:
        print(json.dumps(figures))
    else:
        print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
