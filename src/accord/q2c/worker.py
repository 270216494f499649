"""A hub worker process for one phase of the demo (``python -m accord.q2c.worker FILE PHASE``).

``accord demo --chaos`` starts it, kills it with SIGKILL at random points and
starts it again until it exits 0. Every phase is idempotent — workflows keyed by
business ids, effects by canonical ids through the ledger — so a killed run
leaves nothing half done that the next run does not finish, and nothing done twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

from accord.q2c import demo
from accord.q2c.scenario import seed


def main(argv: list[str]) -> int:
    path, phase = Path(argv[0]), argv[1]
    endpoints = demo.Endpoints.load(path)
    facts = seed.default_facts()
    world = seed.pre_amendment_world(seed.load_world(), facts.amendment)
    hub, ctx = demo.open_context(endpoints, world, facts, executor_id="chaos-worker")
    try:
        demo.run_hub_phase(ctx, phase)
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
