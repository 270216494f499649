"""Governance at run time: body limits, access, per-key rate limits, idempotency.

One ASGI middleware, :class:`Governance`, applies these in order to every
request below ``/v1`` before any route code runs:

1. **Body size.** A ``Content-Length`` above ``api.max_body_bytes`` is refused
   with 413 before the body is read; a body without one is counted as it
   streams and refused at the limit.
2. **Access.** The route's permission (see :mod:`accord.api.auth`) decides:
   no or a bad credential → 401, a role without it → 403. Routes marked
   public (health, metrics, webhooks, which the vendor's signature guards)
   skip this step.
3. **Rate limit.** A token bucket per caller (per API key or token subject;
   per client address for public routes): ``rate_limit_burst`` at once, then
   ``rate_limit_per_second``. Over it → 429 with ``Retry-After``.
4. **Idempotency** (``POST`` with ``Idempotency-Key``), as Stripe documents it:
   the first request's response (status and body) is stored per caller and key
   for at least 24 h; a retry with the same key and the same request gets the
   stored response (``Idempotent-Replayed: true``); the same key with another
   request → 409; while the first is still running → 409 too. Responses of
   requests that never started executing (validation 422, 401, 403, 429) are
   not stored, so the request can be corrected and sent again with the key.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from anyio.to_thread import run_sync
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.api.auth import Authenticator, Permission, Principal
from accord.api.problems import Problem, problem_response
from accord.store.api_tables import api_idempotency
from accord.store.audit import canonical_json
from accord.store.repo import utc_now

__all__ = [
    "IDEMPOTENCY_HEADER",
    "PERMISSION_KEY",
    "PUBLIC",
    "Governance",
    "IdempotencyStore",
    "RateLimiter",
]

IDEMPOTENCY_HEADER = "idempotency-key"
#: The ``openapi_extra`` key under which each route names the permission it needs.
PERMISSION_KEY = "x-accord-permission"
#: The value of :data:`PERMISSION_KEY` for routes open without a credential.
PUBLIC = "public"
#: A running first request older than this is taken as abandoned (its process died).
_ABANDONED = timedelta(minutes=5)
#: Stored response headers worth replaying (the rest are per-request).
_REPLAYED_HEADERS = ("content-type", "location")
_MAX_KEY_LENGTH = 255


class RateLimiter:
    """Token buckets per caller: ``burst`` at once, refilled at ``rate`` per second.

    Kept in the process: each API process enforces the limit on its own
    traffic. ``clock`` is injectable for tests (monotonic seconds).
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        #: Requests refused so far, per caller (exported as a metric).
        self.refused = 0

    def take(self, who: str) -> float:
        """Take one token; returns 0 if granted, else the seconds until one is free."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            self.refused += 1
            return (1.0 - tokens) / self.rate

    def usage(self) -> dict[str, float]:
        """Share of each caller's burst in use now (0 idle, 1 exhausted)."""
        now = self._clock()
        with self._lock:
            return {
                who: 1.0 - min(float(self.burst), t + (now - at) * self.rate) / self.burst
                for who, (t, at) in self._buckets.items()
            }


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class IdempotencyStore:
    """Stored outcomes of POSTs by (caller, Idempotency-Key), in the store's database."""

    def __init__(self, engine: Engine, keep: timedelta, clock: Callable[[], datetime] = utc_now):
        self.engine = engine
        self.keep = keep
        self._clock = clock
        self._last_prune = 0.0

    def begin(self, principal: str, key: str, digest: str) -> StoredResponse | None:
        """Claim the key for this request; a stored response if it was already answered.

        Raises a 409 problem for another request under the same key, or for
        one still running.
        """
        now = self._clock()
        self._prune()
        for _ in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        api_idempotency.insert().values(
                            principal=principal,
                            key=key,
                            request_digest=digest,
                            state="running",
                            created_at=now,
                            expires_at=now + self.keep,
                        )
                    )
                return None
            except IntegrityError:
                pass
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(api_idempotency).where(
                        api_idempotency.c.principal == principal, api_idempotency.c.key == key
                    )
                ).one_or_none()
                if row is None:
                    continue  # expired and pruned meanwhile: claim again
                if row.expires_at <= now:
                    conn.execute(
                        delete(api_idempotency).where(
                            api_idempotency.c.principal == principal,
                            api_idempotency.c.key == key,
                        )
                    )
                    continue
                if row.request_digest != digest:
                    raise Problem(
                        409,
                        "idempotency-key-reused",
                        f"Idempotency-Key {key!r} was used for a different request; "
                        "a key names exactly one request",
                        errors=[("header.Idempotency-Key", "used for a different request")],
                    )
                if row.state == "done":
                    return StoredResponse(int(row.status_code), dict(row.headers or {}), row.body)
                if now - row.created_at > _ABANDONED:
                    conn.execute(
                        update(api_idempotency)
                        .where(
                            api_idempotency.c.principal == principal,
                            api_idempotency.c.key == key,
                            api_idempotency.c.state == "running",
                        )
                        .values(created_at=now, expires_at=now + self.keep)
                    )
                    return None
                raise Problem(
                    409,
                    "idempotency-key-in-use",
                    f"a request with Idempotency-Key {key!r} is still being processed; retry later",
                    headers={"Retry-After": "1"},
                )
        raise Problem(409, "idempotency-key-in-use", f"Idempotency-Key {key!r} is contended")

    def finish(self, principal: str, key: str, response: StoredResponse) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(api_idempotency)
                .where(api_idempotency.c.principal == principal, api_idempotency.c.key == key)
                .values(
                    state="done",
                    status_code=response.status,
                    headers=response.headers,
                    body=response.body,
                )
            )

    def release(self, principal: str, key: str) -> None:
        """Forget a claim whose request never started executing."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(api_idempotency).where(
                    api_idempotency.c.principal == principal,
                    api_idempotency.c.key == key,
                    api_idempotency.c.state == "running",
                )
            )

    def _prune(self) -> None:
        """Delete expired keys, at most once a minute."""
        mono = time.monotonic()
        if mono - self._last_prune < 60:
            return
        self._last_prune = mono
        with self.engine.begin() as conn:
            conn.execute(
                delete(api_idempotency).where(api_idempotency.c.expires_at <= self._clock())
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_digest(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests "the same" for idempotency: method, path, query, JSON body."""
    try:
        normal = canonical_json(json.loads(body)) if body.strip() else ""
    except (ValueError, UnicodeDecodeError):
        normal = body.decode("latin-1")
    material = f"{method}\n{path}\n{query}\n{normal}"
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


