"""The canonical store: records and their versions, xref, inbox, effect ledger,
exception queue, poll cursors and the hash-chained audit log.

One schema on SQLite (embedded, the default) and PostgreSQL (scale-out),
chosen by ``ACCORD_DATABASE_URL`` alone. Build the engine in the composition
root with :func:`make_engine`, bring the schema up to date with
:func:`upgrade`, and use the repositories inside a transaction you own::

    engine = make_engine()          # ACCORD_DATABASE_URL, else ./accord.db
    upgrade(engine)
    with engine.begin() as conn:
        if Inbox(conn).accept("stripe", event_id, event_type=kind, payload=body):
            ...

See ``docs/store.md``.
"""

from accord.store.api_tables import api_idempotency, api_keys, exception_actions
from accord.store.audit import (
    AuditEntry,
    AuditProblem,
    AuditReport,
    append,
    append_many,
    canonical_json,
    content_digest,
    entries,
    entry_hash,
    json_document,
    verify,
)
from accord.store.db import (
    DATABASE_URL_ENV,
    alembic_config,
    current_revision,
    default_url,
    head_revision,
    make_engine,
    upgrade,
)
from accord.store.quota_tables import quota_state, quota_usage
from accord.store.reconcile_tables import reconcile_discrepancies, reconcile_runs
from accord.store.repo import (
    EFFECT_LIFECYCLE,
    EXCEPTION_LIFECYCLE,
    Clock,
    Cursors,
    EffectRecord,
    Effects,
    ExceptionItem,
    Exceptions,
    IdempotencyConflict,
    Inbox,
    InboxEvent,
    InboxIntake,
    NotFound,
    PutItem,
    PutResult,
    Raised,
    Records,
    RecordVersion,
    StaleVersion,
    StoredRecord,
    Xref,
    XrefConflict,
    XrefLink,
    changed_fields,
    utc_now,
)
from accord.store.tables import EffectStatus, ExceptionState, InboxStatus, metadata

__all__ = [
    "DATABASE_URL_ENV",
    "EFFECT_LIFECYCLE",
    "EXCEPTION_LIFECYCLE",
    "AuditEntry",
    "AuditProblem",
    "AuditReport",
    "Clock",
    "Cursors",
    "EffectRecord",
    "EffectStatus",
    "Effects",
    "ExceptionItem",
    "ExceptionState",
    "Exceptions",
    "IdempotencyConflict",
    "Inbox",
    "InboxIntake",
    "InboxEvent",
    "InboxStatus",
    "NotFound",
    "PutItem",
    "PutResult",
    "Raised",
    "RecordVersion",
    "Records",
    "StaleVersion",
    "StoredRecord",
    "Xref",
    "XrefConflict",
    "XrefLink",
    "alembic_config",
    "api_idempotency",
    "api_keys",
    "append",
    "append_many",
    "canonical_json",
    "changed_fields",
    "content_digest",
    "current_revision",
    "default_url",
    "entries",
    "entry_hash",
    "exception_actions",
    "head_revision",
    "json_document",
    "make_engine",
    "metadata",
    "quota_state",
    "quota_usage",
    "reconcile_discrepancies",
    "reconcile_runs",
    "upgrade",
    "utc_now",
    "verify",
]
