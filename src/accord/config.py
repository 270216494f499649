"""``accord.yaml``: the one configuration file, validated on load.

The file names the systems and their connectors, quota overrides, the
ownership policy, schedules and runtime settings. Secrets never live in it:
a system names the environment variable (``token_env``) or the file
(``token_file``) that holds its credential. ``ACCORD_DATABASE_URL`` and
``ACCORD_NATS_URL`` override storage and the event stream, so moving from the
embedded default to PostgreSQL and NATS is configuration only.

A bad file is refused with an error that names the key and its line:
``accord.yaml: systems.salesforce.role (line 12): unknown role 'crmm'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from accord.errors import InvalidInput
from accord.reconcile.settings import ReconcileSettings

__all__ = [
    "EXAMPLE",
    "ApiSettings",
    "ConfigError",
    "OidcSettings",
    "RuntimeSettings",
    "Settings",
    "SystemConfig",
    "load_settings",
]

Role = Literal["crm", "psa", "erp", "billing"]


class ConfigError(InvalidInput):
    """``accord.yaml`` is malformed; the message names the key and the line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Strict):
    initial_interval: float = Field(0.05, ge=0)
    backoff_coefficient: float = Field(2.0, ge=1)
    maximum_interval: float = Field(30.0, ge=0)
    maximum_attempts: int = Field(6, ge=1)


#: How far a batch grows during a backlog unless ``runtime.max_batch_size`` says.
DEFAULT_MAX_BATCH = 1_000


class RuntimeSettings(_Strict):
    batch_size: int = Field(100, ge=1, le=10_000)
    """Inbox events per workflow: one checkpointed workflow per micro-batch."""
    max_batch_size: int | None = Field(None, ge=1, le=10_000)
    """How far a batch may grow while a backlog lasts (default: 1,000, or
    ``batch_size`` if that is larger). On embedded SQLite, where the hub's
    process is the only worker, each claim takes every due event up to this
    size. Where workers share a PostgreSQL store, each claim that comes back
    full doubles the next one, up to this, so that they share a burst; the
    first that does not resets it to ``batch_size``. Bigger batches share a
    workflow's fixed cost among more events, so a backlog (a burst, a
    backfill) is worked off faster, while events arriving one by one still go
    in small, quick batches."""
    batch_wait_ms: int = Field(20, ge=0, le=10_000)
    """How long a batch of fewer than ``batch_size`` events may fill before it
    is dispatched. A backlog never waits: a claim that finds ``batch_size``
    events due goes at once."""
    concurrency: int = Field(1, ge=1, le=256)
    """Dispatcher threads (batches in flight) per worker process."""
    lease_seconds: float = Field(30.0, gt=0)
    """How long a claimed event is held before another worker may take it over."""
    gc_threshold: int = Field(10_000, ge=0)
    """Allocations between two runs of Python's cyclic garbage collector on its
    youngest generation, set when the hub starts (``0`` leaves the interpreter's
    settings alone). At Python's default of 700 the collector ran many times a
    second under load and walked the hub's whole in-memory state (the event
    stream it keeps, the caches) again and again: about 30 % of the CPU at
    5,000 events/s, and the longest pauses behind the latency tail. The
    runtime's objects are freed by reference counting; the collector is only
    for cycles, which it still finds. Not much higher either: where DBOS builds
    its SQLite statements per call (``prepared_workflow_statements: false``),
    each leaves a few dozen objects in reference cycles, so the young
    generation fills with garbage only the collector frees; at 50,000 each
    collection walked about 40,000 of them, a pause of 30–60 ms, where at
    10,000 it takes under 11 ms."""
    background_checkpoint: bool = True
    """On a SQLite file, copy the write-ahead log back into the database from a
    thread of its own at low priority, instead of inside whichever commit finds
    the log full (see ``docs/store.md``). That commit, an intake insert or a
    batch, used to wait tens of milliseconds, and every event behind it with
    it. ``false`` leaves checkpoints to the commits, as SQLite does by itself.
    Ignored on PostgreSQL."""
    prepared_workflow_statements: bool = True
    """On SQLite, let DBOS build and compile the statements that start and end a
    workflow once and reuse their SQL, as it does on PostgreSQL, instead of on
    every call: about 1 ms of CPU less per batch (``accord.runtime.dbos_sqlite``;
    applied only to the DBOS versions it was checked against). ``false`` leaves
    DBOS as it is."""
    retry: RetrySettings = RetrySettings()

    @model_validator(mode="after")
    def _batch_bounds(self) -> RuntimeSettings:
        if self.max_batch_size is not None and self.max_batch_size < self.batch_size:
            raise ValueError(
                f"max_batch_size ({self.max_batch_size}) must be at least "
                f"batch_size ({self.batch_size})"
            )
        return self

    @property
    def largest_batch(self) -> int:
        """The size a batch may grow to while a backlog lasts."""
        if self.max_batch_size is None:
            return max(DEFAULT_MAX_BATCH, self.batch_size)
        return self.max_batch_size


