"""The Harvest API v2 connector: incremental reads, and writes made safe to repeat.

Reads use ``updated_since`` and follow Harvest's ``links.next``: a ``cursor`` on
the lists that declare one (clients, projects, tasks, users, user assignments,
where ``page`` is deprecated), a ``page`` number on time entries and expenses.
Harvest stamps ``updated_at`` in whole seconds and does not say whether
``updated_since`` is inclusive, so :meth:`HarvestConnector.fetch_page` asks from
one second before the cursor and drops what is older than it; the framework's
cursor then skips the ids already read at the cursor's second. Nothing is
missed or repeated whichever way Harvest compares. One limit remains, common to
every whole-second stamp: a record changed twice within the same second, with a
read in between, keeps its stamp, so its second change is read with its next.

Harvest has no idempotency header, so a create looks before it leaps: the
connector first searches for the record an earlier attempt may have made, by
the key it carries (see :mod:`.mapping`): a time entry's
``external_reference.id`` (Harvest filters on it), a project's ``notes`` marker,
a client's unique name. Only when nothing is found does it ``POST``. Updates are
``PATCH`` of the same values, which repeat harmlessly. Two attempts of one
effect running at the same moment could both miss and both create; Harvest
offers nothing against that, so one effect must not be run concurrently.

Harvest API v2 has no webhooks (the API description declares none), so the
connector declares no ``WEBHOOKS`` capability; changes are found by polling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from accord.connectors.base import (
    Capability,
    Connector,
    Cursor,
    NotSupported,
    Page,
    VendorRecord,
    WriteRequest,
)
from accord.connectors.harvest import mapping
from accord.errors import InvalidInput
from accord.runtime.effects import EffectOutcome

__all__ = ["DEFAULT_BASE_URL", "READABLE", "WRITABLE", "HarvestConnector"]

DEFAULT_BASE_URL = "https://api.harvestapp.com/v2"

READABLE: Mapping[str, str] = {
    "clients": "/clients",
    "projects": "/projects",
    "tasks": "/tasks",
    "users": "/users",
    "user_assignments": "/user_assignments",
    "time_entries": "/time_entries",
    "expenses": "/expenses",
}
"""Objects read incrementally, with their list paths (relative to ``/v2``)."""

WRITABLE = frozenset({"clients", "projects", "time_entries", "user_assignments"})
"""Objects the connector creates and updates."""

_ALIASES = {
    "client": "clients",
    "account": "clients",
    "project": "projects",
    "time_entry": "time_entries",
    "user_assignment": "user_assignments",
    "task": "tasks",
    "user": "users",
    "expense": "expenses",
}
_MAX_PER_PAGE = 2000


def _object(name: str) -> str:
    return _ALIASES.get(name, name)


@dataclass
class HarvestConnector(Connector):
    """Harvest API v2, authenticated with a personal access token or OAuth token.

    ``credentials`` holds ``access_token`` and ``account_id``. ``write`` takes
    ``WriteRequest.data`` as a Harvest request body (build it with
    :mod:`accord.connectors.harvest.mapping`); ``object`` is the Harvest list
    name (``"time_entries"``) or its singular.
    """

    name: ClassVar[str] = "harvest"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ, Capability.WRITE})

    per_page: int = _MAX_PER_PAGE
    """Records per page (Harvest allows 1 to 2000); fewer pages means fewer requests."""
    user_agent: str = "Accord (https://accord.invalid)"
    """Harvest asks every integration to name itself and a contact in ``User-Agent``."""

    def __post_init__(self) -> None:
        if not 1 <= self.per_page <= _MAX_PER_PAGE:
            raise InvalidInput(f"per_page must be 1 to {_MAX_PER_PAGE}", field="per_page")
        super().__post_init__()

    def auth_headers(self) -> dict[str, str]:
        token = self.credentials.get("access_token")
        account = self.credentials.get("account_id")
        if not token or not account:
            raise InvalidInput(
                "Harvest needs credentials access_token and account_id", field="credentials"
            )
        return {
            "Authorization": f"Bearer {token}",
            "Harvest-Account-Id": str(account),
            "User-Agent": self.user_agent,
            "Accept": "application/json",
        }

    # -- reading ------------------------------------------------------------------------

    def fetch_page(self, object: str, cursor: Cursor, page: str | None) -> Page:
        name = _object(object)
        path = READABLE.get(name)
        if path is None:
            raise NotSupported(f"harvest cannot read {object!r}")
        params: dict[str, str | int] = {"per_page": self.per_page}
        if cursor.value is not None:
            params["updated_since"] = mapping.updated_since(cursor.value)
        rows, following = self._page(path, name, params, page)
        records = [self._record(name, row) for row in rows]
        if cursor.value is not None:
            records = [record for record in records if record.modified >= cursor.value]
        return Page(records, following)

    def _page(
        self, path: str, name: str, params: Mapping[str, str | int], token: str | None, **kw: Any
    ) -> tuple[list[Any], str | None]:
        """One page of a list, and the token of the next.

        The token is the query of Harvest's ``links.next``: a ``cursor`` on the
        lists that have one (their ``page`` is deprecated), a ``page`` number on
        the others. Only the query is kept, so the path and host stay the
        connector's own and credentials never follow a link elsewhere.
        """
        query: dict[str, str | int] = {**params}
        if token:
            query.update(parse_qsl(token, keep_blank_values=True))
        body = self.request("GET", path, params=query, **kw).json()
        rows = body.get(name) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise InvalidInput(f"Harvest answered {path} without a {name!r} list", record=path)
        links = body.get("links")
        following = links.get("next") if isinstance(links, Mapping) else None
        if isinstance(following, str) and urlsplit(following).query:
            return rows, urlsplit(following).query
        number = body.get("next_page")
        return rows, urlencode({"page": number}) if number else None

    @staticmethod
    def _record(name: str, row: Mapping[str, Any]) -> VendorRecord:
        return VendorRecord(name, str(row["id"]), mapping.stamp(str(row["updated_at"])), row)

    def _scan(self, name: str, params: Mapping[str, str | int]) -> Iterator[Any]:
        """Every record of a filtered list, page after page (for look-ups)."""
        return self._scan_path(READABLE[name], name, params)

    def _scan_path(
        self, path: str, name: str, params: Mapping[str, str | int] | None = None
    ) -> Iterator[Any]:
        query = {**(params or {}), "per_page": _MAX_PER_PAGE}
        token: str | None = None
        while True:
            rows, token = self._page(path, name, query, token, priority=0)
            yield from rows
            if token is None:
                return

    @staticmethod
    def _assigned_project(request: WriteRequest) -> int:
        project = request.data.get("project_id")
        if not isinstance(project, int) or isinstance(project, bool):
            raise InvalidInput(
                "a user assignment needs the Harvest project id",
                record="user_assignments",
                field="project_id",
            )
        return project

    # -- writing ---------------------------------------------------------------------------

    def lookup(self, request: WriteRequest) -> EffectOutcome | None:
        """The record an earlier attempt of this create made, found by the key it carries.

        Look-ups go first under quota pressure (priority 0): they are what keeps
        a retried write from duplicating.
        """
        if request.operation != "create":
            return None  # an update is a PATCH of the same values: repeating it is safe
        name = self._writable(request)
        data = request.data
        match: Callable[[Mapping[str, Any]], bool]
        params: dict[str, str | int] = {}
        if name == "time_entries":
            params["external_reference_id"] = request.idempotency_key

            def match(row: Mapping[str, Any]) -> bool:
                reference = row.get("external_reference") or {}
                return bool(reference.get("id") == request.idempotency_key)

        elif name == "projects":
            if isinstance(data.get("client_id"), int):
                params["client_id"] = data["client_id"]

            def match(row: Mapping[str, Any]) -> bool:
                return mapping.has_marker(row.get("notes"), request.idempotency_key)

        elif name == "user_assignments":
            # Harvest has one assignment per person and project: that pair is its key.
            project = self._assigned_project(request)
            for row in self._scan_path(f"/projects/{project}/user_assignments", name):
                if str((row.get("user") or {}).get("id")) == str(data.get("user_id")):
                    return EffectOutcome(str(row["id"]), row, replayed=True)
            return None

        else:
            wanted = str(data.get("name", "")).strip().casefold()

            def match(row: Mapping[str, Any]) -> bool:
                return bool(wanted) and str(row.get("name", "")).strip().casefold() == wanted

        for row in self._scan(name, params):
            if match(row):
                return EffectOutcome(str(row["id"]), row, replayed=True)
        return None

    def write(self, request: WriteRequest) -> EffectOutcome:
        name = self._writable(request)
        path = READABLE[name]
        if request.operation == "create":
            found = self.lookup(request)
            if found is not None:
                return found
            body = self._create_body(name, request)
            if name == "user_assignments":
                path = f"/projects/{body.pop('project_id')}/user_assignments"
            response = self.request("POST", path, json=body, priority=request.priority)
        elif request.operation == "update":
            if not request.external_id:
                raise InvalidInput("an update needs the Harvest id", record=name, field="id")
            response = self.request(
                "PATCH",
                f"{path}/{request.external_id}",
                json=dict(request.data),
                priority=request.priority,
            )
        else:
            raise NotSupported(f"harvest cannot {request.operation} {name}")
        row = response.json()
        return EffectOutcome(str(row["id"]), row)

    def _writable(self, request: WriteRequest) -> str:
        name = _object(request.object)
        if name not in WRITABLE:
            raise NotSupported(f"harvest does not write {request.object!r}")
        return name

    @staticmethod
    def _create_body(name: str, request: WriteRequest) -> dict[str, Any]:
        """The request body with the idempotency key placed where the look-up finds it."""
        body = dict(request.data)
        if name == "time_entries":
            body["external_reference"] = mapping.external_reference(request.idempotency_key)
        elif name == "projects":
            body["notes"] = mapping.with_marker(body.get("notes"), request.idempotency_key)
        elif name == "user_assignments":
            HarvestConnector._assigned_project(request)
        elif not str(body.get("name", "")).strip():
            raise InvalidInput("a Harvest client needs a name", record=name, field="name")
        return body
