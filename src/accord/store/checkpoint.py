"""Checkpoints of a SQLite file's write-ahead log, taken off the writers' path.

In WAL mode every commit appends pages to ``accord.db-wal``; a checkpoint
copies them back into the database file so that the log can start again from
its beginning. SQLite runs it inside whichever commit finds the log past
``wal_autocheckpoint`` pages: at 5,000 events/s that was one intake insert or
one batch about every second, which then spent tens of milliseconds copying
the pages all the others had written, with every event behind it waiting.

:class:`WalCheckpointer` does that work in a thread of its own, on a
connection of its own, at a lower scheduling priority (nice
:data:`CHECKPOINT_NICE` where the system has per-thread priorities, as Linux
does): it copies pages while the writers go on, mostly in time the core would
otherwise spend idle. SQLite lets a passive checkpoint run beside writers,
but the log starts again only when a writer finds every frame already
copied, and with intake committing thousands of times a second that does not
happen by itself. So each round is two parts:

1. passive passes beside the writers, which copy almost everything (another
   pass follows a long one, up to :data:`MAX_PASSES`, so that little is left);
2. one more pass under the process's writer lock
   (:func:`~accord.store.db.writer_lock`) for the frames written during the
   last one: a few milliseconds, after which the next commit starts the log
   again.

With ``synchronous=NORMAL`` SQLite makes a checkpoint that reaches the end of
the log flush the database file to disk before the log may start again: in
the pass under the lock, that flush wrote out every page the passes beside
the writers had copied, about half of the time the writers were held. So
before it takes the lock, the thread flushes the log and the database file
itself (``fdatasync``); the pass under the lock then flushes only the few
frames and pages written since. Flushing more often never loses anything.

The thread looks at the log's length every :data:`POLL` seconds, in the
wal-index header that SQLite keeps in ``accord.db-shm`` (its documented
file format: ``mxFrame``, a 32-bit count at byte 16, behind the format
version 3007000 at byte 0), a read of 48 bytes that costs the writers
nothing, and begins a round once the log holds :data:`ROUND_FRAMES` frames,
half of ``wal_autocheckpoint``: if the log ever gets to that between two
rounds (a burst, or a core with no time to spare for the thread), a commit
checkpoints it as before. Where the header cannot be read, a round runs
every :data:`POLL` × 10 seconds instead. A writer in
another process (a CLI command) does not take the lock and still meets the
busy handler, as it always did.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from accord.store.db import (
    BUSY_TIMEOUT_MS,
    WAL_AUTOCHECKPOINT_PAGES,
    is_sqlite_file,
    writer_lock,
)

__all__ = [
    "CHECKPOINT_NICE",
    "MAX_PASSES",
    "ROUND_FRAMES",
    "CheckpointRound",
    "WalCheckpointer",
    "lower_priority",
]

log = structlog.get_logger("accord.store.checkpoint")

#: Log frames a round is paced to cover: below ``wal_autocheckpoint``, so that
#: commits do not checkpoint themselves, and large enough that the index pages
#: every batch dirties again are copied once per round rather than many times.
ROUND_FRAMES = WAL_AUTOCHECKPOINT_PAGES // 2
#: Seconds between two looks at the log's length.
POLL = 0.02
#: The wal-index header's format version, and where its frame count is.
_WAL_INDEX_VERSION = 3007000
_WAL_INDEX_HEADER = struct.Struct("=IIIBBHI")
#: A pass beside the writers that took longer than this many seconds (times the
#: passes so far) is followed by another, up to :data:`MAX_PASSES`.
QUICK_PASS = 0.02
MAX_PASSES = 3
#: How much lower the thread's priority is than the writers' (a nice increment).
#: It still gets a share of a busy core, so a round always ends; where the
#: core has idle time, the copying happens in it.
CHECKPOINT_NICE = 10

#: flushes a file's data to disk (``fsync`` where there is no ``fdatasync``)
_fdatasync = getattr(os, "fdatasync", os.fsync)


@dataclass(frozen=True, slots=True)
class CheckpointRound:
    """What one round did."""

    grown_frames: int
    """Frames in the log when the round began: written since the log last started again."""
    passes: int
    """Passive passes beside the writers."""
    log_frames: int
    """Frames in the log at the last pass."""
    copied_frames: int
    """Frames of those copied into the database: all of them, unless a reader
    in another process still needed older pages."""
    pass_seconds: float
    """Wall time of the passes beside the writers."""
    locked_seconds: float
    """How long the last pass held the writers (0 if nothing was left to copy)."""
    flush_seconds: float = 0.0
    """Wall time flushing the log and the database file to disk before the
    writers were held (0 if nothing was left to copy)."""


def lower_priority(nice: int) -> bool:
    """Lower the calling thread's scheduling priority by ``nice`` (at most to 19),
    where threads have their own (Linux); ``False`` where it could not."""
    try:
        thread = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(now + nice, 19))
    except (AttributeError, OSError):
        return False
    return True


class WalCheckpointer:
    """A background thread that keeps a SQLite file's WAL short (see the module)."""

    def __init__(
        self, engine: Engine, *, round_frames: int = ROUND_FRAMES, nice: int = CHECKPOINT_NICE
    ) -> None:
        if not is_sqlite_file(engine.url):
            raise ValueError(f"background checkpoints are for a SQLite file, not {engine.url}")
        self._path = engine.url.database or ""
        self._lock = writer_lock(engine)
        self._round_frames = round_frames
        self._nice = nice
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._db_guard = threading.Lock()
        self._shm: int | None = None
        self._shm_guard = threading.Lock()
        self._blind = 0
        #: Rounds run (each returns what it did as a :class:`CheckpointRound`).
        self.rounds = 0

    @classmethod
    def for_engine(cls, engine: Engine) -> WalCheckpointer | None:
        """A checkpointer for a SQLite file; ``None`` for PostgreSQL or memory."""
        return cls(engine) if is_sqlite_file(engine.url) else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db = db
        return self._db

    def _passive(self) -> tuple[int, int]:
        _busy, frames, copied = (
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        )
        # -1, -1 where the file is not in WAL mode: nothing to do
        return max(int(frames), 0), max(int(copied), 0)

    def run_round(self) -> CheckpointRound:
        """One round: passive passes beside the writers, then the rest under the lock."""
        with self._db_guard:
            started = time.monotonic()
            grown, copied = self._passive()
            frames, passes = grown, 1
            elapsed = time.monotonic() - started
            while elapsed > QUICK_PASS * passes and passes < MAX_PASSES:
                frames, copied = self._passive()
                passes += 1
                elapsed = time.monotonic() - started
            held = flushed = 0.0
            # frames written during the last pass, if any, are copied with the
            # writers held; then the next commit starts the log again
            if frames and self.log_frames() != copied:
                flushed = self._flush()
                with self._lock:
                    locked_at = time.monotonic()
                    frames, copied = self._passive()
                    held = time.monotonic() - locked_at
            self.rounds += 1
            return CheckpointRound(grown, passes, frames, copied, elapsed, held, flushed)

    def _flush(self) -> float:
        """Flush the log and the database file to disk, beside the writers; the seconds it took.

        What the passes copied would otherwise be flushed by the pass under
        the lock (see the module). A file that cannot be opened or flushed
        here is left to SQLite, which flushes it under the lock as before.
        """
        started = time.monotonic()
        for suffix in ("-wal", ""):
            try:
                fd = os.open(self._path + suffix, os.O_RDONLY)
            except OSError:
                continue
            try:
                _fdatasync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)
        return time.monotonic() - started

    def start(self) -> WalCheckpointer:
        """Start the thread (once; a started checkpointer is left as it is)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="accord-wal-checkpoint", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close its connection; the log is left to the commits."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)
        with self._db_guard:
            db, self._db = self._db, None
            if db is not None:
                db.close()
        with self._shm_guard:
            shm, self._shm = self._shm, None
            if shm is not None:
                os.close(shm)

    def log_frames(self) -> int | None:
        """Frames in the log now, from the wal-index header; ``None`` if it cannot be read."""
        try:
            with self._shm_guard:
                if self._shm is None:
                    self._shm = os.open(self._path + "-shm", os.O_RDONLY)
                header = os.pread(self._shm, _WAL_INDEX_HEADER.size, 0)
        except OSError:
            return None
        if len(header) < _WAL_INDEX_HEADER.size:
            return None
        version, _unused, _change, initialised, _big_endian, _page, frames = (
            _WAL_INDEX_HEADER.unpack(header)
        )
        if version != _WAL_INDEX_VERSION or not initialised:
            return None
        return int(frames)

    def _due(self) -> bool:
        frames = self.log_frames()
        if frames is None:
            self._blind += 1
            return self._blind % 10 == 0
        return frames >= self._round_frames

    def _run(self) -> None:
        lower_priority(self._nice)
        try:
            # held open while the thread runs, so SQLite keeps the -shm file
            # whose header is read (it removes it when the last connection closes)
            with self._db_guard:
                self._connection()
        except sqlite3.Error as exc:
            log.warning("background checkpoints unavailable; commits checkpoint", error=repr(exc))
            return
        while not self._stop.wait(POLL):
            if not self._due():
                continue
            try:
                self.run_round()
            except sqlite3.Error as exc:
                log.warning("background checkpoint failed; commits checkpoint", error=repr(exc))
                self._stop.wait(POLL * 50)