class SystemConfig(_Strict):
    role: Role
    connector: str
    base_url: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    webhook_secret_env: str | None = None
    """Environment variable holding the webhook signing secret (``/v1/webhooks/{system}``)."""
    webhook_secret_file: str | None = None
    """File holding the webhook signing secret, instead of an environment variable."""
    quota: dict[str, float] = {}
    credentials_env: dict[str, str] = {}
    """Further named credentials, each read from an environment variable: NetSuite's
    ``{account_id, consumer_key, consumer_secret, token_id, token_secret}``."""

    def credentials(self) -> dict[str, str]:
        """The named credentials of ``credentials_env``, read now; unset ones left out."""
        found = {name: os.environ.get(env, "") for name, env in self.credentials_env.items()}
        return {name: value for name, value in found.items() if value}

    def secret(self) -> str | None:
        """The credential, read now from the environment or file the config names."""
        if self.token_env:
            return os.environ.get(self.token_env)
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return None

    def webhook_secret(self) -> str | None:
        """The webhook signing secret, read now from the environment or file the config names."""
        if self.webhook_secret_env:
            return os.environ.get(self.webhook_secret_env)
        if self.webhook_secret_file:
            return Path(self.webhook_secret_file).read_text().strip()
        return None


class OidcSettings(_Strict):
    """JWT bearer tokens from an OpenID Connect issuer (RS256, verified against its JWKS)."""

    issuer: str
    """The ``iss`` every token must carry."""
    audience: str
    """The ``aud`` every token must include."""
    jwks_url: str | None = None
    """Where the issuer publishes its signing keys (fetched and cached)."""
    jwks_file: str | None = None
    """A local copy of the JWKS instead of ``jwks_url``."""
    role_claim: str = "accord_role"
    """The claim that holds the Accord role (a string, or a list of which the first known wins)."""
    leeway_seconds: float = Field(30.0, ge=0, le=600)
    """Clock skew tolerated on ``exp`` and ``nbf``."""

    @model_validator(mode="after")
    def _one_key_source(self) -> OidcSettings:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of jwks_url and jwks_file")
        return self


class ApiSettings(_Strict):
    """The REST API served by ``accord serve``."""

    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    rate_limit_per_second: float = Field(50.0, gt=0)
    """Sustained requests per second allowed to one API key (token bucket refill)."""
    rate_limit_burst: int = Field(200, ge=1)
    """Requests one key may make at once before the sustained rate applies."""
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    """Larger request bodies are refused with 413 before they are read."""
    idempotency_hours: float = Field(24.0, ge=24.0)
    """How long an ``Idempotency-Key`` and its stored response are kept (at least 24 h)."""
    oidc: OidcSettings | None = None


class Settings(_Strict):
    accord: Literal[1] = 1
    instance: str = "accord"
    database_url: str = "sqlite:///accord.db"
    nats_url: str | None = None
    runtime: RuntimeSettings = RuntimeSettings()
    systems: dict[str, SystemConfig] = {}
    ownership: str | dict[str, Any] = "default"
    routes: list[dict[str, str]] = []
    """Which canonical changes go where: ``{entity_type, target, operation}``."""
    schedules: dict[str, str] = {}
    reconcile: ReconcileSettings = ReconcileSettings()
    """Scheduled reconciliation: cron, pairs and where their sides are read from."""
    api: ApiSettings = ApiSettings()


