"""Reconciliation benchmark: 1,000,000 records a side with 0.1 % drift, and reladiff.

Writes two CSV exports of invoices (id, account, date, amount, currency, status)
into a temporary directory with 1,000 drifted records spread across the classes
(missing, orphan, field, amount, status), then:

1. compares them with ``accord.reconcile`` in a fresh subprocess on one core, and
   reports wall and CPU time and the peak resident memory of that process (and
   its growth over a process that only imported the engine);
2. loads both files into two PostgreSQL tables (``COPY``) and times reladiff's
   ``diff_tables`` on them, and prints both times and the ratio. Skipped, with
   the reason, when PostgreSQL does not answer.

Targets: compare under 10 s on one core and under 1 GB for the diff.

    .venv/bin/python bench/bench_reconcile.py                # 1,000,000 a side
    .venv/bin/python bench/bench_reconcile.py --rows 100000  # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TARGET_SECONDS = 10.0
TARGET_MEMORY_MB = 1024
PG_ADMIN = os.environ.get("ACCORD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HEADER = ["id", "account", "date", "amount", "currency", "status"]


def generate(directory: Path, rows: int, drift: float) -> tuple[Path, Path, dict[str, int]]:
    rng = random.Random(42)
    left, right = directory / "billing.csv", directory / "erp.csv"
    drifted = rng.sample(range(rows), max(5, int(rows * drift)))
    kinds = ["missing", "orphan", "field_mismatch", "amount_mismatch", "status_mismatch"]
    plan = {index: kinds[n % len(kinds)] for n, index in enumerate(drifted)}
    seeded = dict.fromkeys(kinds, 0)
    with left.open("w", newline="") as lf, right.open("w", newline="") as rf:
        lw, rw = csv.writer(lf), csv.writer(rf)
        lw.writerow(HEADER)
        rw.writerow(HEADER)
        for i in range(rows):
            row = [
                f"INV-{i:08d}",
                f"ACC-{i % 20_011:05d}",
                f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
                f"{(i * 7919) % 1_000_000 / 100:.2f}",
                "EUR",
                "paid" if i % 3 else "open",
            ]
            kind = plan.get(i)
            if kind == "missing":
                lw.writerow(row)
            elif kind == "orphan":
                rw.writerow(row)
            else:
                lw.writerow(row)
                if kind == "field_mismatch":
                    row = [*row[:1], "ACC-MOVED", *row[2:]]
                elif kind == "amount_mismatch":
                    row = [*row[:3], "0.01", *row[4:]]
                elif kind == "status_mismatch":
                    row = [*row[:5], "void"]
                rw.writerow(row)
            if kind:
                seeded[kind] += 1
    return left, right, seeded


_CHILD = """
import json, resource, sys, time
from accord.reconcile.files import compare_files
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
wall, cpu = time.perf_counter(), time.process_time()
result = compare_files(sys.argv[1], sys.argv[2], "id")
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall": wall, "cpu": cpu, "base_kb": base, "peak_kb": peak,
                  "counts": result.counts, "rows": [result.left_rows, result.right_rows]}))
"""


def accord_compare(left: Path, right: Path) -> dict[str, object]:
    command = [sys.executable, "-c", _CHILD, str(left), str(right)]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", "0", *command] if _has("taskset") else command
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout))


def _has(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


def reladiff_compare(left: Path, right: Path) -> dict[str, object] | str:
    try:
        import psycopg
        import reladiff
    except ImportError as exc:
        return f"skipped: {exc.name} is not installed (pip install -e '.[dev]')"
    name = f"accord_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        return f"skipped: PostgreSQL is not reachable ({str(exc).strip().splitlines()[0]})"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for table, path in (("billing", left), ("erp", right)):
                conn.execute(
                    f"CREATE TABLE {table} (id text PRIMARY KEY, account text, date text,"
                    " amount numeric(14,2), currency text, status text)"
                )
                with (
                    path.open("rb") as handle,
                    conn.cursor().copy(
                        f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
                    ) as copy,
                ):
                    while chunk := handle.read(1 << 20):
                        copy.write(chunk)
                conn.execute(f"ANALYZE {table}")
        extra = ("account", "date", "amount", "currency", "status")
        started = time.perf_counter()
        table1 = reladiff.connect_to_table(url, "billing", "id", extra_columns=extra)
        table2 = reladiff.connect_to_table(url, "erp", "id", extra_columns=extra)
        diff = list(reladiff.diff_tables(table1, table2))
        wall = time.perf_counter() - started
        keys = {row[1][0] for row in diff}
        return {"wall": wall, "diff_rows": len(diff), "keys": len(keys)}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--drift", type=float, default=0.001)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as tmp:
        started = time.perf_counter()
        left, right, seeded = generate(Path(tmp), args.rows, args.drift)
        print(f"reconcile: {args.rows:,} records a side, {sum(seeded.values())} drifted {seeded}")
        print(f"  generated the two CSV files in {time.perf_counter() - started:.1f} s")
        ours = accord_compare(left, right)
        memory_mb = int(ours["peak_kb"]) / 1024  # type: ignore[call-overload]
        growth_mb = (int(ours["peak_kb"]) - int(ours["base_kb"])) / 1024  # type: ignore[call-overload]
        print(
            f"  accord compare: wall {ours['wall']:.2f} s, cpu {ours['cpu']:.2f} s "
            f"(target < {TARGET_SECONDS:.0f} s on one core); peak RSS {memory_mb:.0f} MB, "
            f"+{growth_mb:.0f} MB for the diff (target < {TARGET_MEMORY_MB} MB)"
        )
        print(f"  found {ours['counts']}")
        found = dict(ours["counts"])  # type: ignore[call-overload]
        print(f"  every seeded drift found: {found == seeded}")
        theirs = reladiff_compare(left, right)
        if isinstance(theirs, str):
            print(f"  reladiff: {theirs}")
            return
        print(
            f"  reladiff (PostgreSQL, same two tables): wall {theirs['wall']:.2f} s, "
            f"{theirs['keys']} keys differ"
        )
        ratio = float(theirs["wall"]) / float(ours["wall"])  # type: ignore[arg-type]
        print(f"  ratio reladiff / accord: {ratio:.2f}x")


if __name__ == "__main__":
    main()
