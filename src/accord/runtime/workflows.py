"""The durable workflows of the runtime, on DBOS.

High-volume intake is processed in micro-batches: one workflow per batch of
inbox events, its id derived from the events' sequence numbers, so the same
batch never runs twice and a crash resumes it at the step it stopped in. Each
step is idempotent on its own (inbox status and the effect ledger), which is
what makes a re-run step harmless. See ARCHITECTURE's throughput note for why
one workflow per event could not keep up.

The functions are registered with DBOS when this module is imported (that
connects nothing); :func:`bind` hands them the pipeline before launch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from dbos import DBOS

from accord.runtime.pipeline import Pipeline

__all__ = ["batch_workflow_id", "bind", "process_batch", "replay_effect"]

_bound: dict[str, Pipeline] = {}


def bind(pipeline: Pipeline) -> None:
    """Give the workflows the pipeline of this process (the composition root calls it)."""
    _bound["pipeline"] = pipeline


def _pipeline() -> Pipeline:
    try:
        return _bound["pipeline"]
    except KeyError:
        raise RuntimeError("runtime workflows used before bind(pipeline)") from None


def batch_workflow_id(claimed: Sequence[tuple[int, int]]) -> str:
    """The id of the workflow for exactly these claimed events (seq and attempt).

    The attempt is part of it so that an event claimed again (lease expired,
    or replayed from the dead letters) runs in a new workflow, while the same
    claim can never start two.
    """
    text = ",".join(f"{seq}.{attempt}" for seq, attempt in claimed)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"batch-{claimed[0][0]}-{claimed[-1][0]}-{digest}"


@DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.02, backoff_rate=2.0)
def apply_step(seqs: list[int]) -> dict[str, Any]:
    outcome = _pipeline().apply_batch(seqs)
    return {
        "applied": outcome.applied,
        "skipped": outcome.skipped,
        "dead": outcome.dead,
        "effects": outcome.effects,
        "changes": [list(change) for change in outcome.changes],
    }


@DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.1, backoff_rate=2.0)
def effects_step(keys: list[str]) -> dict[str, int]:
    return _pipeline().run_effects(keys)


@DBOS.step(retries_allowed=True, max_attempts=8, interval_seconds=0.1, backoff_rate=2.0)
def deliver_step(keys: list[str], changes: list[list[Any]]) -> dict[str, Any]:
    """Perform the batch's effects, then publish its canonical changes.

    One step for both, because a step's checkpoint costs about as much as
    the delivery of a whole small batch; both halves are idempotent on their
    own (the effect ledger; event ids derived from each version), so a re-run
    after a crash or a failed publish repeats nothing a vendor or a
    subscriber would see twice. A failing effect does not fail the step: it
    is dead-lettered and the rest go on.
    """
    pipeline = _pipeline()
    done = pipeline.run_effects(keys)
    published = pipeline.publish([(str(c[0]), str(c[1]), int(c[2])) for c in changes])
    return {"effects": done, "published": published}


@DBOS.workflow()
def process_batch(seqs: list[int]) -> dict[str, Any]:
    applied = apply_step(seqs)
    delivered = deliver_step(applied["effects"], applied["changes"])
    return {
        "events": len(seqs),
        "applied": applied["applied"],
        "dead": applied["dead"],
        "effects": delivered["effects"],
        "published": delivered["published"],
    }


@DBOS.workflow()
def replay_effect(key: str) -> dict[str, int]:
    """Perform one dead-lettered effect again, after the cause has been fixed."""
    return effects_step([key])
