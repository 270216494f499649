"""A stand-in for the Salesforce REST API (v60.0), served over real HTTP with injected faults.

Faithful where the Salesforce connector depends on Salesforce's behaviour, and
plain about where it is not. Paths follow Salesforce's REST API as the Postman
collection in ``shared/specs/salesforce/postman`` names them:

* Everything lives under ``/services/data/v60.0``. ``Authorization: Bearer``
  with the OAuth 2.0 access token is required; anything else is a 401 with
  Salesforce's body ``[{"message": "Session expired or invalid", "errorCode":
  "INVALID_SESSION_ID"}]``.
* Objects: Account (with ``ParentId``), Contact, Opportunity,
  OpportunityLineItem and Contract, each with the external-id field
  ``Accord_Id__c`` (unique) and the system fields ``Id``, ``CreatedDate``,
  ``LastModifiedDate`` and ``SystemModstamp`` (milliseconds, ``+0000``).
* ``POST /sobjects/{X}`` creates (201 ``{id, success, errors}``), ``GET`` and
  ``PATCH /sobjects/{X}/{id}`` read and update (204), ``PATCH
  /sobjects/{X}/Accord_Id__c/{value}`` upserts: 201 with ``created: true`` when
  it created, 204 when it updated, as Salesforce answers. ``GET`` on the same
  path reads by external id.
* ``GET /sobjects/{X}/updated/?start=&end=`` returns ``{"ids", "latestDateCovered"}``;
  seconds are ignored, as Salesforce documents.
* ``GET /query/?q=`` supports one SOQL shape only: ``SELECT f1, f2 FROM X
  [WHERE SystemModstamp >= <datetime>] ORDER BY SystemModstamp, Id [LIMIT n]``;
  others are a 400 ``MALFORMED_QUERY``. Results come in batches of
  ``query_batch_size`` with ``nextRecordsUrl`` (``/query/{locator}-{offset}``),
  read from a snapshot taken when the query ran.
* ``POST /composite/sobjects`` (create), ``PATCH /composite/sobjects`` (update
  by ``Id``) and ``PATCH /composite/sobjects/{X}/{ExternalIdField}`` (upsert)
  take up to 200 records and ``allOrNone``; each record gets ``{id, success,
  errors}`` with per-record errors ``{statusCode, message, fields}``.
* Errors are Salesforce's list of ``{message, errorCode, fields}``.
* ``GET /limits`` reports ``DailyApiRequests``; past the daily budget every call
  is a 403 ``REQUEST_LIMIT_EXCEEDED``. Every authenticated call counts.

Not modelled: field types beyond required fields and references, triggers,
validation rules, sharing, deletes, and the 300 answer to an ambiguous external
id (``Accord_Id__c`` is unique here). Faults are those of
:class:`accord.sandbox.recorder.Faults`: 503s, 429s (Salesforce itself does not
send 429 on the REST API), added latency, and lost responses to writes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.sandbox.recorder import Faults
from accord.sandbox.serving import BackgroundServer, ServedStandIn

__all__ = ["API_VERSION", "EXTERNAL_ID", "FIELDS", "Faults", "SalesforceStandIn"]

API_VERSION = "60.0"
PREFIX = f"/services/data/v{API_VERSION}"
EXTERNAL_ID = "Accord_Id__c"
MAX_COLLECTION = 200

_SYSTEM = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted")
FIELDS: Mapping[str, tuple[str, ...]] = {
    "Account": (
        "Name",
        "ParentId",
        "Website",
        "Industry",
        "Type",
        "AccountNumber",
        "BillingCountry",
        "CurrencyIsoCode",
        "Payment_Terms_Days__c",
        "Accord_Status__c",
        "ERP_Customer_Id__c",
        "ERP_Status__c",
        EXTERNAL_ID,
    ),
    "Contact": ("AccountId", "FirstName", "LastName", "Email", "Phone", "Title", EXTERNAL_ID),
    "Opportunity": (
        "AccountId",
        "Name",
        "StageName",
        "CloseDate",
        "Amount",
        "CurrencyIsoCode",
        "Probability",
        "ERP_Customer_Id__c",
        "PSA_Project_Id__c",
        EXTERNAL_ID,
    ),
    "OpportunityLineItem": (
        "OpportunityId",
        "Quantity",
        "UnitPrice",
        "Description",
        EXTERNAL_ID,
    ),
    "Contract": ("AccountId", "Status", "StartDate", "ContractTerm", EXTERNAL_ID),
}
"""Writable fields of every object (the system fields are read-only)."""
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "Account": ("Name",),
    "Contact": ("LastName",),
    "Opportunity": ("Name", "StageName", "CloseDate"),
    "OpportunityLineItem": ("OpportunityId", "Quantity", "UnitPrice"),
    "Contract": ("AccountId",),
}
_REFERENCES: Mapping[str, str] = {
    "ParentId": "Account",
    "AccountId": "Account",
    "OpportunityId": "Opportunity",
}
_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "OpportunityLineItem": "00k",
    "Contract": "800",
}
_ID = re.compile(r"/(?:001|003|006|00k|800)8d\d{13}(?=/|$)")
_EXTERNAL_VALUE = re.compile(rf"(/{EXTERNAL_ID})/[^/]+")
_LOCATOR = re.compile(r"/query/01g[^/]+$")
_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>[\w\s,]+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+SystemModstamp\s*>=\s*(?P<since>\S+))?"
    r"\s+ORDER\s+BY\s+SystemModstamp(?:\s+ASC)?\s*,\s*Id(?:\s+ASC)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE,
)


class _Refused(Exception):
    """A request Salesforce would refuse: status, error code, message and fields."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)

    def body(self) -> list[dict[str, Any]]:
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]


