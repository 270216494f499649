"""Quote-to-cash figures: wall time of ``accord demo`` (clean and ``--chaos``) and the
deal-won → project-provisioned latency on the embedded default.

Each run is a real ``accord demo --json`` process in a fresh directory; the
latency samples of every clean run are pooled before p50 and p95 are taken.

    .venv/bin/python bench/bench_demo.py                 # 3 clean runs and 1 chaos run
    .venv/bin/python bench/bench_demo.py --runs 5 --skip-chaos --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _demo(*flags: str) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "accord.cli", "demo", "--json", "--dir", "run", *flags],
            capture_output=True,
            text=True,
            cwd=Path(tmp),
            timeout=900,
            check=True,
        )
        return time.perf_counter() - started, json.loads(done.stdout)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="clean runs")
    parser.add_argument("--skip-chaos", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    walls: list[float] = []
    inner: list[float] = []
    samples: list[float] = []
    for _ in range(args.runs):
        wall, summary = _demo()
        walls.append(wall)
        inner.append(float(summary["wall_seconds"]))
        samples.extend(summary["latency"]["samples_seconds"])
    figures: dict[str, Any] = {
        "clean_runs": args.runs,
        "demo_wall_seconds_median": round(statistics.median(walls), 2),
        "demo_scenario_seconds_median": round(statistics.median(inner), 2),
        "deal_won_to_provisioned_p50_seconds": round(_pct(samples, 0.5), 3),
        "deal_won_to_provisioned_p95_seconds": round(_pct(samples, 0.95), 3),
        "deals_measured": len(samples),
    }
    if not args.skip_chaos:
        wall, summary = _demo("--chaos")
        figures.update(
            chaos_wall_seconds=round(wall, 2),
            chaos_scenario_seconds=summary["wall_seconds"],
            chaos_kills=summary["chaos"]["kills"],
            chaos_duplicates=summary["effects"]["duplicates"],
            chaos_p50_seconds=summary["latency"]["deal_won_to_provisioned_p50_seconds"],
            chaos_p95_seconds=summary["latency"]["deal_won_to_provisioned_p95_seconds"],
        )
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print("accord demo (embedded default: SQLite + DBOS SQLite, stand-ins on loopback)")
    for key, value in figures.items():
        print(f"  {key:40} {value}")


if __name__ == "__main__":
    main()
