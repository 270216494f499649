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


@DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.1, backoff_rate=2.0)
def effects_step(keys: list[str]) -> dict[str, int]:
    return _pipeline().run_effects(keys)


@DBOS.step(retries_allowed=True, max_attempts=8, interval_seconds=0.05, backoff_rate=2.0)
def batch_step(seqs: list[int]) -> dict[str, Any]:
    """Apply the batch's events, perform their effects, publish their changes.

    One checkpointed step for all three: a step's checkpoint costs DBOS about
    as much as applying a small batch, and every part is idempotent on its
    own. Applying again skips the events already done and hands on the
    effects and changes their outcomes recorded; the effect ledger performs
    each effect once; published events carry ids derived from each version.
    So a retry, or the re-run of the step after a crash, repeats nothing a
    vendor or a subscriber would see twice. A poison event or a failing effect
    does not fail the step: it is dead-lettered and the rest go on.
    """
    pipeline = _pipeline()
    applied = pipeline.apply_batch(seqs)
    done = pipeline.run_effects(applied.effects)
    published = pipeline.publish(applied.changes)
    return {
        "events": len(seqs),
        "applied": applied.applied,
        "skipped": applied.skipped,
        "dead": applied.dead,
        "effects": done,
        "published": published,
    }


@DBOS.workflow()
def process_batch(seqs: list[int]) -> dict[str, Any]:
    return batch_step(seqs)


@DBOS.workflow()
def replay_effect(key: str) -> dict[str, int]:
    """Perform one dead-lettered effect again, after the cause has been fixed."""
    return effects_step([key])
