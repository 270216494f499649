"""Engines and migrations: the only place the store decides how to connect.

Two deployments, one schema (see ``docs/store.md``):

* **embedded** (the default): one SQLite file, ``accord.db`` in the working
  directory. SQLite's defaults (rollback journal, ``synchronous=FULL``) cost
  about twenty times the throughput Accord needs, so the file is switched to WAL
  once (the mode is stored in the file itself) and every connection runs with
  ``synchronous=NORMAL`` — durable across a process crash, which is what the
  workflow engine's recovery relies on — with a larger page cache and less
  frequent checkpoints than SQLite's defaults, plus a busy timeout so that concurrent
  writers wait for the lock instead of failing at once, and foreign keys on, so
  SQLite enforces what PostgreSQL enforces.
* **scale-out**: PostgreSQL through psycopg 3, selected only by
  ``ACCORD_DATABASE_URL``. ``pool_pre_ping`` stays off: it doubles the round
  trips of every checkout and the workers reconnect on error anyway.

Nothing here runs at import time; :func:`make_engine` is called from the
composition root and does not connect until the engine is first used.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CACHE_KIB",
    "DATABASE_URL_ENV",
    "MIGRATIONS",
    "WAL_AUTOCHECKPOINT_PAGES",
    "alembic_config",
    "current_revision",
    "default_url",
    "head_revision",
    "is_sqlite_file",
    "make_engine",
    "upgrade",
    "write_transaction",
    "writer_lock",
]

#: The environment variable that points the store at another database.
DATABASE_URL_ENV = "ACCORD_DATABASE_URL"
#: How long a SQLite connection waits for another writer before giving up.
BUSY_TIMEOUT_MS = 10_000
#: Page cache of each SQLite connection, in KiB (SQLite's default is 2 MiB). A
#: batch touches the index pages of half a dozen tables with random keys; with
#: the default cache they are read back from the operating system's cache on
#: almost every batch. The cache grows only as pages are used.
CACHE_KIB = 65_536
#: WAL pages after which a commit checkpoints (SQLite's default is 1,000, about
#: 4 MB). The pages a batch dirties are mostly the same index pages again, so a
#: less frequent checkpoint copies each of them once instead of many times:
#: about a fifth of the apply time at the default. The WAL grows to about 40 MB.
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: Where the Alembic environment and revisions ship, inside the package.
MIGRATIONS = Path(__file__).resolve().with_name("migrations")


def default_url() -> str:
    """``ACCORD_DATABASE_URL`` if set, else ``accord.db`` in the working directory.

    The SQLite path is made absolute now, so a later ``chdir`` cannot point the
    engine at a different (empty) file.
    """
    configured = os.environ.get(DATABASE_URL_ENV, "").strip()
    if configured:
        return configured
    return f"sqlite:///{Path.cwd() / 'accord.db'}"


def _normalise(url: str | URL) -> URL:
    parsed = make_url(url)
    # A bare postgresql:// would make SQLAlchemy look for psycopg2, which Accord
    # does not depend on; psycopg 3 is the driver.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or "mode=memory" in database
    )


def is_sqlite_file(url: URL) -> bool:
    """Whether ``url`` names a SQLite database in a file (not in memory)."""
    return url.get_backend_name() == "sqlite" and not _is_memory(url)


_writers: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_writers_guard = threading.Lock()


def writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """The lock this process's busy writers take around a write to ``engine``'s SQLite file.

    SQLite lets one connection write at a time. A connection that finds the
    file locked waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15,
    20, 25 ms and so on between looks, so a short insert arriving during a
    batch's transaction could sleep many milliseconds past its end. Writers in
    one process that take this lock first queue in Python instead, and the
    next one starts as soon as the one before commits. Writers that do not
    take it (another process, a rare write) still meet the busy handler, as
    before. For PostgreSQL, whose writers do not lock each other out, it is
    a lock that is never held.
    """
    if not is_sqlite_file(engine.url):
        return nullcontext()
    with _writers_guard:
        lock = _writers.get(engine)
        if lock is None:
            lock = _writers[engine] = threading.RLock()
        return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()``, taken in turn with this process's other busy writers
    (:func:`writer_lock`): the runtime's intake, batches and effect ledger."""
    with writer_lock(engine), engine.begin() as conn:
        yield conn


def make_engine(url: str | URL | None = None, **engine_options: Any) -> Engine:
    """An engine for ``url`` (default: :func:`default_url`) with Accord's settings.

    ``engine_options`` pass through to :func:`sqlalchemy.create_engine` (a test
    may want ``echo=True``); the SQLite pragmas are applied regardless.
    """
    parsed = _normalise(url if url is not None else default_url())
    if parsed.get_backend_name() == "postgresql":
        engine_options.setdefault("pool_pre_ping", False)
        return create_engine(parsed, **engine_options)
    engine = create_engine(parsed, **engine_options)
    if parsed.get_backend_name() == "sqlite":
        _install_sqlite_pragmas(engine, wal=not _is_memory(parsed))
    return engine


def _install_sqlite_pragmas(engine: Engine, *, wal: bool) -> None:
    state = {"wal_checked": not wal}

    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not state["wal_checked"]:
                # The journal mode is persistent in the file: switch it once per
                # engine (the first connection), not on every checkout.
                mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
                state["wal_checked"] = True
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)


def alembic_config() -> Config:
    """An Alembic configuration for the migrations shipped in the package.

    No ``alembic.ini`` is needed: the script location is the package directory,
    and :func:`upgrade` hands its own connection to ``env.py``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (default: the newest).

    Safe to run on every start: an up-to-date database is left as it is.
    """
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of Accord."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS}")
    return head
