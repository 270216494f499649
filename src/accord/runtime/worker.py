"""The dispatcher: claims inbox events in micro-batches and runs their workflows.

Each dispatcher thread claims up to ``batch_size`` due events (a lease, so a
worker that dies releases them), waits up to ``batch_wait_ms`` for a batch to
fill, and runs :func:`~accord.runtime.workflows.process_batch` under a
workflow id derived from the claimed sequence numbers.

While a backlog lasts, batches grow up to ``max_batch_size``, so the
workflow's fixed cost is shared by more events. On embedded SQLite the hub's
process is the store's only worker, and a claim takes every due event up to
that size at once: each batch is what arrived while the last one ran, and no
event waits a round for a batch it did not fit in. Where several worker
processes share one PostgreSQL store (claims skip each other's locked rows),
each full claim doubles the next instead, so the workers share a burst; the
first claim that is not full goes back to ``batch_size``.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import structlog
from dbos import SetWorkflowID

from accord.config import RuntimeSettings
from accord.errors import AccordError
from accord.runtime.pipeline import DEAD_LETTER, Pipeline
from accord.runtime.workflows import batch_workflow_id, process_batch
from accord.store import Exceptions, Inbox

__all__ = ["Worker"]

log = structlog.get_logger("accord.worker")

#: While a batch fills on a store that workers share, how often it is asked for
#: events other processes stored (events stored by this process wake the
#: dispatcher at once). On embedded SQLite it is asked once, at the deadline.
FILL_POLL = 0.005
#: The longest pause between two looks at an empty inbox.
IDLE_POLL = 0.05


class Worker:
    def __init__(
        self,
        pipeline: Pipeline,
        settings: RuntimeSettings | None = None,
        *,
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings or RuntimeSettings()
        self.lease = lease
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._lock = threading.Lock()
        self.batches = 0
        #: The size of the next claim: ``batch_size``, doubled by each full batch
        #: while a backlog lasts, up to ``max_batch_size``.
        self._limit = self.settings.batch_size
        #: Take every due event up to ``largest_batch`` in one claim (SQLite: one
        #: worker process) rather than doubling claims (workers sharing a store).
        self._greedy = pipeline.engine.dialect.name == "sqlite"
        #: The arrivals mark taken before the last claim: an event stored after
        #: it wakes an idle dispatcher at once.
        self._mark = 0

    def run_once(self) -> int:
        """Claim one batch and process it in this thread; returns the number of events."""
        settings = self.settings
        pipeline = self.pipeline
        limit = settings.largest_batch if self._greedy else self._limit
        mark = self._mark = pipeline.arrivals
        claimed = pipeline.claim(limit, self.lease)
        if not claimed:
            self._limit = settings.batch_size
            return 0
        if len(claimed) < limit:
            self._limit = settings.batch_size  # the backlog is gone: small batches again
            deadline = time.monotonic() + settings.batch_wait_ms / 1000
            while len(claimed) < settings.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # woken as soon as enough events have arrived in this process,
                # else at the deadline, when the store is asked anyway (events
                # other processes stored); each claim costs as much as applying
                # a few events, so the batch is not claimed piecemeal
                wait = remaining if self._greedy else min(remaining, FILL_POLL)
                mark = pipeline.wait_for_arrivals(mark, settings.batch_size - len(claimed), wait)
                more = (limit if self._greedy else settings.batch_size) - len(claimed)
                claimed += pipeline.claim(more, self.lease)
        else:
            self._limit = min(limit * 2, settings.largest_batch)
        claimed.sort()
        seqs = [seq for seq, _ in claimed]
        workflow_id = batch_workflow_id(claimed)
        try:
            with SetWorkflowID(workflow_id):
                process_batch(seqs)
        except Exception as exc:
            self._dead_letter(workflow_id, seqs, exc)
            raise
        with self._lock:
            self.batches += 1
        return len(seqs)

    def _dead_letter(self, workflow_id: str, seqs: list[int], exc: Exception) -> None:
        """A workflow that failed for good is dead-lettered, visible as an exception."""
        with self.pipeline.engine.begin() as conn:
            Exceptions(conn).raise_(
                DEAD_LETTER,
                role="admin",
                summary=f"workflow {workflow_id} failed: {exc}",
                context={
                    "kind": "workflow",
                    "workflow_id": workflow_id,
                    "seqs": seqs,
                    "reason": str(exc),
                },
                dedupe_key=f"workflow:{workflow_id}",
            )

    def _loop(self) -> None:
        idle = 0.001
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._busy += 1
                try:
                    count = self.run_once()
                finally:
                    with self._lock:
                        self._busy -= 1
            except AccordError as exc:
                log.warning("batch failed; its events return after the lease", error=str(exc))
                count = 0
            except Exception as exc:  # a failed workflow is dead-lettered by DBOS
                log.error("batch workflow failed", error=repr(exc))
                count = 0
            if count == 0:
                # nothing due: wake on the next event this process stores, or
                # look again after a growing pause (events from elsewhere)
                self.pipeline.wait_for_arrivals(self._mark, 1, idle)
                idle = min(idle * 2, IDLE_POLL)
            else:
                idle = 0.001

    def start(self) -> Worker:
        for index in range(self.settings.concurrency):
            thread = threading.Thread(
                target=self._loop, name=f"accord-dispatch-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _nothing_waiting(self) -> bool:
        # by index: counting the whole inbox every 10 ms cost the worker a share of its core
        with self.pipeline.engine.connect() as conn:
            return Inbox(conn).first_waiting() is None

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until no event is waiting and no batch is in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._busy
            if busy == 0 and self._nothing_waiting():
                return True
            time.sleep(0.01)
        return False
