"""The NetSuite connector: SuiteTalk REST, token-based auth, SuiteQL reads, upserts by external id.

Auth. Every request is signed with OAuth 1.0a, HMAC-SHA256, under the
integration's consumer key and secret and the user's token id and secret
(:mod:`accord.connectors.netsuite.auth`); the timestamp and nonce are fresh per
request, as NetSuite refuses a nonce it has seen and a timestamp far from its
clock.

Reads. The record service lists changed records (``GET /record/v1/{type}?q=
lastModifiedDate ON_OR_AFTER "…"``) but a list holds only ids and links, so
reading N changed records that way costs N + ⌈N/1000⌉ calls (one ``GET`` per
body). SuiteQL returns whole rows, up to 1,000 a call: ``POST
/services/rest/query/v1/suiteql`` with ``Prefer: transient`` and ``SELECT * FROM
{table} WHERE lastmodifieddate >= … ORDER BY lastmodifieddate, id`` reads N
changes in ⌈(N+1)/1000⌉ calls, so the connector reads with SuiteQL. Pages are
keyset pages, not offsets: each asks for the rows after the last
``(lastmodifieddate, id)`` read, so a record modified during the read moves
*ahead* of the reader instead of shifting an unread row behind an offset. The
filter is inclusive (``>=``): rows sharing the cursor's stamp are read again
and the framework's cursor skips those already seen. SuiteQL rows are flat
(no sublists); an invoice's lines are read with :meth:`NetSuiteConnector.get`.

Writes. NetSuite's REST record service has no multi-record write, so each
record is one call. A create or upsert is ``PUT
/record/v1/{type}/eid:{externalId}`` — NetSuite's upsert by external id, which
is idempotent by nature — with the external id set to the request's
``external_id`` (the canonical id) or, failing that, the effect's idempotency
key. NetSuite answers ``204`` with the record's URL in ``Location``; the
internal id is its last segment. An ``update`` is ``PATCH
/record/v1/{type}/{id}`` of the same values, equally safe to repeat. After a
lost response, :meth:`NetSuiteConnector.lookup` finds the record by ``GET
/record/v1/{type}/eid:{externalId}``.

Concurrency. A NetSuite account has a number of concurrency slots (15 on the
shared tier) shared with every other integration; a request over the limit is
refused with ``429 SSS_REQUEST_LIMIT_EXCEEDED``. Every call passes the quota
governor under the name ``netsuite`` (default ``QuotaPolicy(concurrency=15)``,
overridden per account in ``accord.yaml``), so Accord stays inside its slots.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from accord.connectors.base import (
    Capability,
    Connector,
    Cursor,
    NotSupported,
    Page,
    VendorRecord,
    WriteRequest,
)
from accord.connectors.netsuite import auth, mapping
from accord.errors import InvalidInput
from accord.runtime.effects import EffectOutcome

__all__ = [
    "MAX_PAGE",
    "QUERY_PATH",
    "RECORD_PATH",
    "NetSuiteConnector",
    "record_type",
    "realm_of",
    "suiteql",
]

RECORD_PATH = "/services/rest/record/v1"
QUERY_PATH = "/services/rest/query/v1/suiteql"
MAX_PAGE = 1000
"""The most rows SuiteQL returns in one call."""

_ALIASES = {
    "account": "customer",
    "project": "job",
    "credit_memo": "creditMemo",
    "creditmemo": "creditMemo",
    "payment": "customerPayment",
    "customerpayment": "customerPayment",
}
_READ_ONLY_KEYS = ("id", "externalId", "lastModifiedDate", "links")
_CREDENTIALS = ("account_id", "consumer_key", "consumer_secret", "token_id", "token_secret")


def record_type(name: str) -> str:
    """The REST record type of ``name`` (canonical aliases accepted: ``account`` → ``customer``)."""
    resolved = _ALIASES.get(name, _ALIASES.get(name.lower(), name))
    if resolved not in mapping.RECORD_TYPES:
        raise NotSupported(
            f"netsuite does not sync {name!r}; record types: {', '.join(mapping.RECORD_TYPES)}"
        )
    return resolved


def realm_of(account_id: str) -> str:
    """The OAuth realm of an account: ``1234567-sb1`` → ``1234567_SB1``."""
    return account_id.strip().upper().replace("-", "_")


def suiteql(object: str, since: str | None, after: tuple[str, str] | None = None) -> str:
    """The SuiteQL query of one page of ``object`` changed at or after ``since``.

    ``after`` is the ``(lastmodifieddate, id)`` of the last row already read
    in this pass; the page starts after it.
    """
    table, kind = mapping.SUITEQL_TABLES[record_type(object)]
    conditions: list[str] = []
    if kind is not None:
        conditions.append(f"type = '{kind}'")
    if since is not None:
        conditions.append(f"lastmodifieddate >= {mapping.suiteql_timestamp(since)}")
    if after is not None:
        moment, last_id = after
        if not last_id.isdigit():
            raise InvalidInput(
                f"not a NetSuite internal id: {last_id!r}", record=object, field="id"
            )
        literal = mapping.suiteql_timestamp(moment)
        conditions.append(
            f"(lastmodifieddate > {literal} OR (lastmodifieddate = {literal} AND id > {last_id}))"
        )
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT * FROM {table}{where} ORDER BY lastmodifieddate, id"


def _nonce() -> str:
    return secrets.token_hex(16)


class _Signer(httpx.Auth):
    """Signs each request as it is sent: the signature covers the final URL."""

    def __init__(self, connector: NetSuiteConnector) -> None:
        self.connector = connector

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.connector.authorization(
            request.method, str(request.url)
        )
        yield request


@dataclass
class NetSuiteConnector(Connector):
    """NetSuite through SuiteTalk REST with token-based authentication.

    ``base_url`` is the account's REST domain
    (``https://<account>.suitetalk.api.netsuite.com``); ``credentials`` holds
    ``account_id``, ``consumer_key``, ``consumer_secret``, ``token_id`` and
    ``token_secret``. ``clock`` and ``nonce`` are injectable for tests.
    """

    name: ClassVar[str] = "netsuite"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.READ, Capability.WRITE, Capability.UPSERT}
    )

    page_size: int = MAX_PAGE
    """SuiteQL rows per call (1–1000)."""
    clock: Callable[[], float] = time.time
    nonce: Callable[[], str] = field(default=_nonce)

    def __post_init__(self) -> None:
        missing = [key for key in _CREDENTIALS if not self.credentials.get(key)]
        if missing:
            raise InvalidInput(
                f"NetSuite token-based auth needs {', '.join(missing)}",
                record="credentials",
                field=missing[0],
            )
        if not 1 <= self.page_size <= MAX_PAGE:
            raise InvalidInput(
                f"must be 1–{MAX_PAGE}, not {self.page_size}", record="netsuite", field="page_size"
            )
        super().__post_init__()
        self._client.auth = _Signer(self)

    # -- auth -----------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    def authorization(self, method: str, url: str) -> str:
        """The signed ``Authorization`` header of one request."""
        c = self.credentials
        return auth.authorization_header(
            method,
            url,
            realm=realm_of(c["account_id"]),
            consumer_key=c["consumer_key"],
            consumer_secret=c["consumer_secret"],
            token=c["token_id"],
            token_secret=c["token_secret"],
            timestamp=int(self.clock()),
            nonce=self.nonce(),
        )

    # -- reading -----------------------------------------------------------------------------

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        kind = record_type(object)
        after: tuple[str, str] | None = None
        if page is not None:
            moment, _, last_id = page.partition("|")
            after = (moment, last_id)
        query = suiteql(kind, cursor.value, after)
        response = self.request(
            "POST",
            QUERY_PATH,
            params={"limit": self.page_size, "offset": 0},
            content=mapping.dumps({"q": query}),
            headers={"Prefer": "transient", "Content-Type": "application/json"},
        )
        body = mapping.loads(response.content)
        rows = body.get("items") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise InvalidInput("SuiteQL answered without items", record=kind)
        records: list[VendorRecord] = []
        for row in rows:
            data = mapping.from_suiteql(kind, row)
            if "id" not in data or "lastModifiedDate" not in data:
                raise InvalidInput("a SuiteQL row lacks id or lastmodifieddate", record=kind)
            records.append(
                VendorRecord(kind, str(data["id"]), mapping.stamp(data["lastModifiedDate"]), data)
            )
        if not body.get("hasMore") or not records:
            return Page(records)
        last = records[-1]
        return Page(records, next_page=f"{last.modified}|{last.id}")

    def get(self, object: str, internal_id: str, *, expand: bool = True) -> dict[str, Any]:
        """One record by internal id (or ``eid:<externalId>``), with its sublists expanded."""
        kind = record_type(object)
        params = {"expandSubResources": "true"} if expand else None
        response = self.request("GET", self._path(kind, internal_id), params=params)
        body: dict[str, Any] = mapping.loads(response.content)
        return body

    # -- writing -------------------------------------------------------------------------------

    @staticmethod
    def external_value(request: WriteRequest) -> str:
        """The external id a create or upsert is keyed by."""
        return request.external_id or request.idempotency_key

    @staticmethod
    def _path(kind: str, ident: str) -> str:
        return f"{RECORD_PATH}/{kind}/{quote(ident, safe=':')}"

    @staticmethod
    def _eid(value: str) -> str:
        return f"eid:{value}"

    @staticmethod
    def _body(request: WriteRequest) -> dict[str, Any]:
        return {k: v for k, v in request.data.items() if k not in _READ_ONLY_KEYS}

    def write(self, request: WriteRequest) -> EffectOutcome:
        kind = record_type(request.object)
        headers = {"Content-Type": "application/json"}
        if request.operation == "update":
            if not request.external_id:
                raise InvalidInput(
                    "an update needs the NetSuite internal id", record=kind, field="external_id"
                )
            self.request(
                "PATCH",
                self._path(kind, request.external_id),
                content=mapping.dumps(self._body(request)),
                headers=headers,
                priority=request.priority,
            )
            return EffectOutcome(request.external_id, {"id": request.external_id})
        if request.operation not in ("create", "upsert"):
            raise NotSupported(f"netsuite cannot {request.operation} {kind}")
        value = self.external_value(request)
        response = self.request(
            "PUT",
            self._path(kind, self._eid(value)),
            content=mapping.dumps(self._body(request)),
            headers=headers,
            priority=request.priority,
        )
        internal = self._located(response)
        if internal is None:
            found = self.lookup(request)
            if found is None:
                raise InvalidInput(f"{kind} eid:{value} upserted but not found", record=kind)
            return EffectOutcome(found.external_id, {**found.result}, replayed=False)
        return EffectOutcome(internal, {"id": internal, "externalId": value})

    @staticmethod
    def _located(response: httpx.Response) -> str | None:
        location = response.headers.get("Location")
        if not location:
            return None
        tail = urlsplit(location).path.rstrip("/").rpartition("/")[2]
        return tail if tail and not tail.startswith("eid:") else None

    def lookup(self, request: WriteRequest) -> EffectOutcome | None:
        """The record carrying this request's external id, if any (priority 0)."""
        if request.operation == "update":
            return None  # a PATCH of the same values: repeating it is safe
        kind = record_type(request.object)
        value = self.external_value(request)
        try:
            response = self.request("GET", self._path(kind, self._eid(value)), priority=0)
        except InvalidInput as exc:
            if exc.message.startswith("404 "):
                return None
            raise
        body: Mapping[str, Any] = mapping.loads(response.content)
        result = {
            "id": str(body["id"]),
            "externalId": body.get("externalId"),
            "lastModifiedDate": body.get("lastModifiedDate"),
        }
        return EffectOutcome(str(body["id"]), result, replayed=True)
