"""The API's request and response bodies (pydantic), shared by the routers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ExceptionAction",
    "ExceptionOut",
    "LinkOut",
    "PushIn",
    "PushOut",
    "RecordOut",
    "RecordPage",
    "VersionOut",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinkOut(BaseModel):
    system: str
    external_object: str
    external_id: str
    etag: str | None
    last_synced: datetime | None


class RecordOut(BaseModel):
    entity_type: str
    id: str
    version: int
    data: dict[str, Any]
    updated_by_system: str
    updated_at: datetime
    links: list[LinkOut] = []


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_after: str | None = Field(
        None, description="Pass as `after` for the next page; null on the last page."
    )


class VersionOut(BaseModel):
    version: int
    data: dict[str, Any]
    changed_fields: list[str]
    system: str
    actor: str
    trace_id: str | None
    at: datetime


class PushIn(_In):
    """A change pushed on behalf of a system without webhooks; it goes through the inbox."""

    system: str = Field(pattern=_ID, description="The system the change comes from.")
    external_id: str = Field(min_length=1, max_length=200)
    external_object: str | None = Field(
        None, min_length=1, max_length=100, description="Default: the resource's entity type."
    )
    event_id: str | None = Field(
        None,
        pattern=_ID,
        description="The system's id of this change; a repeat is acknowledged and ignored. "
        "Default: derived from the Idempotency-Key or the fields.",
    )
    fields: dict[str, Any] = Field(description="Canonical field values (money in minor units).")


class PushOut(BaseModel):
    accepted: bool = Field(description="False when the event was already in the inbox.")
    system: str
    event_id: str
    trace_id: str


class ActionOut(BaseModel):
    action: str
    actor: str
    role: str
    reason: str | None
    at: datetime


class BusinessContext(BaseModel):
    account: str | None = None
    project: str | None = None
    invoice: str | None = None
    amount_minor: int | None = None
    currency: str | None = None


class ExceptionOut(BaseModel):
    id: str
    type: str
    role: str
    state: str
    summary: str
    business: BusinessContext
    context: dict[str, Any]
    assignee: str | None
    resolution: str | None
    created_at: datetime
    updated_at: datetime
    age_seconds: float
    trace_id: str | None
    history: list[ActionOut] = []


class AssignIn(_In):
    assignee: str = Field(min_length=1, max_length=200, description="Who takes the item.")


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=2000, description="Why; kept with the item.")


class ExceptionAction(BaseModel):
    item: ExceptionOut
    result: dict[str, Any] | None = None
