"""The Salesforce REST API connector: SOQL incremental reads, upserts by external id.

Reads run ``SELECT … FROM X WHERE SystemModstamp >= <cursor> ORDER BY
SystemModstamp, Id`` and follow ``nextRecordsUrl``. The filter is inclusive, so
records sharing the cursor's stamp are read again and the framework's cursor
skips the ids already seen: none is missed, none repeated.

Writes are upserts by the external-id field ``Accord_Id__c`` (``PATCH
/sobjects/{X}/Accord_Id__c/{value}``), idempotent by nature: the same write
twice makes one record. The value is the request's ``external_id`` (the
canonical id) or, failing that, its idempotency key. ``update`` with a
Salesforce ``Id`` is a ``PATCH`` of the same values, equally safe to repeat.
``write_many`` sends sObject collections of up to 200 records:
``PATCH /composite/sobjects/{X}/Accord_Id__c`` for upserts, ``PATCH
/composite/sobjects`` for updates by ``Id``, with ``allOrNone`` false so one bad
record does not hold back the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from accord.connectors.base import (
    Capability,
    Connector,
    Cursor,
    NotSupported,
    Page,
    VendorRecord,
    WriteRequest,
)
from accord.connectors.salesforce import mapping
from accord.errors import AccordError, InvalidInput
from accord.runtime.effects import EffectOutcome

__all__ = ["API_VERSION", "EXTERNAL_ID", "READABLE", "SalesforceConnector"]

API_VERSION = "60.0"
EXTERNAL_ID = mapping.EXTERNAL_ID
READABLE: Mapping[str, tuple[str, ...]] = {
    "Account": mapping.ACCOUNT_FIELDS,
    "Contact": ("AccountId", "FirstName", "LastName", "Email", EXTERNAL_ID),
    "Opportunity": ("AccountId", "Name", "StageName", "CloseDate", "Amount", EXTERNAL_ID),
    "OpportunityLineItem": ("OpportunityId", "Quantity", "UnitPrice", EXTERNAL_ID),
    "Contract": ("AccountId", "Status", "StartDate", "ContractTerm", EXTERNAL_ID),
}
"""Objects read incrementally, with the fields asked for."""
_ALIASES = {
    "account": "Account",
    "contact": "Contact",
    "opportunity": "Opportunity",
    "opportunity_line": "OpportunityLineItem",
    "contract": "Contract",
}
_MAX_COLLECTION = 200


def _object(name: str) -> str:
    return _ALIASES.get(name, name)


@dataclass
class SalesforceConnector(Connector):
    """Salesforce, authenticated with an OAuth 2.0 access token.

    ``base_url`` is the instance URL (``https://<domain>.my.salesforce.com``);
    ``credentials`` holds ``access_token``.
    """

    name: ClassVar[str] = "salesforce"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.READ, Capability.WRITE, Capability.UPSERT, Capability.BATCH}
    )
    batch_size: ClassVar[int] = _MAX_COLLECTION

    api_version: str = API_VERSION

    def auth_headers(self) -> dict[str, str]:
        token = self.credentials.get("access_token")
        if not token:
            raise InvalidInput("Salesforce needs credentials access_token", field="credentials")
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    @property
    def prefix(self) -> str:
        return f"/services/data/v{self.api_version}"

    # -- reading ------------------------------------------------------------------------

    def soql(self, object: str, cursor: Cursor) -> str:
        name = _object(object)
        fields = READABLE.get(name)
        if fields is None:
            raise NotSupported(f"salesforce cannot read {object!r}")
        where = ""
        if cursor.value is not None:
            where = f" WHERE SystemModstamp >= {mapping.soql_datetime(cursor.value)}"
        columns = ", ".join(("Id", "SystemModstamp", *fields))
        return f"SELECT {columns} FROM {name}{where} ORDER BY SystemModstamp, Id"

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        name = _object(object)
        if page is None:
            response = self.request(
                "GET", f"{self.prefix}/query/", params={"q": self.soql(name, cursor)}
            )
        else:
            path = urlsplit(page).path  # only the path: credentials never follow a link elsewhere
            if not path.startswith(f"{self.prefix}/query/"):
                raise InvalidInput(f"unexpected nextRecordsUrl {page!r}", record=name)
            response = self.request("GET", path)
        body = response.json()
        rows = body.get("records") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise InvalidInput("Salesforce answered a query without records", record=name)
        records = [
            VendorRecord(name, str(row["Id"]), mapping.stamp(str(row["SystemModstamp"])), row)
            for row in rows
        ]
        following = body.get("nextRecordsUrl")
        done = bool(body.get("done", True))
        return Page(records, None if done or not following else str(following))

    # -- writing ---------------------------------------------------------------------------

    @staticmethod
    def external_value(request: WriteRequest) -> str:
        return request.external_id or request.idempotency_key

    def _upsert_path(self, name: str, value: str) -> str:
        return f"{self.prefix}/sobjects/{name}/{EXTERNAL_ID}/{quote(value, safe='')}"

    @staticmethod
    def _fields(request: WriteRequest) -> dict[str, Any]:
        return {k: v for k, v in request.data.items() if k not in (EXTERNAL_ID, "Id", "attributes")}

    def _writable(self, request: WriteRequest) -> str:
        name = _object(request.object)
        if name not in READABLE:
            raise NotSupported(f"salesforce does not write {request.object!r}")
        return name

    def write(self, request: WriteRequest) -> EffectOutcome:
        name = self._writable(request)
        if request.operation == "update":
            if not request.external_id:
                raise InvalidInput("an update needs the Salesforce Id", record=name, field="Id")
            self.request(
                "PATCH",
                f"{self.prefix}/sobjects/{name}/{request.external_id}",
                json=self._fields(request),
                priority=request.priority,
            )
            return EffectOutcome(request.external_id, {"id": request.external_id, "created": False})
        if request.operation not in ("create", "upsert"):
            raise NotSupported(f"salesforce cannot {request.operation} {name}")
        value = self.external_value(request)
        response = self.request(
            "PATCH",
            self._upsert_path(name, value),
            json=self._fields(request),
            priority=request.priority,
        )
        if response.status_code == 204 or not response.content:
            found = self.lookup(request)  # an update answers without a body: find its Id
            if found is None:
                raise InvalidInput(f"{name} {value} upserted but not found", record=name)
            return EffectOutcome(found.external_id, {**found.result, "created": False})
        body = response.json()
        return EffectOutcome(str(body["id"]), {**body, EXTERNAL_ID: value})

    def lookup(self, request: WriteRequest) -> EffectOutcome | None:
        """The record carrying this request's external id, if any (priority 0)."""
        if request.operation == "update":
            return None  # a PATCH of the same values: repeating it is safe
        name = self._writable(request)
        try:
            response = self.request(
                "GET", self._upsert_path(name, self.external_value(request)), priority=0
            )
        except InvalidInput as exc:
            if exc.message.startswith("404 "):
                return None
            raise
        row = response.json()
        return EffectOutcome(str(row["Id"]), row, replayed=True)

    def write_many(self, requests: Sequence[WriteRequest]) -> list[EffectOutcome | AccordError]:
        """sObject collections of up to 200 records, one call per object and kind."""
        results: list[EffectOutcome | AccordError | None] = [None] * len(requests)
        groups: dict[tuple[str, str], list[int]] = {}
        for index, request in enumerate(requests):
            try:
                name = self._writable(request)
                if request.operation == "update":
                    if not request.external_id:
                        raise InvalidInput(
                            "an update needs the Salesforce Id", record=name, field="Id"
                        )
                    kind = "update"
                elif request.operation in ("create", "upsert"):
                    kind = "upsert"
                else:
                    raise NotSupported(f"salesforce cannot {request.operation} {name}")
            except AccordError as exc:
                results[index] = exc
                continue
            groups.setdefault((name, kind), []).append(index)
        for (name, kind), indexes in groups.items():
            for start in range(0, len(indexes), self.batch_size):
                chunk = indexes[start : start + self.batch_size]
                self._send_collection(name, kind, [requests[i] for i in chunk], chunk, results)
        return [r if r is not None else InvalidInput("not sent") for r in results]

    def _send_collection(
        self,
        name: str,
        kind: str,
        chunk: Sequence[WriteRequest],
        indexes: Sequence[int],
        results: list[EffectOutcome | AccordError | None],
    ) -> None:
        records: list[dict[str, Any]] = []
        for request in chunk:
            record: dict[str, Any] = {"attributes": {"type": name}, **self._fields(request)}
            if kind == "update":
                record["Id"] = request.external_id
            else:
                record[EXTERNAL_ID] = self.external_value(request)
            records.append(record)
        path = f"{self.prefix}/composite/sobjects"
        if kind == "upsert":
            path = f"{path}/{name}/{EXTERNAL_ID}"
        priority = min(request.priority for request in chunk)
        body = {"allOrNone": False, "records": records}
        answer = self.request("PATCH", path, json=body, priority=priority).json()
        if not isinstance(answer, list) or len(answer) != len(chunk):
            raise InvalidInput(
                f"Salesforce answered {path} with {len(answer)} results", record=name
            )
        for index, request, item in zip(indexes, chunk, answer, strict=True):
            if item.get("success"):
                results[index] = EffectOutcome(
                    str(item["id"]), {**item, EXTERNAL_ID: self.external_value(request)}
                )
            else:
                errors = item.get("errors") or []
                text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
                fields = [f for e in errors for f in (e.get("fields") or [])]
                results[index] = InvalidInput(
                    text or "rejected", record=name, field=",".join(fields) or None
                )
