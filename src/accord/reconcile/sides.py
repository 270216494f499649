"""Where the records of one side come from.

A :class:`Side` yields ``(key, values)`` for the columns asked, in that order,
and can be read more than once (the engine reads a side again for the few keys
that differ). Four kinds ship:

* :class:`FileSide` — a CSV or JSON-lines export, streamed (finance teams
  reconcile exports all the time);
* :class:`MemorySide` — records already in memory (projected connector reads,
  tests);
* :class:`SqlSide` — a table in a SQL database, streamed in chunks;
* :class:`ConnectorSide` — a vendor object read through its connector (and so
  through the quota governor), projected onto the canonical comparable form.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, MetaData, Table, select

from accord.connectors.base import Connector, Cursor, VendorRecord
from accord.reconcile.model import MalformedInput
from accord.reconcile.values import MONEY_SAMPLE

__all__ = [
    "ConnectorSide",
    "FileSide",
    "MemorySide",
    "NotComparable",
    "Side",
    "SqlSide",
]

Row = tuple[str, tuple[Any, ...]]


class Side(Protocol):
    """A source of comparable records, keyed; readable more than once."""

    name: str
    """How reports name this side (a system or a file name)."""

    def columns(self) -> list[str]:
        """The columns this side has (for files: its header)."""
        ...

    def scan(self, columns: Sequence[str]) -> Iterator[Row]:
        """Every record as ``(key, values of columns in order)``.

        Raise :class:`~accord.reconcile.model.MalformedInput` naming the line
        and column of a record that cannot be read.
        """
        ...


# -- files --------------------------------------------------------------------------


def _getter(indexes: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    if not indexes:
        return lambda row: ()
    return itemgetter(*indexes)


def _json_text(value: Any) -> Any:
    """A JSON value as the text a CSV export would hold (numbers exact)."""
    if value is None or type(value) is str or type(value) is Decimal:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class FileSide:
    """A CSV (with a header row) or JSON-lines file, keyed by one column.

    The format follows the suffix (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``)
    and otherwise the first character (``{`` means JSON lines). CSV is read as
    UTF-8 (a byte-order mark is ignored) with strict quoting; JSON numbers are
    read as exact decimals, never floats.
    """

    def __init__(self, path: str | Path, key: str, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.name = name or self.path.name
        self.format = self._format()

    def _format(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix in (".jsonl", ".ndjson", ".json"):
            return "jsonl"
        try:
            with self.path.open("r", encoding="utf-8-sig") as handle:
                head = handle.read(4096).lstrip()
        except OSError as exc:
            raise MalformedInput(f"cannot read: {exc.strerror}", source=str(self.path)) from None
        except UnicodeDecodeError:
            raise MalformedInput("not UTF-8 text", source=str(self.path), line=1) from None
        return "jsonl" if head.startswith("{") else "csv"

    def _fail(self, message: str, line: int | None = None, column: str | None = None) -> None:
        raise MalformedInput(message, source=str(self.path), line=line, column=column)

    def _open(self) -> Any:
        try:
            return self.path.open("r", encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise MalformedInput(f"cannot read: {exc.strerror}", source=str(self.path)) from None

    # -- CSV

    def _header(self, reader: Any) -> list[str]:
        try:
            header = next(reader)
        except StopIteration:
            self._fail("empty file: expected a header row", 1)
            raise
        except csv.Error as exc:
            self._fail(f"unreadable CSV: {exc}", reader.line_num)
            raise
        names = [h.strip() for h in header]
        seen: set[str] = set()
        for position, name in enumerate(names, 1):
            if not name:
                self._fail("empty column name in the header", 1, str(position))
            if name in seen:
                self._fail(f"column {name!r} appears twice in the header", 1, str(position))
            seen.add(name)
        return names

    def columns(self) -> list[str]:
        if self.format == "csv":
            with self._open() as handle:
                return self._header(csv.reader(handle, strict=True))
        seen: dict[str, None] = {}
        for _, record in islice(self._json_records(), MONEY_SAMPLE):
            for name in record:
                seen.setdefault(str(name), None)
        return list(seen)

    def _positions(self, header: Sequence[str], columns: Sequence[str]) -> list[int]:
        index = {name: i for i, name in enumerate(header)}
        positions = []
        for name in columns:
            if name not in index:
                self._fail(f"no column named {name!r} (columns: {', '.join(header)})", 1, name)
            positions.append(index[name])
        return positions

    def _scan_csv(self, columns: Sequence[str]) -> Iterator[Row]:
        with self._open() as handle:
            reader = csv.reader(handle, strict=True)
            header = self._header(reader)
            width = len(header)
            key_at = self._positions(header, [self.key])[0]
            get = _getter(self._positions(header, columns))
            try:
                for row in reader:
                    if len(row) != width:
                        if not row:
                            continue  # a blank line
                        self._width_error(row, header, reader.line_num)
                    key = row[key_at]
                    if not key:
                        self._fail("empty key", reader.line_num, self.key)
                    yield key, get(row)
            except csv.Error as exc:
                self._fail(f"unreadable CSV: {exc}", reader.line_num)
            except UnicodeDecodeError:
                self._fail("not UTF-8 text", reader.line_num + 1)

    def _width_error(self, row: Sequence[str], header: Sequence[str], line: int) -> None:
        if len(row) < len(header):
            column = f"{len(row) + 1} ({header[len(row)]})"
            self._fail(f"expected {len(header)} columns, found {len(row)}", line, column)
        self._fail(f"expected {len(header)} columns, found {len(row)}", line, str(len(header) + 1))

    # -- JSON lines

    def _json_records(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        with self._open() as handle:
            number = 0
            try:
                for number, line in enumerate(handle, 1):  # noqa: B007 - used after the loop
                    if not line or line.isspace():
                        continue
                    try:
                        record = json.loads(line, parse_float=Decimal)
                    except json.JSONDecodeError as exc:
                        self._fail(f"not valid JSON: {exc.msg}", number, str(exc.colno))
                    if not isinstance(record, dict):
                        self._fail("expected a JSON object per line", number, "1")
                    yield number, record
            except UnicodeDecodeError:
                self._fail("not UTF-8 text", number + 1)

    def _scan_jsonl(self, columns: Sequence[str]) -> Iterator[Row]:
        key_name = self.key
        for number, record in self._json_records():
            key = record.get(key_name)
            if key is None or key == "":
                self._fail("missing or empty key", number, key_name)
            yield (
                key if type(key) is str else str(_json_text(key)),
                tuple(_json_text(record.get(c)) for c in columns),
            )

    def scan(self, columns: Sequence[str]) -> Iterator[Row]:
        if self.format == "csv":
            return self._scan_csv(columns)
        return self._scan_jsonl(columns)


# -- memory, SQL, connectors -------------------------------------------------------------


class MemorySide:
    """Records held in memory, keyed: ``{key: {field: value}}``."""

    def __init__(self, name: str, records: Mapping[str, Mapping[str, Any]]) -> None:
        self.name = name
        self.records = records

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records.values():
            for column in record:
                seen.setdefault(column, None)
        return list(seen)

    def scan(self, columns: Sequence[str]) -> Iterator[Row]:
        for key, record in self.records.items():
            yield key, tuple(record.get(c) for c in columns)


class SqlSide:
    """A table of a SQL database (an export table, a warehouse copy), streamed."""

    def __init__(
        self,
        engine: Engine,
        table: str,
        key: str,
        *,
        schema: str | None = None,
        chunk: int = 10_000,
    ) -> None:
        self.engine = engine
        self.key = key
        self.name = table
        self.chunk = chunk
        self._table = Table(table, MetaData(), schema=schema, autoload_with=engine)

    def columns(self) -> list[str]:
        return [c.name for c in self._table.columns]

    def scan(self, columns: Sequence[str]) -> Iterator[Row]:
        known = set(self.columns())
        for name in (self.key, *columns):
            if name not in known:
                raise MalformedInput(f"no column named {name!r}", source=self.name, column=name)
        query = select(self._table.c[self.key], *(self._table.c[c] for c in columns))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=self.chunk).execute(query)
            for row in result:
                yield str(row[0]), tuple(row[1:])


Projection = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


class NotComparable(Exception):
    """Raised by a projection: the record is the pair's, but cannot be compared.

    Time the PSA holds without a billable rate, say: it belongs to the pair,
    yet nothing on the record says what it is worth. The side leaves the record
    out of the comparison and lists it, with ``reason``, in
    :attr:`ConnectorSide.not_comparable` (and a run's report carries the list),
    rather than failing the whole run or silently dropping it.
    """

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


class ConnectorSide:
    """One vendor object, read through its connector and projected.

    ``project`` turns a vendor record's data into the comparable canonical
    fields (or ``None`` to leave the record out: drafts, other tenants); the
    record's key is the projected field ``key``. Reads go through the
    connector, so the shared quota governor paces them.

    Reading is incremental when the ``snapshot`` of the last run (projected
    records by vendor id, :attr:`snapshot`) and its ``cursor`` are given: only
    the records changed since are fetched and laid over the snapshot;
    :attr:`cursor` is then the one to keep. ``carries`` names the compared
    fields the vendor holds at all (``None``: every field); a pair compares only
    the fields both its sides carry.

    ``reader`` replaces the incremental read with a full one (every record as
    it is now): for a vendor whose change feed is not kept for ever (Stripe's
    events last 30 days) or a side made of several vendor objects.
    """

    def __init__(
        self,
        connector: Connector,
        object: str,
        project: Projection,
        *,
        key: str = "id",
        name: str | None = None,
        snapshot: Mapping[str, Mapping[str, Any]] | None = None,
        cursor: Cursor | None = None,
        carries: frozenset[str] | None = None,
        reader: Callable[[], Iterable[VendorRecord]] | None = None,
    ) -> None:
        self.connector = connector
        self.reader = reader
        self.carries = carries
        self.object = object
        self.project = project
        self.key = key
        self.name = name or connector.name
        incremental = snapshot is not None and cursor is not None and reader is None
        self.cursor = cursor if incremental and cursor is not None else Cursor()
        self.snapshot: dict[str, Mapping[str, Any]] = dict(snapshot or {}) if incremental else {}
        self._records: dict[str, Mapping[str, Any]] | None = None
        self.not_comparable: dict[str, str] = {}
        """Key (or vendor id) → why the record was left out of the comparison."""

    @property
    def records(self) -> dict[str, Mapping[str, Any]]:
        """The projected records by key, read once per side."""
        if self._records is None:
            changed: Iterable[VendorRecord]
            if self.reader is not None:
                changed = self.reader()
            else:
                changed, self.cursor = self.connector.read_changes(self.object, self.cursor)
            for vendor_record in changed:
                try:
                    projected = None if vendor_record.deleted else self.project(vendor_record.data)
                except NotComparable as exc:
                    self.not_comparable[exc.key or vendor_record.id] = exc.reason
                    projected = None
                if projected is None or projected.get(self.key) in (None, ""):
                    self.snapshot.pop(vendor_record.id, None)
                else:
                    self.snapshot[vendor_record.id] = projected
            self._records = {str(r[self.key]): r for r in self.snapshot.values()}
        return self._records

    def columns(self) -> list[str]:
        return MemorySide(self.name, self.records).columns()

    def scan(self, columns: Sequence[str]) -> Iterator[Row]:
        return MemorySide(self.name, self.records).scan(columns)
