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

import structlog
from dbos import DBOS

from accord.runtime.pipeline import Pipeline

__all__ = ["batch_workflow_id", "bind", "process_batch", "replay_effect"]

log = structlog.get_logger("accord.workflows")

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


def _process(seqs: list[int]) -> dict[str, Any]:
    """Apply the batch's events, perform their effects, publish their changes.

    Every part is idempotent on its own, so running it again after a crash or
    a failure repeats nothing a vendor or a subscriber would see twice:
    applying again skips the events already done and hands on the effects and
    changes their outcomes recorded; the effect ledger performs each effect
    once; published events carry ids derived from each version. A poison
    event or a failing effect does not fail it: it is dead-lettered and the
    rest go on.
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


@DBOS.step(retries_allowed=True, max_attempts=8, interval_seconds=0.05, backoff_rate=2.0)
def batch_step(seqs: list[int]) -> dict[str, Any]:
    """The batch's work as a checkpointed step, retried with backoff (see :func:`process_batch`)."""
    return _process(seqs)


@DBOS.workflow()
def process_batch(seqs: list[int]) -> dict[str, Any]:
    """One batch: its work runs once in the workflow itself, then as a step.

    DBOS checkpoints the workflow when it starts and when it ends; recovery
    after a crash runs it again, which is safe because the work is
    idempotent. Checkpointing a step as well would cost DBOS about as much
    again per batch, for nothing the idempotent work needs on the way that
    succeeds. So the work first runs unchecked; if it fails, it runs again as
    :func:`batch_step`, whose attempts DBOS retries with exponential backoff and
    records. A batch whose step fails for good leaves the workflow failed, is
    dead-lettered, and ``accord replay`` forks it from that step.
    """
    try:
        return _process(seqs)
    except Exception as exc:
        log.info("batch failed; retrying it as a checkpointed step", error=repr(exc))
    return batch_step(seqs)


@DBOS.workflow()
def replay_effect(key: str) -> dict[str, int]:
    """Perform one dead-lettered effect again, after the cause has been fixed."""
    return effects_step([key])