EXAMPLE = """\
# accord.yaml — Accord's configuration. Secrets never live here: each system
# names the environment variable (token_env) or file (token_file) holding it.
accord: 1
instance: my-firm

# Storage: one SQLite file by default. ACCORD_DATABASE_URL overrides it, e.g.
# postgresql+psycopg://accord@db.internal/accord for the scale-out mode.
database_url: sqlite:///accord.db

# Canonical event stream: in-process by default; ACCORD_NATS_URL (or this key)
# publishes every canonical change to NATS JetStream as a CloudEvent.
nats_url: null

runtime:
  batch_size: 100        # inbox events per checkpointed workflow
  max_batch_size: 1000   # how far a batch grows while a backlog lasts
  batch_wait_ms: 20      # how long a batch may fill before it is dispatched
  concurrency: 1         # dispatcher threads (batches in flight) per worker process
  lease_seconds: 30      # a claimed event returns to the queue if not done by then
  background_checkpoint: true  # SQLite: checkpoint the WAL from a thread, not in commits
  prepared_workflow_statements: true  # SQLite: DBOS compiles its hot statements once
  gc_threshold: 10000    # allocations between Python collector runs (0: leave the default)
  retry: {initial_interval: 0.05, backoff_coefficient: 2, maximum_interval: 30, maximum_attempts: 6}

systems:
  salesforce: {role: crm, connector: salesforce, base_url: "https://example.my.salesforce.com",
               token_env: SALESFORCE_TOKEN}
  harvest:    {role: psa, connector: harvest, token_env: HARVEST_TOKEN}
  netsuite:   {role: erp, connector: netsuite, token_env: NETSUITE_TOKEN}
  stripe:     {role: billing, connector: stripe, token_env: STRIPE_KEY}

# Who owns which object and field: "default" (the bundled policy) or a mapping.
ownership: default

# When scheduled work runs (cron syntax, UTC).
schedules:
  billing: "0 6 1 * *"
  reconciliation: "0 * * * *"

# The REST API of `accord serve` (docs/api.md). Keys: `accord keys create --role ROLE`.
api:
  host: 127.0.0.1
  port: 8700
  rate_limit_per_second: 50   # per API key, sustained
  rate_limit_burst: 200       # per API key, at once
  max_body_bytes: 1048576     # larger bodies are refused (413) before they are read
  idempotency_hours: 24       # Idempotency-Key replay window (at least 24)
  # oidc: {issuer: "https://login.example.com/", audience: accord,
  #        jwks_url: "https://login.example.com/.well-known/jwks.json", role_claim: accord_role}
"""


def _line_of(node: yaml.Node | None, path: tuple[int | str, ...]) -> int | None:
    """The 1-based line of ``path`` in a composed YAML document."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(key):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                return line
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_settings(text: str, source: str = "accord.yaml") -> Settings:
    try:
        raw = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(
            f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", record=source
        ) from None
    if not isinstance(raw, Mapping):
        raise ConfigError("the configuration must be a mapping", record=source)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        path = tuple(error["loc"])
        key = ".".join(str(p) for p in path) or "(root)"
        line = _line_of(root, path)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        where = f" (line {line})" if line else ""
        raise ConfigError(f"{message}", record=source, field=f"{key}{where}") from None


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``accord.yaml`` (``ACCORD_CONFIG`` or the working directory) and the overrides.

    A missing file is the embedded default: nothing has to be configured to start.
    """
    env = os.environ if env is None else env
    path = path or Path(env.get("ACCORD_CONFIG", "accord.yaml"))
    settings = Settings()
    if path.exists():
        settings = parse_settings(path.read_text(encoding="utf-8"), str(path))
    elif "ACCORD_CONFIG" in env:
        raise ConfigError(f"configuration file {path} does not exist", record=str(path))
    updates: dict[str, Any] = {}
    if env.get("ACCORD_DATABASE_URL"):
        updates["database_url"] = env["ACCORD_DATABASE_URL"]
    if env.get("ACCORD_NATS_URL"):
        updates["nats_url"] = env["ACCORD_NATS_URL"]
    return settings.model_copy(update=updates) if updates else settings
