"""The canonical event stream: every committed change, in order, as a CloudEvent.

Producers call :meth:`EventStream.publish` after a canonical change commits;
consumers and operators replay by sequence or time. :func:`open_stream` picks
NATS JetStream when a URL is configured (``ACCORD_NATS_URL``) and an in-process
stream otherwise. See ``docs/events.md``.
"""

from __future__ import annotations

from accord.events.envelope import (
    CLOUDEVENTS_CONTENT_TYPE,
    DEFAULT_INSTANCE,
    SCHEMA_ID,
    CanonicalChange,
    change_event_id,
    envelope_schema,
    from_envelope,
    from_json,
    source_for,
    to_envelope,
    to_json,
)
from accord.events.stream import (
    DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_STREAM_NAME,
    DEFAULT_SUBJECT_PREFIX,
    EventStream,
    JetStreamStream,
    MemoryStream,
    Published,
    open_stream,
    replay_to_lines,
)

__all__ = [
    "CLOUDEVENTS_CONTENT_TYPE",
    "DEFAULT_DUPLICATE_WINDOW",
    "DEFAULT_INSTANCE",
    "DEFAULT_STREAM_NAME",
    "DEFAULT_SUBJECT_PREFIX",
    "SCHEMA_ID",
    "CanonicalChange",
    "EventStream",
    "JetStreamStream",
    "MemoryStream",
    "Published",
    "change_event_id",
    "envelope_schema",
    "from_envelope",
    "from_json",
    "open_stream",
    "replay_to_lines",
    "source_for",
    "to_envelope",
    "to_json",
]
