"""Errors as ``application/problem+json`` (RFC 9457), naming the field at fault.

Every error the API returns has the same shape::

    {"type": "urn:accord:problem:validation", "title": "Invalid request",
     "status": 422, "detail": "body.reason: Field required",
     "errors": [{"field": "body.reason", "message": "Field required"}],
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}

:class:`Problem` is raised by routes and middleware; :func:`install` maps it,
FastAPI's validation errors, Accord's own error hierarchy and anything
unexpected to that shape, so a client never has to parse two kinds of error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from accord.errors import AccordError, InvalidInput, InvalidTransition, RuleViolation

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "Problem",
    "ProblemBody",
    "install",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger("accord.api")

_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Unavailable",
}


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is: `body.reason`, `query.limit`, …")
    message: str


class ProblemBody(BaseModel):
    """The body of every error response."""

    type: str = Field(description="A URN naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = None
    trace_id: str | None = None
    errors: list[FieldError] = []
    retry_after: float | None = None


class Problem(Exception):
    """An error response; ``kind`` becomes ``urn:accord:problem:<kind>``."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.retry_after = retry_after


def problem_response(
    problem: Problem, *, instance: str | None = None, trace_id: str | None = None
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:accord:problem:{problem.kind}",
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        "trace_id": trace_id,
        "errors": [{"field": f, "message": m} for f, m in problem.errors],
    }
    if problem.retry_after is not None:
        body["retry_after"] = problem.retry_after
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def from_accord_error(exc: AccordError) -> Problem:
    """Map Accord's error hierarchy: bad input 422, broken rules 409, passing faults 503."""
    if isinstance(exc, InvalidInput):
        where = ".".join(p for p in (exc.record, exc.field) if p)
        errors = [(where, exc.message)] if where else []
        return Problem(422, "invalid-input", str(exc), errors=errors)
    if isinstance(exc, InvalidTransition):
        return Problem(409, "invalid-transition", str(exc))
    if isinstance(exc, RuleViolation):
        return Problem(409, "rule-violation", str(exc))
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return Problem(503, "unavailable", str(exc), headers=headers, retry_after=exc.retry_after)


def _trace_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("trace_id")
    return str(value) if value else None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, instance=request.url.path, trace_id=_trace_id(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for error in exc.errors():
            loc = list(error.get("loc", ()))
            if error.get("type") == "json_invalid":
                message = f"not valid JSON: {error.get('ctx', {}).get('error', 'malformed')}"
            else:
                message = str(error.get("msg", "invalid"))
            errors.append((_field(loc), message))
        detail = "; ".join(f"{f}: {m}" for f, m in errors) or "invalid request"
        problem = Problem(422, "validation", detail, errors=errors)
        return problem_response(problem, instance=request.url.path, trace_id=_trace_id(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        problem = Problem(exc.status_code, kind, str(exc.detail), headers=exc.headers)
        return problem_response(problem, instance=request.url.path, trace_id=_trace_id(request))

    async def on_accord(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AccordError)
        problem = from_accord_error(exc)
        return problem_response(problem, instance=request.url.path, trace_id=_trace_id(request))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("request failed", error=type(exc).__name__, path=request.url.path)
        problem = Problem(500, "internal", "an unexpected error occurred; see the server log")
        return problem_response(problem, instance=request.url.path, trace_id=_trace_id(request))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(AccordError, on_accord)
    app.add_exception_handler(Exception, on_unexpected)