class Governance:
    """The ASGI middleware described in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        openapi: Callable[[], dict[str, Any]],
        authenticator: Authenticator,
        limiter: RateLimiter,
        idempotency: IdempotencyStore,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.openapi = openapi
        self._table: list[tuple[re.Pattern[str], str, str, str]] | None = None
        self.authenticator = authenticator
        self.limiter = limiter
        self.idempotency = idempotency
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except Problem as problem:
            state = scope.get("state", {})
            await problem_response(
                problem, instance=scope.get("path"), trace_id=state.get("trace_id")
            )(scope, receive, send)

    def _routes(self) -> list[tuple[re.Pattern[str], str, str, str]]:
        """(path regex, method, template, permission) of every documented operation."""
        if self._table is None:
            table = []
            for template, methods in self.openapi().get("paths", {}).items():
                regex, _, _ = compile_path(template)
                for method, operation in methods.items():
                    permission = str(operation.get(PERMISSION_KEY) or PUBLIC)
                    table.append((regex, method.upper(), template, permission))
            self._table = table
        return self._table

    def _permission(self, scope: Scope) -> str | None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        for regex, allowed, template, permission in self._routes():
            if allowed == method and regex.match(scope["path"]):
                scope.setdefault("state", {})["route_template"] = template
                return permission
        return None

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise Problem(400, "bad-request", "Content-Length is not a number") from None
            if size > self.max_body:
                raise Problem(
                    413,
                    "body-too-large",
                    f"the body is {size} bytes; at most {self.max_body} are accepted",
                )
        permission = self._permission(scope)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        if permission is None or permission == PUBLIC:
            client = scope.get("client") or ("local", 0)
            who = f"addr:{client[0]}"
        else:
            principal = await run_sync(
                self.authenticator.authenticate, _header(scope, b"authorization")
            )
            if not principal.can(Permission(permission)):
                raise Problem(
                    403,
                    "forbidden",
                    f"role {principal.role!r} may not do this ({permission})",
                )
            state["principal"] = principal
            who = principal.id
        wait = self.limiter.take(who)
        if wait > 0:
            after = max(1, int(wait + 0.999))
            raise Problem(
                429,
                "rate-limited",
                f"rate limit of {self.limiter.rate:g} requests/s "
                f"(burst {self.limiter.burst}) reached; retry after {after} s",
                headers={"Retry-After": str(after)},
                retry_after=after,
            )
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await self._buffered(receive)
        key = _header(scope, b"idempotency-key")
        principal_or_none: Principal | None = state.get("principal")
        if scope["method"] != "POST" or key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > _MAX_KEY_LENGTH:
            raise Problem(
                400,
                "bad-request",
                f"Idempotency-Key must be 1 to {_MAX_KEY_LENGTH} characters",
                errors=[("header.Idempotency-Key", "empty or too long")],
            )
        await self._idempotent(scope, receive, send, key, principal_or_none, who)

    async def _buffered(self, receive: Receive) -> Receive:
        """Read a body sent without Content-Length, refusing it once past the limit."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                raise Problem(
                    413, "body-too-large", f"the body exceeds {self.max_body} bytes and was refused"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _idempotent(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: str,
        principal: Principal | None,
        who: str,
    ) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        digest = request_digest(
            scope["method"], scope["path"], scope.get("query_string", b"").decode(), body
        )
        owner = principal.id if principal is not None else who
        stored = await run_sync(self.idempotency.begin, owner, key, digest)
        if stored is not None:
            raw = [(k.encode(), v.encode()) for k, v in stored.headers.items()]
            raw.append((b"idempotent-replayed", b"true"))
            raw.append((b"content-length", str(len(stored.body)).encode()))
            await send({"type": "http.response.start", "status": stored.status, "headers": raw})
            await send({"type": "http.response.body", "body": stored.body})
            return
        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0
        headers: dict[str, str] = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    lowered = name.decode("latin-1").lower()
                    if lowered in _REPLAYED_HEADERS:
                        headers[lowered] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await run_sync(self.idempotency.release, owner, key)
            raise
        if status in (0, 401, 403, 409, 422, 429) or status >= 500:
            await run_sync(self.idempotency.release, owner, key)
        else:
            stored_now = StoredResponse(status, headers, b"".join(parts))
            await run_sync(self.idempotency.finish, owner, key, stored_now)
