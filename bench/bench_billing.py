"""Billing-run benchmark: how fast, and in how much memory, a month is billed.

Builds a synthetic consulting firm in memory (see ``synthetic.py``), runs
:func:`accord.billing.engine.run_billing` on it and prints figures: generation
time, run wall and CPU time, time entries per second, what the run produced and
the memory it took. It never fails on a slow or large run; the targets are
printed beside the figures for a person to read.

    .venv/bin/python bench/bench_billing.py                       # full size
    .venv/bin/python bench/bench_billing.py --time-entries 100000 --expenses 5000 \\
        --contracts 1000 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from typing import Any

from accord.billing.engine import run_billing
from accord.billing.model import BillingRun, BillingWorld
from synthetic import Sizes, generate_world, line_model

TARGET_ENTRIES_PER_SECOND = 100_000
TARGET_PEAK_MB = 2_048
_MB = 1024 * 1024


def _rss_bytes() -> int:
    """Current resident set size, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except OSError:
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--time-entries", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--expenses", type=int, default=50_000, metavar="N")
    parser.add_argument("--contracts", type=int, default=10_000, metavar="N")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="billing runs to time")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    for name in ("time_entries", "expenses", "contracts", "repeat"):
        if getattr(args, name) < (1 if name in ("contracts", "repeat") else 0):
            parser.error(f"--{name.replace('_', '-')} is too small")
    return args


def _world_figures(world: BillingWorld) -> dict[str, Any]:
    lines = Counter(line_model(line) for c in world.contracts for line in c.lines)
    return {
        "contract_lines": sum(lines.values()),
        "contract_lines_by_model": dict(sorted(lines.items())),
        "accounts": len(world.accounts),
        "people": len(world.people),
        "rate_cards": len(world.rate_cards),
        "rate_entries": sum(len(card.entries) for card in world.rate_cards.values()),
        "projects": len(world.projects),
        "fx_rates": len(world.fx_rates),
        "tax_rules": len(world.tax_rules),
        "milestone_events": len(world.milestones),
        "progress_reports": len(world.progress),
        "usage_records": len(world.usage),
        "prior_billed": len(world.prior_billed),
        "adjustments": len(world.adjustments),
    }


