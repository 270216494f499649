"""Canonical changes and their wire form: a CloudEvents 1.0 structured JSON envelope.

A :class:`CanonicalChange` is the one fact other parts of Accord (and outside
consumers) may rely on: record ``<entity_type>/<entity_id>`` reached ``version``
because of ``system``. On the wire it is a CloudEvent, so any CloudEvents
tooling can read the stream without Accord's code::

    {"specversion": "1.0", "id": "...", "source": "accord://<instance>",
     "type": "accord.invoice.changed", "subject": "invoice/<id>",
     "time": "...Z", "datacontenttype": "application/json", "traceid": "...",
     "data": {"entity_type": ..., "entity_id": ..., "version": ..., "system": ...,
              "changed_fields": [...], "record": {...}}}

The contract is a JSON Schema shipped beside this module
(``schemas/canonical-change.v1.json``). It is checked on the way out as well as
on the way in: a producer bug must fail at the producer, not in every consumer.
Both directions raise :class:`~accord.errors.InvalidInput` naming the envelope
field (``data.version``, ``subject``), because a malformed event never becomes
valid by retrying.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from jsonschema import Draft202012Validator, ValidationError

from accord.domain.ids import deterministic_id
from accord.errors import InvalidInput

__all__ = [
    "CLOUDEVENTS_CONTENT_TYPE",
    "DEFAULT_INSTANCE",
    "SCHEMA_ID",
    "CanonicalChange",
    "change_event_id",
    "envelope_schema",
    "from_envelope",
    "from_json",
    "source_for",
    "to_envelope",
    "to_json",
]

#: Media type of a structured-mode CloudEvent in JSON (the NATS ``Content-Type`` header).
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
#: Instance name used when the configuration names none.
DEFAULT_INSTANCE = "default"
#: ``$id`` of the envelope schema; bump the file name and this id together.
SCHEMA_ID = "https://accord.invalid/schemas/events/canonical-change.v1.json"

_SCHEMA_FILE = "canonical-change.v1.json"
_RECORD = "event"  # what InvalidInput names: "event.data.version: ..."
_INSTANCE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
_JSON_FORMAT = JSONFormat()


@dataclass(frozen=True, slots=True, kw_only=True)
class CanonicalChange:
    """One committed change to a canonical record, as other parts of Accord see it.

    Immutable because it describes the past: a consumer that wants a different
    view derives a new value instead of editing the fact. ``data`` is stored as
    a read-only mapping; it must hold JSON values only (money as integer minor
    units, decimals as strings), which is checked when the change is encoded.
    """

    event_id: str
    """Unique id of this event; the dedupe key (``Nats-Msg-Id``) of the stream.
    Use :meth:`create` or :func:`change_event_id` so a retried publish of the same
    change reuses the same id and is dropped as a duplicate."""
    entity_type: str
    """Canonical record type in snake_case (``invoice``, ``billable_item``)."""
    entity_id: str
    """Accord's id of the record, not any vendor's."""
    version: int
    """Version of the record after the change; starts at 1."""
    system: str
    """The system whose change caused this one (``salesforce``, ``xero``, ``accord``)."""
    changed_fields: tuple[str, ...]
    """Names of the fields the change set, so consumers can ignore irrelevant changes."""
    data: Mapping[str, Any] = field(hash=False)
    """The record's values after the change (at least the changed fields)."""
    trace_id: str
    """The trace that carries the change from the vendor event to its effects."""
    time: datetime
    """When the change was committed; timezone-aware, kept in UTC."""

    def __post_init__(self) -> None:
        # Only what the schema cannot see: a naive time would be silently guessed.
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise InvalidInput(
                "must be a timezone-aware datetime", record="canonical_change", field="time"
            )
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        object.__setattr__(self, "changed_fields", tuple(self.changed_fields))
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    @classmethod
    def create(
        cls,
        *,
        entity_type: str,
        entity_id: str,
        version: int,
        system: str,
        changed_fields: tuple[str, ...] | list[str],
        data: Mapping[str, Any],
        trace_id: str,
        time: datetime | None = None,
    ) -> CanonicalChange:
        """A change whose event id is derived from the record and version.

        Deriving the id (rather than minting a random one) is what makes a
        redelivery harmless: a workflow step that crashes after publishing and
        runs again publishes the same id, and the stream drops the copy.
        """
        return cls(
            event_id=change_event_id(entity_type, entity_id, version),
            entity_type=entity_type,
            entity_id=entity_id,
            version=version,
            system=system,
            changed_fields=tuple(changed_fields),
            data=data,
            trace_id=trace_id,
            time=time if time is not None else datetime.now(UTC),
        )


def change_event_id(entity_type: str, entity_id: str, version: int) -> str:
    """The event id of version ``version`` of a record: the same inputs, the same id.

    A record version is written once, so (type, id, version) names exactly one change.
    """
    return deterministic_id("canonical_change", entity_type, entity_id, str(version))