class _ConnectionDropped(Exception):
    """Raised after a response has started, so that uvicorn drops the connection."""


def _stamp(moment: datetime) -> str:
    """Salesforce's rendering of a datetime: ``2024-03-01T09:00:00.000+0000``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def _moment(text: str, name: str) -> datetime:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(400, "MALFORMED_QUERY", f"{name}: invalid date/time: {text}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _system_clock() -> datetime:
    return datetime.now(UTC)


class SalesforceStandIn(ServedStandIn):
    """The Salesforce stand-in, served by uvicorn on loopback in a background thread.

    ``clock`` is read for every stamp; tests freeze it so that many records
    share one ``SystemModstamp``. ``faults`` may be replaced at any time.
    """

    def __init__(
        self,
        *,
        token: str = "sandbox-token",
        daily_limit: int = 100_000,
        query_batch_size: int = 2000,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], datetime] = _system_clock,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.daily_limit = daily_limit
        self.query_batch_size = query_batch_size
        self.faults = faults or Faults()
        self.host = host
        self._clock = clock
        self._lock = threading.RLock()
        self._rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in FIELDS}
        self._next = 0
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._used = 0
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        self._port: int | None = None
        self.app = self._build_app()
        self._served = BackgroundServer(self.app, name="Salesforce stand-in", host=self.host)

    # -- observation -----------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """``requests``, per ``"METHOD /path"`` (version prefix dropped, ids as ``{id}``,
        external-id values as ``{value}``), ``errors``, ``lost``, ``unauthorized``,
        ``over_limit``."""
        with self._counter_lock:
            return dict(self._counters)

    @property
    def api_requests_used(self) -> int:
        with self._lock:
            return self._used

    def records(self, object: str) -> list[dict[str, Any]]:
        """Every record of ``object`` as the API renders it, oldest first."""
        with self._lock:
            rows = sorted(self._rows[object].values(), key=lambda row: row["Id"])
            return [self._render(object, row) for row in rows]

    def _count(self, *names: str) -> None:
        with self._counter_lock:
            self._counters.update(names)

    def _roll(self) -> float:
        with self._random_lock:
            return self._random.random()

    def _spend(self) -> bool:
        """Count one API request against the daily budget; False when it is spent."""
        with self._lock:
            if self._used >= self.daily_limit:
                return False
            self._used += 1
            return True

    # -- state, shared by the routes and the seeding helpers --------------------------------

    def _object(self, name: str) -> str:
        if name not in FIELDS:
            raise _Refused(404, "NOT_FOUND", f"The requested resource does not exist: {name}")
        return name

    def _now(self) -> datetime:
        moment = self._clock().astimezone(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def _check(self, object: str, values: Mapping[str, Any], row_id: str | None) -> None:
        allowed = FIELDS[object]
        for key in values:
            if key not in allowed:
                raise _Refused(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {object}",
                    [key],
                )
        for key, target in _REFERENCES.items():
            if key in allowed and values.get(key) is not None:
                if str(values[key]) not in self._rows[target]:
                    raise _Refused(
                        400,
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"invalid cross reference id: {values[key]}",
                        [key],
                    )
        if values.get("ParentId") is not None and values.get("ParentId") == row_id:
            raise _Refused(400, "CIRCULAR_DEPENDENCY", "An account cannot be its own parent")
        external = values.get(EXTERNAL_ID)
        if external is not None:
            for other in self._rows[object].values():
                if other["Id"] != row_id and other.get(EXTERNAL_ID) == external:
                    raise _Refused(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {EXTERNAL_ID} duplicates value on record "
                        f"with id: {other['Id']}",
                        [EXTERNAL_ID],
                    )

    def create(self, object: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Create a record as ``POST /sobjects/{object}`` would; returns its row."""
        with self._lock:
            self._object(object)
            missing = [key for key in _REQUIRED[object] if values.get(key) in (None, "")]
            if missing:
                raise _Refused(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            self._check(object, values, None)
            self._next += 1
            now = self._now()
            row = {
                **copy.deepcopy(dict(values)),
                "Id": f"{_PREFIXES[object]}8d{self._next:013d}",
                "CreatedDate": now,
                "LastModifiedDate": now,
                "SystemModstamp": now,
                "IsDeleted": False,
            }
            self._rows[object][row["Id"]] = row
            return self._render(object, row)

    def update(self, object: str, row_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Change a record as ``PATCH /sobjects/{object}/{id}`` would."""
        with self._lock:
            self._object(object)
            row = self._rows[object].get(row_id)
            if row is None:
                raise _Refused(404, "NOT_FOUND", "The requested resource does not exist")
            self._check(object, values, row_id)
            for key in _REQUIRED[object]:
                if key in values and values[key] in (None, ""):
                    raise _Refused(
                        400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{key}]"
                    )
            now = self._now()
            row.update(copy.deepcopy(dict(values)), LastModifiedDate=now, SystemModstamp=now)
            return self._render(object, row)

    def upsert(
        self, object: str, field: str, value: str, values: Mapping[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        """Create or update by external id; returns (created, record)."""
        with self._lock:
            self._object(object)
            if field != EXTERNAL_ID:
                raise _Refused(
                    404, "NOT_FOUND", f"Provided external ID field does not exist: {field}"
                )
            if EXTERNAL_ID in values and values[EXTERNAL_ID] != value:
                raise _Refused(
                    400,
                    "INVALID_FIELD",
                    f"{EXTERNAL_ID} in the body does not match the value in the URL",
                    [EXTERNAL_ID],
                )
            found = self._by_external(object, value)
            if found is None:
                return True, self.create(object, {**values, EXTERNAL_ID: value})
            return False, self.update(object, found["Id"], values)

    def _by_external(self, object: str, value: str) -> dict[str, Any] | None:
        for row in self._rows[object].values():
            if row.get(EXTERNAL_ID) == value:
                return row
        return None

    def get(self, object: str, row_id: str) -> dict[str, Any]:
        with self._lock:
            self._object(object)
            row = self._rows[object].get(row_id)
            if row is None:
                raise _Refused(404, "NOT_FOUND", "The requested resource does not exist")
            return self._render(object, row)

    def _render(
        self, object: str, row: Mapping[str, Any], fields: Sequence[str] = ()
    ) -> dict[str, Any]:
        chosen = fields or (*_SYSTEM, *FIELDS[object])
        out: dict[str, Any] = {
            "attributes": {"type": object, "url": f"{PREFIX}/sobjects/{object}/{row['Id']}"}
        }
        for key in chosen:
            value = row.get(key)
            out[key] = _stamp(value) if isinstance(value, datetime) else value
        return out

    # -- queries ---------------------------------------------------------------------------

    def _query(self, soql: str) -> dict[str, Any]:
        match = _SOQL.match(soql)
        if match is None:
            raise _Refused(
                400,
                "MALFORMED_QUERY",
                "this stand-in supports only SELECT … FROM X [WHERE SystemModstamp >= t] "
                "ORDER BY SystemModstamp, Id [LIMIT n]",
            )
        object = match["object"]
        if object not in FIELDS:
            raise _Refused(
                400,
                "INVALID_TYPE",
                f"sObject type '{object}' is not supported.",
            )
        fields = [name.strip() for name in match["fields"].split(",") if name.strip()]
        known = {*_SYSTEM, *FIELDS[object]}
        by_lower = {name.lower(): name for name in known}
        chosen: list[str] = []
        for name in fields:
            if name.lower() not in by_lower:
                raise _Refused(
                    400, "INVALID_FIELD", f"No such column '{name}' on entity '{object}'"
                )
            chosen.append(by_lower[name.lower()])
        since = _moment(match["since"], "SystemModstamp") if match["since"] else None
        with self._lock:
            rows = [
                row
                for row in self._rows[object].values()
                if since is None or row["SystemModstamp"] >= since
            ]
            rows.sort(key=lambda row: (row["SystemModstamp"], row["Id"]))
            if match["limit"]:
                rows = rows[: int(match["limit"])]
            rendered = [self._render(object, row, chosen) for row in rows]
            self._next += 1
            locator = f"01g8d{self._next:013d}"
            self._cursors[locator] = rendered
        return self._batch(locator, 0)

    def _batch(self, locator: str, offset: int) -> dict[str, Any]:
        with self._lock:
            rendered = self._cursors.get(locator)
        if rendered is None or offset < 0 or offset > len(rendered):
            raise _Refused(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        end = offset + self.query_batch_size
        body: dict[str, Any] = {
            "totalSize": len(rendered),
            "done": end >= len(rendered),
            "records": rendered[offset:end],
        }
        if end < len(rendered):
            body["nextRecordsUrl"] = f"{PREFIX}/query/{locator}-{end}"
        return body

    def _updated(self, object: str, start: str | None, end: str | None) -> dict[str, Any]:
        if not start or not end:
            raise _Refused(400, "INVALID_REPLICATION_DATE", "start and end are required")
        low = _moment(start, "start").replace(second=0, microsecond=0)
        high = _moment(end, "end").replace(second=0, microsecond=0)
        if low >= high:
            raise _Refused(400, "INVALID_REPLICATION_DATE", "start must precede end")
        with self._lock:
            self._object(object)
            ids = sorted(
                row["Id"]
                for row in self._rows[object].values()
                if low <= row["SystemModstamp"] < high
            )
        return {"ids": ids, "latestDateCovered": _stamp(high)}

    # -- collections -----------------------------------------------------------------------

    def _collection(
        self,
        records: Any,
        all_or_none: bool,
        apply: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        if not isinstance(records, list) or not records:
            raise _Refused(400, "INVALID_FIELD", "records must be a non-empty list", ["records"])
        if len(records) > MAX_COLLECTION:
            raise _Refused(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records "
                "into this call",
            )
        with self._lock:
            saved = (copy.deepcopy(self._rows), self._next)
            results: list[dict[str, Any]] = []
            for record in records:
                try:
                    if not isinstance(record, dict):
                        raise _Refused(400, "INVALID_FIELD", "each record must be an object")
                    results.append({**apply(record), "success": True, "errors": []})
                except _Refused as exc:
                    error = {"statusCode": exc.code, "message": exc.message, "fields": exc.fields}
                    results.append({"success": False, "errors": [error]})
            if all_or_none and not all(result["success"] for result in results):
                self._rows, self._next = saved
                rolled = {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and "
                    "the request was using AllOrNone header",
                    "fields": [],
                }
                results = [
                    result if not result["success"] else {"success": False, "errors": [rolled]}
                    for result in results
                ]
                for result in results:
                    result["id"] = None
            return results

    @staticmethod
    def _typed(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        attributes = record.get("attributes")
        kind = attributes.get("type") if isinstance(attributes, Mapping) else None
        if not isinstance(kind, str):
            raise _Refused(400, "INVALID_TYPE", "Must send a concrete entity type.")
        values = {key: value for key, value in record.items() if key != "attributes"}
        return kind, values

    def _create_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        kind, values = self._typed(record)
        if "Id" in values:
            raise _Refused(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        return {"id": self.create(kind, values)["Id"]}

    def _update_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        kind, values = self._typed(record)
        row_id = values.pop("Id", None)
        if not isinstance(row_id, str):
            raise _Refused(400, "MISSING_ARGUMENT", "Id not specified in an update call")
        return {"id": self.update(kind, row_id, values)["Id"]}

    def _upsert_one(self, object: str, field: str, record: Mapping[str, Any]) -> dict[str, Any]:
        kind, values = self._typed(record)
        if kind != object:
            raise _Refused(400, "INVALID_TYPE", f"records must all be of type {object}")
        value = values.pop(field, None)
        if not isinstance(value, str) or not value:
            raise _Refused(400, "MISSING_ARGUMENT", f"{field} not specified", [field])
        created, row = self.upsert(object, field, value, values)
        return {"id": row["Id"], "created": created}

    # -- seeding ---------------------------------------------------------------------------

    def seed_accounts(self, count: int, *, prefix: str = "acc") -> list[str]:
        """Create ``count`` accounts with ``Accord_Id__c`` ``{prefix}-{n}``; their ids."""
        with self._lock:
            return [
                self.create("Account", {"Name": f"Account {n}", EXTERNAL_ID: f"{prefix}-{n}"})["Id"]
                for n in range(1, count + 1)
            ]

    # -- HTTP ------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="Salesforce REST API stand-in", openapi_url=None, docs_url=None, redoc_url=None
        )
        app.router.redirect_slashes = False
        app.add_exception_handler(_Refused, _refused)
        app.add_exception_handler(StarletteHTTPException, _http_error)
        app.add_middleware(_Gate, stand_in=self)

        async def limits(request: Request) -> JSONResponse:
            with self._lock:
                remaining = max(0, self.daily_limit - self._used)
            return JSONResponse(
                {"DailyApiRequests": {"Max": self.daily_limit, "Remaining": remaining}}
            )

        async def create(request: Request, sobject: str) -> JSONResponse:
            row = self.create(sobject, await _body(request))
            return JSONResponse({"id": row["Id"], "success": True, "errors": []}, 201)

        async def updated(request: Request, sobject: str) -> JSONResponse:
            params = request.query_params
            return JSONResponse(self._updated(sobject, params.get("start"), params.get("end")))

        async def read(request: Request, sobject: str, record_id: str) -> JSONResponse:
            return JSONResponse(self.get(sobject, record_id))

        async def patch(request: Request, sobject: str, record_id: str) -> Response:
            self.update(sobject, record_id, await _body(request))
            return Response(status_code=204)

        async def read_external(request: Request, sobject: str, field: str, value: str) -> Any:
            with self._lock:
                self._object(sobject)
                if field != EXTERNAL_ID:
                    raise _Refused(
                        404, "NOT_FOUND", f"Provided external ID field does not exist: {field}"
                    )
                row = self._by_external(sobject, value)
                if row is None:
                    raise _Refused(404, "NOT_FOUND", "The requested resource does not exist")
                return JSONResponse(self._render(sobject, row))

        async def upsert(request: Request, sobject: str, field: str, value: str) -> Response:
            created, row = self.upsert(sobject, field, value, await _body(request))
            if not created:
                return Response(status_code=204)
            body = {"id": row["Id"], "success": True, "errors": [], "created": True}
            return JSONResponse(body, 201)

        async def query(request: Request) -> JSONResponse:
            soql = request.query_params.get("q")
            if not soql:
                raise _Refused(400, "MALFORMED_QUERY", "q is required")
            return JSONResponse(self._query(soql))

        async def more(request: Request, locator: str) -> JSONResponse:
            key, _, offset = locator.rpartition("-")
            if not key or not offset.isdigit():
                raise _Refused(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return JSONResponse(self._batch(key, int(offset)))

        async def collection_create(request: Request) -> JSONResponse:
            body = await _body(request)
            results = self._collection(
                body.get("records"), bool(body.get("allOrNone")), self._create_one
            )
            return JSONResponse(results)

        async def collection_update(request: Request) -> JSONResponse:
            body = await _body(request)
            results = self._collection(
                body.get("records"), bool(body.get("allOrNone")), self._update_one
            )
            return JSONResponse(results)

        async def collection_upsert(request: Request, sobject: str, field: str) -> JSONResponse:
            body = await _body(request)
            self._object(sobject)
            results = self._collection(
                body.get("records"),
                bool(body.get("allOrNone")),
                lambda record: self._upsert_one(sobject, field, record),
            )
            return JSONResponse(results)

        route = app.add_api_route
        route(f"{PREFIX}/limits", limits, methods=["GET"])
        route(f"{PREFIX}/limits/", limits, methods=["GET"])
        route(f"{PREFIX}/query", query, methods=["GET"])
        route(f"{PREFIX}/query/", query, methods=["GET"])
        route(f"{PREFIX}/query/{{locator}}", more, methods=["GET"])
        route(f"{PREFIX}/composite/sobjects", collection_create, methods=["POST"])
        route(f"{PREFIX}/composite/sobjects", collection_update, methods=["PATCH"])
        route(
            f"{PREFIX}/composite/sobjects/{{sobject}}/{{field}}",
            collection_upsert,
            methods=["PATCH"],
        )
        route(f"{PREFIX}/sobjects/{{sobject}}", create, methods=["POST"])
        route(f"{PREFIX}/sobjects/{{sobject}}/updated", updated, methods=["GET"])
        route(f"{PREFIX}/sobjects/{{sobject}}/updated/", updated, methods=["GET"])
        route(f"{PREFIX}/sobjects/{{sobject}}/{{record_id}}", read, methods=["GET"])
        route(f"{PREFIX}/sobjects/{{sobject}}/{{record_id}}", patch, methods=["PATCH"])
        route(f"{PREFIX}/sobjects/{{sobject}}/{{field}}/{{value}}", read_external, methods=["GET"])
        route(f"{PREFIX}/sobjects/{{sobject}}/{{field}}/{{value}}", upsert, methods=["PATCH"])
        return app


def _route_name(method: str, path: str) -> str:
    path = path.removeprefix(PREFIX)
    path = _ID.sub("/{id}", path)
    path = _EXTERNAL_VALUE.sub(r"\1/{value}", path)
    path = _LOCATOR.sub("/query/{locator}", path)
    return f"{method} {path}"


async def _answer(
    send: Send, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json;charset=UTF-8"),
        (b"content-length", str(len(data)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class _Gate:
    """ASGI middleware in front of the routes: counting, auth, the daily budget, faults."""

    def __init__(self, app: ASGIApp, stand_in: SalesforceStandIn) -> None:
        self.app = app
        self.stand_in = stand_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stand_in = self.stand_in
        method: str = scope["method"]
        stand_in._count("requests", _route_name(method, scope["path"]))
        faults = stand_in.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("authorization", "") != f"Bearer {stand_in.token}":
            stand_in._count("unauthorized")
            body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            await _answer(send, 401, body)
            return
        if not stand_in._spend():
            stand_in._count("over_limit")
            message = f"TotalRequests Limit exceeded. Limit: {stand_in.daily_limit}"
            await _answer(send, 403, [{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
            return
        roll = stand_in._roll()
        if roll < faults.error_rate:
            stand_in._count("errors")
            body = [{"message": "Service Unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
            await _answer(send, 503, body)
            return
        if roll < faults.error_rate + faults.throttle_rate:
            stand_in._count("throttled")
            body = [{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
            await _answer(send, 429, body, {"Retry-After": f"{faults.retry_after:g}"})
            return
        if method not in ("POST", "PATCH") or stand_in._roll() >= faults.lost_response_rate:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = held[0] if held else None
        if start is None or start.get("status", 500) >= 300:
            for held_message in held:
                await send(held_message)
            return
        stand_in._count("lost")
        await send(start)
        raise _ConnectionDropped("write applied; response deliberately lost")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _Refused(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, _Refused)
    return JSONResponse(exc.body(), status_code=exc.status)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = "NOT_FOUND" if exc.status_code == 404 else "METHOD_NOT_ALLOWED"
    body = [{"message": str(exc.detail), "errorCode": code, "fields": []}]
    return JSONResponse(body, status_code=exc.status_code)
