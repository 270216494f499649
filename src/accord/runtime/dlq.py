"""Dead letters: what could not be done, why, and replaying it after the fix.

Three kinds of work end here, each visible as a ``dead_letter`` exception:

* an **event** that cannot be applied (a poison payload, a mapping that
  refuses it) — its inbox row is ``dead``; replay puts it back to ``pending``;
* an **effect** the vendor refused or that exhausted its retries — its ledger
  row is ``failed``; replay performs it again through the executor, which
  first looks it up at the vendor, so a replay never duplicates;
* a **workflow** that failed (DBOS status ``ERROR``) — replay forks it from the
  step that failed, reusing the checkpointed results of the steps before.

Replaying resolves the exception; if the work fails again, a new one opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID
from sqlalchemy import Engine

from accord.errors import InvalidInput
from accord.runtime.pipeline import DEAD_LETTER
from accord.runtime.workflows import replay_effect
from accord.store import Exceptions, Inbox, append
from accord.store.tables import ExceptionState, InboxStatus

__all__ = ["DeadLetter", "dead_letters", "replay"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    kind: str
    """``event``, ``effect`` or ``workflow``."""
    reason: str
    age: timedelta | None
    context: dict[str, Any]


def dead_letters(engine: Engine, *, include_workflows: bool = True) -> list[DeadLetter]:
    """Open dead letters, oldest first."""
    with engine.connect() as conn:
        items = Exceptions(conn).list(
            state=(ExceptionState.OPEN, ExceptionState.ASSIGNED), type=DEAD_LETTER
        )
    found = [
        DeadLetter(
            item.id,
            str(item.context.get("kind", "event")),
            item.summary,
            item.age,
            dict(item.context),
        )
        for item in items
    ]
    if include_workflows:
        known = {d.context.get("workflow_id") for d in found if d.kind == "workflow"}
        found.extend(d for d in _failed_workflows() if d.context["workflow_id"] not in known)
    return found


def _failed_workflows() -> list[DeadLetter]:
    try:
        failed = DBOS.list_workflows(status="ERROR", load_input=False, load_output=False)
    except Exception:  # DBOS not launched in this process: nothing to list
        return []
    return [
        DeadLetter(
            f"wf:{status.workflow_id}",
            "workflow",
            str(status.error or "failed"),
            None,
            {"workflow_id": status.workflow_id, "name": status.name},
        )
        for status in failed
    ]


def replay(engine: Engine, dead_letter_id: str, *, actor: str = "accord") -> dict[str, Any]:
    """Replay one dead letter by its id (an exception id, or ``wf:<workflow id>``)."""
    if dead_letter_id.startswith("wf:"):
        return _replay_workflow(dead_letter_id.removeprefix("wf:"))
    with engine.begin() as conn:
        exceptions = Exceptions(conn)
        item = exceptions.get(dead_letter_id)
        if item is None or item.type != DEAD_LETTER:
            raise InvalidInput(f"no dead letter {dead_letter_id!r}", record="dlq", field="id")
        if item.state not in (ExceptionState.OPEN, ExceptionState.ASSIGNED):
            raise InvalidInput(
                f"dead letter {dead_letter_id} is already {item.state.value}",
                record="dlq",
                field="id",
            )
        kind = item.context.get("kind")
        if kind == "workflow":
            exceptions.resolve(dead_letter_id, f"replayed by {actor}")
            append(
                conn,
                actor=actor,
                action="replay",
                subject=f"dead_letter/{dead_letter_id}",
                data=dict(item.context),
            )
    if kind == "workflow":
        return _replay_workflow(str(item.context["workflow_id"]))
    with engine.begin() as conn:
        exceptions = Exceptions(conn)
        if kind == "event":
            Inbox(conn).mark(int(item.context["seq"]), InboxStatus.PENDING)
        exceptions.resolve(dead_letter_id, f"replayed by {actor}")
        append(
            conn,
            actor=actor,
            action="replay",
            subject=f"dead_letter/{dead_letter_id}",
            data=dict(item.context),
        )
    if kind == "effect":
        key = str(item.context["key"])
        with SetWorkflowID(f"replay-{key}-{dead_letter_id}"):
            counts = replay_effect(key)
        return {"kind": "effect", "key": key, "result": counts}
    return {"kind": "event", "seq": item.context.get("seq"), "result": "queued"}


def _replay_workflow(workflow_id: str) -> dict[str, Any]:
    steps: Sequence[Any] = DBOS.list_workflow_steps(workflow_id)
    failed = next((s for s in steps if s.get("error") is not None), None)
    start = int(failed["function_id"]) if failed else 0
    handle = DBOS.fork_workflow(workflow_id, start)
    return {
        "kind": "workflow",
        "workflow_id": workflow_id,
        "fork": handle.workflow_id,
        "from_step": start,
        "result": handle.get_result(),
    }