def _run_figures(run: BillingRun) -> dict[str, Any]:
    kinds = Counter(line.kind.value for invoice in run.invoices for line in invoice.lines)
    reasons = Counter(item.reason.value for item in run.skipped)
    return {
        "invoices": len(run.invoices),
        "invoice_lines": sum(kinds.values()),
        "invoice_lines_by_kind": dict(sorted(kinds.items())),
        "held": len(run.held),
        "written_off": len(run.written_off),
        "skipped": len(run.skipped),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "intercompany_recharges": len(run.intercompany),
        "intercompany_lines": sum(len(ic.lines) for ic in run.intercompany),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the world, time the runs, and return every figure."""
    sizes = Sizes(time_entries=args.time_entries, expenses=args.expenses, contracts=args.contracts)
    started = time.perf_counter()
    world = generate_world(sizes, seed=args.seed)
    generation = time.perf_counter() - started
    gc.collect()
    rss_world = _rss_bytes()

    walls: list[float] = []
    cpus: list[float] = []
    growths: list[int] = []
    output: dict[str, Any] = {}
    for _ in range(args.repeat):
        gc.collect()
        before = _rss_bytes()
        wall_start = time.perf_counter()
        cpu_start = time.process_time()
        run = run_billing(world)
        cpus.append(time.process_time() - cpu_start)
        walls.append(time.perf_counter() - wall_start)
        growths.append(_rss_bytes() - before)
        if not output:
            output = _run_figures(run)
        del run
    peak = _peak_rss_bytes()

    wall = statistics.median(walls)
    cpu = statistics.median(cpus)
    entries = len(world.time_entries)
    return {
        "time_entries": entries,
        "expenses": len(world.expenses),
        "contracts": len(world.contracts),
        "seed": args.seed,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "generation_s": round(generation, 3),
        "run_wall_s": round(wall, 3),
        "run_cpu_s": round(cpu, 3),
        "run_wall_s_all": [round(w, 3) for w in walls],
        "run_cpu_s_all": [round(c, 3) for c in cpus],
        "time_entries_per_s": round(entries / wall) if wall else None,
        "target_time_entries_per_s": TARGET_ENTRIES_PER_SECOND,
        **output,
        "peak_rss_mb": round(peak / _MB, 1),
        "target_peak_rss_mb": TARGET_PEAK_MB,
        "rss_after_generation_mb": round(rss_world / _MB, 1),
        "rss_growth_during_run_mb": round(growths[0] / _MB, 1),
        "rss_growth_during_run_mb_all": [round(g / _MB, 1) for g in growths],
        "world": _world_figures(world),
    }


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(figures: dict[str, Any]) -> str:
    """The figures as a table for people."""
    f = figures
    world = f["world"]
    rate = f["time_entries_per_s"] or 0
    runs = f["repeat"]
    spread = ""
    if runs > 1:
        spread = (
            f", median of {runs} runs (min {min(f['run_wall_s_all']):.2f} s,"
            f" max {max(f['run_wall_s_all']):.2f} s)"
        )
    models = ", ".join(f"{k} {v:,}" for k, v in world["contract_lines_by_model"].items())
    kinds = ", ".join(f"{k} {v:,}" for k, v in f["invoice_lines_by_kind"].items())
    reasons = ", ".join(f"{k} {v:,}" for k, v in f["skipped_by_reason"].items()) or "none"
    rows = [
        f"billing run: {f['time_entries']:,} time entries, {f['expenses']:,} expenses, "
        f"{f['contracts']:,} contracts (seed {f['seed']}, Python {f['python']}, "
        f"{f['cpus']} CPUs)",
        f"  generation {f['generation_s']:.1f} s (not timed as part of the run)",
        f"  run time {f['run_wall_s']:.1f} s (CPU {f['run_cpu_s']:.1f} s){spread}"
        f" → {rate:,} time entries/s (target ≥ {f['target_time_entries_per_s']:,}/s on one"
        f" core: {_verdict(rate >= f['target_time_entries_per_s'])})",
        f"  peak memory {f['peak_rss_mb']:,.0f} MB (target < {f['target_peak_rss_mb']:,} MB:"
        f" {_verdict(f['peak_rss_mb'] < f['target_peak_rss_mb'])});"
        f" {f['rss_after_generation_mb']:,.0f} MB after generation,"
        f" +{f['rss_growth_during_run_mb']:,.0f} MB resident during the run",
        f"  output {f['invoices']:,} invoices, {f['invoice_lines']:,} invoice lines,"
        f" {f['held']:,} held, {f['written_off']:,} written off, {f['skipped']:,} skipped,"
        f" {f['intercompany_recharges']:,} intercompany recharges"
        f" ({f['intercompany_lines']:,} lines)",
        f"    lines by kind: {kinds}",
        f"    skipped by reason: {reasons}",
        f"  world {world['contract_lines']:,} contract lines, {world['projects']:,} projects,"
        f" {world['accounts']:,} accounts, {world['people']:,} people,"
        f" {world['rate_cards']} rate cards ({world['rate_entries']:,} entries),"
        f" {world['fx_rates']} FX rates, {world['tax_rules']} tax rules",
        f"    lines by model: {models}",
        f"    {world['milestone_events']:,} milestone events, {world['progress_reports']:,}"
        f" progress reports, {world['usage_records']:,} usage records,"
        f" {world['prior_billed']:,} prior-billed, {world['adjustments']:,} adjustments",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not args.json:
        print(
            f"generating {args.time_entries:,} time entries, {args.expenses:,} expenses, "
            f"{args.contracts:,} contracts …",
            file=sys.stderr,
            flush=True,
        )
    figures = measure(args)
    if args.json:
        print(json.dumps(figures))
    else:
        print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
