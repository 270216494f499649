"""What routes share: the store, the hub (when running in-process), settings, the caller."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request
from sqlalchemy import Engine

from accord.api.auth import Permission, Principal, roles_for
from accord.api.governance import PERMISSION_KEY, PUBLIC
from accord.api.problems import Problem
from accord.config import Settings
from accord.connectors.base import WebhookEvent

if TYPE_CHECKING:
    from accord.bootstrap import Hub

__all__ = ["ApiContext", "WebhookVerifier", "access", "context", "principal"]


class WebhookVerifier(Protocol):
    """What webhook ingress needs of a connector (``Connector.verify_webhook``)."""

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Sequence[WebhookEvent]: ...


@dataclass
class ApiContext:
    engine: Engine
    settings: Settings
    hub: Hub | None
    clock: Callable[[], datetime]
    verifiers: dict[str, Callable[[], WebhookVerifier]] = field(default_factory=dict)
    tracer: Any = None


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.accord
    return ctx


def principal(request: Request) -> Principal:
    """The caller the governance middleware authenticated for this route."""
    found = request.scope.get("state", {}).get("principal")
    if not isinstance(found, Principal):  # pragma: no cover - the middleware guarantees it
        raise Problem(401, "unauthenticated", "no authenticated caller")
    return found


def access(permission: Permission | str) -> dict[str, Any]:
    """``openapi_extra`` of a route: the permission it needs and the roles holding it."""
    if permission == PUBLIC:
        return {PERMISSION_KEY: PUBLIC, "x-accord-roles": []}
    perm = Permission(permission)
    return {PERMISSION_KEY: perm.value, "x-accord-roles": roles_for(perm)}
