"""The REST API's composition: :func:`create_app` builds the FastAPI application.

``create_app(hub_or_engine, settings)`` takes a running :class:`~accord.bootstrap.Hub`
(what ``accord serve`` passes: the API and the workers in one process) or just
an :class:`~sqlalchemy.Engine` (read-mostly use, tests), and nothing else
connects: the app opens no database, thread or socket of its own at build
time. Further routers (the console) are included with ``routers=`` or later
with ``app.include_router``; routes without an ``x-accord-permission`` are
left to their own access control.

Layers, outermost first: :class:`~accord.api.observability.Observability`
(trace, version header, metrics, log line) → :class:`~accord.api.governance.Governance`
(body limit, access, rate limit, idempotency) → FastAPI (validation, routes,
problem+json errors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from accord import __version__
from accord.api.auth import Authenticator, JwtVerifier
from accord.api.context import ApiContext, WebhookVerifier
from accord.api.governance import PERMISSION_KEY, PUBLIC, Governance, IdempotencyStore, RateLimiter
from accord.api.observability import (
    API_VERSION,
    Observability,
    StoreCollector,
    register_secret,
)
from accord.api.problems import PROBLEM_JSON, ProblemBody, install
from accord.api.routers import (
    exceptions,
    health,
    kpis,
    operations,
    reconciliation,
    records,
    traces,
    webhooks,
)
from accord.config import Settings, SystemConfig
from accord.connectors.base import Capability, Connector
from accord.console import console_router
from accord.errors import InvalidInput
from accord.store.repo import Clock, utc_now

if TYPE_CHECKING:
    from accord.bootstrap import Hub

__all__ = ["WEBHOOK_CONNECTORS", "create_app"]

_DESCRIPTION = """\
Accord's governed REST API: canonical records, webhook ingress, traces, the
exception queue, dead letters, the audit chain and KPIs. Send an API key
(`accord keys create --role ROLE`) or an OIDC token as `Authorization: Bearer …`.
Errors are `application/problem+json` naming the field at fault. Every `POST`
honours `Idempotency-Key`. See docs/api.md and docs/api-changelog.md.
"""

#: The connectors whose webhooks the API can verify, by ``connector`` name in accord.yaml.
WEBHOOK_CONNECTORS: Mapping[str, type[Connector]] = {}


def _webhook_connectors() -> Mapping[str, type[Connector]]:
    from accord.connectors.stripe.connector import StripeConnector

    found: dict[str, type[Connector]] = {"stripe": StripeConnector}
    found.update(WEBHOOK_CONNECTORS)
    return {k: v for k, v in found.items() if Capability.WEBHOOKS in v.capabilities}


def _verifier_factory(
    name: str, system: SystemConfig, cls: type[Connector]
) -> Callable[[], WebhookVerifier]:
    built: list[WebhookVerifier] = []

    def factory() -> WebhookVerifier:
        if built:
            return built[0]
        secret = system.webhook_secret()
        if not secret:
            raise InvalidInput(
                "no signing secret (set webhook_secret_env or webhook_secret_file)",
                record=f"systems.{name}",
                field="webhook_secret_env",
            )
        register_secret(secret)
        token = system.secret() or ""
        register_secret(token)
        connector = cls(
            base_url=system.base_url or "http://127.0.0.1",
            credentials={"api_key": token, "webhook_secret": secret},
        )
        built.append(connector)
        return connector

    return factory


def _fixed(verifier: WebhookVerifier) -> Callable[[], WebhookVerifier]:
    return lambda: verifier


_IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key and request get the stored response "
    "for at least 24 h; the same key with another request is refused (409).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}

_PROBLEM_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429, 503)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title="Accord API",
            version=__version__,
            openapi_version="3.1.0",
            summary="The governed REST API of the Accord integration hub",
            description=_DESCRIPTION,
            routes=app.routes,
            tags=None,
        )
        schema["info"]["x-api-version"] = API_VERSION
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (acc_…) or a JWT from the configured OIDC issuer.",
        }
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = ProblemBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, sub in schemas["Problem"].pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, methods in schema.get("paths", {}).items():
            for method, operation in methods.items():
                permission = operation.get(PERMISSION_KEY)
                if method == "post":
                    operation.setdefault("parameters", []).append(_IDEMPOTENCY_PARAMETER)
                responses = operation.setdefault("responses", {})
                statuses = list(_PROBLEM_STATUSES)
                if permission == PUBLIC:
                    operation["security"] = []
                    if "webhooks" not in path:
                        statuses = [400, 404, 413, 422, 429, 503]
                elif permission is not None:
                    operation["security"] = [{"bearer": []}]
                for status in statuses:
                    responses[str(status)] = {
                        "description": "A problem (RFC 9457) naming what is wrong",
                        "content": problem,
                        **(
                            {"headers": {"Retry-After": {"schema": {"type": "string"}}}}
                            if status in (429, 503)
                            else {}
                        ),
                    }
        app.openapi_schema = schema
        return schema

    return build


def create_app(
    hub_or_engine: Hub | Engine,
    settings: Settings,
    *,
    verifiers: Mapping[str, WebhookVerifier] | None = None,
    tracer_provider: TracerProvider | None = None,
    clock: Clock = utc_now,
    rate_clock: Callable[[], float] | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The API over a running hub or an engine.

    ``verifiers`` replaces the webhook verifiers built from ``settings.systems``
    (tests pass connectors with their own secrets); ``tracer_provider`` is
    where spans go; ``clock`` and ``rate_clock`` pin time in tests.
    """
    if isinstance(hub_or_engine, Engine):
        engine, hub = hub_or_engine, None
    else:
        engine, hub = hub_or_engine.engine, hub_or_engine
    api = settings.api
    factories: dict[str, Callable[[], WebhookVerifier]]
    if verifiers is not None:
        factories = {name: _fixed(v) for name, v in verifiers.items()}
        for verifier in verifiers.values():
            for value in (getattr(verifier, "credentials", None) or {}).values():
                register_secret(str(value))
    else:
        known = _webhook_connectors()
        factories = {
            name: _verifier_factory(name, system, known[system.connector])
            for name, system in settings.systems.items()
            if system.connector in known
        }
    provider = tracer_provider or TracerProvider()
    tracer = provider.get_tracer("accord.api", __version__)
    ctx = ApiContext(
        engine=engine,
        settings=settings,
        hub=hub,
        clock=clock,
        verifiers=factories,
        tracer=tracer,
    )
    app = FastAPI(
        title="Accord API",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.accord = ctx
    install(app)
    app.include_router(health.router)
    v1 = APIRouter(prefix="/v1")
    for module in (records, webhooks, traces, exceptions, operations, reconciliation, kpis):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(console_router())
    for extra in routers:
        app.include_router(extra)
    app.openapi = _openapi(app)  # type: ignore[method-assign]

    limiter = RateLimiter(
        api.rate_limit_per_second,
        api.rate_limit_burst,
        **({"clock": rate_clock} if rate_clock else {}),
    )
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine, limiter.usage))
    app.state.metrics = registry
    app.state.limiter = limiter
    jwt_verifier = JwtVerifier(api.oidc) if api.oidc is not None else None
    app.add_middleware(
        Governance,
        openapi=app.openapi,
        authenticator=Authenticator(engine, jwt_verifier),
        limiter=limiter,
        idempotency=IdempotencyStore(engine, timedelta(hours=api.idempotency_hours), clock),
        max_body_bytes=api.max_body_bytes,
    )
    app.add_middleware(Observability, tracer=tracer, registry=registry)
    return app
