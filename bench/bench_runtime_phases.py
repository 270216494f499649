"""CPU time per event in each phase of the runtime, without DBOS: where an event's cost goes.

Builds a hub on a fresh SQLite file with one ERP route to the recorder stand-in (its
own process, so that its work is not counted),
ingests ``--events`` account events (``ingest_many``) and ``--single`` more one
transaction each, then claims, applies, performs the effects of and publishes
them in batches of ``--batch`` in this thread, timing each phase with
``time.process_time``. Prints microseconds of CPU per event per phase. The
cyclic garbage collector runs as a started hub sets it (``runtime.gc_threshold``).

    .venv/bin/python bench/bench_runtime_phases.py
    .venv/bin/python bench/bench_runtime_phases.py --events 20000 --batch 500
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from accord.bootstrap import _tune_collector, build_hub
from accord.config import Settings
from accord.runtime.http_vendor import IdempotentHttpVendor
from bench_runtime import ACCOUNT_POLICY, ACCOUNT_ROUTE, RecorderProcess, account_event


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory, RecorderProcess(None) as recorder:
        settings = Settings.model_validate(
            {"database_url": f"sqlite:///{Path(directory) / 'phases.db'}"}
        )
        hub = build_hub(
            settings,
            vendors={"erp": IdempotentHttpVendor(recorder.url)},
            routes=[ACCOUNT_ROUTE],
            policy=ACCOUNT_POLICY,
        )
        pipeline = hub.pipeline
        # as Hub.start sets it: the hub is not started here (no dispatcher, no DBOS)
        collector = _tune_collector(settings.runtime.gc_threshold)
        try:
            events = [account_event(i) for i in range(args.events)]
            started = time.process_time()
            pipeline.ingest_many(events)
            many = time.process_time() - started
            started = time.process_time()
            for event in events[: args.single]:
                pipeline.ingest(
                    event["system"],
                    f"{event['event_id']}-single",
                    event["event_type"],
                    event["payload"],
                )
            single = time.process_time() - started
            spent = {"claim": 0.0, "apply": 0.0, "effects": 0.0, "publish": 0.0}
            done = 0
            while True:
                started = time.process_time()
                claimed = pipeline.claim(args.batch, timedelta(seconds=60))
                spent["claim"] += time.process_time() - started
                if not claimed:
                    break
                seqs = [seq for seq, _ in sorted(claimed)]
                started = time.process_time()
                outcome = pipeline.apply_batch(seqs)
                spent["apply"] += time.process_time() - started
                started = time.process_time()
                pipeline.run_effects(outcome.effects)
                spent["effects"] += time.process_time() - started
                started = time.process_time()
                pipeline.publish(outcome.changes)
                spent["publish"] += time.process_time() - started
                done += len(seqs)
        finally:
            if collector is not None:
                gc.set_threshold(*collector)
            hub.stop()
    print(
        f"runtime phases, CPU µs per event (SQLite, batches of {args.batch}, one ERP effect each)"
    )
    print(f"  ingest_many                   {1e6 * many / args.events:8.0f}")
    print(f"  ingest, one per transaction   {1e6 * single / max(args.single, 1):8.0f}")
    for name, seconds in spent.items():
        print(f"  {name:<29} {1e6 * seconds / max(done, 1):8.0f}")
    print(f"  claim to publish, per event   {1e6 * sum(spent.values()) / max(done, 1):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