def source_for(instance: str) -> str:
    """The CloudEvents ``source`` of an Accord instance: ``accord://<instance>``.

    Checked here so that a bad instance name fails when a stream is opened, not
    on the first publish.
    """
    if not _INSTANCE.fullmatch(instance):
        raise InvalidInput(
            f"{instance!r} must be lowercase letters, digits, dots and hyphens",
            record="event_stream",
            field="instance",
        )
    return f"accord://{instance}"


@cache
def envelope_schema() -> Mapping[str, Any]:
    """The JSON Schema of the envelope, loaded once from the package data."""
    text = resources.files("accord.events").joinpath("schemas", _SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return MappingProxyType(schema)


@cache
def _validator() -> Draft202012Validator:
    schema = dict(envelope_schema())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _field_of(error: ValidationError) -> str | None:
    """The dotted envelope path an error is about, down to the missing or extra key."""
    path = [str(part) for part in error.absolute_path]
    instance = error.instance
    required = error.validator_value
    if error.validator == "required" and isinstance(instance, Mapping):
        names = required if isinstance(required, list) else []
        missing = [str(name) for name in names if name not in instance]
        path.extend(missing[:1])
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        path.extend(sorted(name for name in instance if name not in known)[:1])
    return ".".join(path) or None


def _check(doc: Any) -> None:
    """Raise InvalidInput for the most specific schema violation in ``doc``."""
    errors = list(_validator().iter_errors(doc))
    if not errors:
        return
    # The deepest error names the root cause: a bad data.entity_type also breaks
    # the top-level type and subject patterns, but the person should fix the former.
    error = max(errors, key=lambda e: len(e.absolute_path))
    where = _field_of(error)
    message = error.message
    if error.validator == "required" and where:
        message = "is required"
    elif error.validator == "additionalProperties":
        message = "is not a field of the envelope"
    raise InvalidInput(message, record=_RECORD, field=where)


def _cloudevent(change: CanonicalChange, source: str) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": change.event_id,
        "source": source,
        "type": f"accord.{change.entity_type}.changed",
        "subject": f"{change.entity_type}/{change.entity_id}",
        "time": change.time,
        "datacontenttype": "application/json",
        "traceid": change.trace_id,
    }
    data = {
        "entity_type": change.entity_type,
        "entity_id": change.entity_id,
        "version": change.version,
        "system": change.system,
        "changed_fields": list(change.changed_fields),
        "record": dict(change.data),
    }
    try:
        return CloudEvent(attributes, data)
    except CloudEventValidationError as exc:
        name = next(iter(exc.errors), None)
        raise InvalidInput(str(exc), record=_RECORD, field=name) from exc


def to_json(change: CanonicalChange, *, instance: str = DEFAULT_INSTANCE) -> bytes:
    """Encode ``change`` as the UTF-8 bytes of its structured CloudEvent.

    The CloudEvents SDK writes the envelope (RFC 3339 times with ``Z``), and the
    result is validated against the schema before it can reach the stream.
    """
    event = _cloudevent(change, source_for(instance))
    try:
        body = _JSON_FORMAT.write(event)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"holds a value JSON cannot carry ({exc}); use minor units or strings",
            record=_RECORD,
            field="data.record",
        ) from exc
    _check(json.loads(body))
    return body


def to_envelope(change: CanonicalChange, *, instance: str = DEFAULT_INSTANCE) -> dict[str, Any]:
    """The structured CloudEvent of ``change`` as a JSON-ready dict (validated)."""
    envelope: dict[str, Any] = json.loads(to_json(change, instance=instance))
    return envelope


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise InvalidInput(
            f"{text!r} is not an RFC 3339 time", record=_RECORD, field="time"
        ) from exc
    return parsed.astimezone(UTC)


def from_envelope(doc: Any) -> CanonicalChange:
    """Read a change back from a decoded envelope, refusing anything off-contract.

    Beyond the schema, the redundant parts must agree: ``type`` and ``subject``
    repeat ``data.entity_type`` and ``data.entity_id`` for routing and filtering,
    and an envelope where they differ was not written by Accord.
    """
    _check(doc)
    data = doc["data"]
    entity_type, entity_id = data["entity_type"], data["entity_id"]
    if doc["type"] != f"accord.{entity_type}.changed":
        raise InvalidInput(
            f"{doc['type']!r} does not match data.entity_type {entity_type!r}",
            record=_RECORD,
            field="type",
        )
    if doc["subject"] != f"{entity_type}/{entity_id}":
        raise InvalidInput(
            f"{doc['subject']!r} is not {entity_type}/{entity_id}", record=_RECORD, field="subject"
        )
    return CanonicalChange(
        event_id=doc["id"],
        entity_type=entity_type,
        entity_id=entity_id,
        version=int(data["version"]),  # JSON Schema also accepts 2.0 as an integer
        system=data["system"],
        changed_fields=tuple(data["changed_fields"]),
        data=data["record"],
        trace_id=doc["traceid"],
        time=_parse_time(doc["time"]),
    )


def from_json(body: bytes | str) -> CanonicalChange:
    """Decode a structured CloudEvent (bytes or text) into a change."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"is not JSON ({exc})", record=_RECORD) from exc
    return from_envelope(doc)
