"""What a reconciliation finds: discrepancies and the comparison they belong to.

Results are data, never printed side effects: a :class:`Comparison` lists every
:class:`Discrepancy` with both sides' values, the counts per class and the money
totals that disagree, so that the CLI, the store and the API all show the same
thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from accord.errors import InvalidInput

__all__ = [
    "Comparison",
    "Discrepancy",
    "DiscrepancyClass",
    "FieldKind",
    "FieldSpec",
    "MalformedInput",
    "TotalMismatch",
    "jsonable",
]


class DiscrepancyClass(StrEnum):
    """The five kinds of drift between two systems."""

    MISSING = "missing"
    """The record is on the left (the owning side) and not on the right."""
    ORPHAN = "orphan"
    """The record is on the right and not on the left: nothing owns it."""
    FIELD_MISMATCH = "field_mismatch"
    """A compared field differs; the discrepancy names the field's owner."""
    AMOUNT_MISMATCH = "amount_mismatch"
    """A money field differs, compared as a decimal to the cent (or minor unit)."""
    STATUS_MISMATCH = "status_mismatch"
    """The lifecycle status differs."""


class FieldKind(StrEnum):
    """How a field compares, and which class its difference falls in."""

    TEXT = "text"
    """Compared as text, surrounding white space ignored; empty equals absent."""
    MONEY = "money"
    """Compared as an exact decimal: ``1234.5`` equals ``1,234.50``."""
    STATUS = "status"
    """Compared as text; a difference is a ``status_mismatch``."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One compared field."""

    name: str
    """The field (or column) name, the same on both sides after projection."""
    kind: FieldKind = FieldKind.TEXT
    """How it compares."""
    owner: str | None = None
    """The system whose value wins (from the ownership policy); ``None`` for files."""

    @property
    def mismatch(self) -> DiscrepancyClass:
        """The class a difference in this field falls in."""
        if self.kind is FieldKind.MONEY:
            return DiscrepancyClass.AMOUNT_MISMATCH
        if self.kind is FieldKind.STATUS:
            return DiscrepancyClass.STATUS_MISMATCH
        return DiscrepancyClass.FIELD_MISMATCH


class MalformedInput(InvalidInput):
    """A side that cannot be read as records: the message names file, line and column.

    ``source`` is the file (or side) name, ``line`` the 1-based line and ``column``
    the column name or 1-based position where reading failed.
    """

    def __init__(
        self, message: str, *, source: str, line: int | None = None, column: str | None = None
    ) -> None:
        super().__init__(message, record=source, field=column)
        self.source = source
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
        if self.column is not None:
            where += f": column {self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One difference between the two sides, with both values."""

    key: str
    """The record's key (shared by both sides)."""
    category: DiscrepancyClass
    """Its class (``class`` in JSON)."""
    field: str | None = None
    """The differing field, for the three mismatch classes."""
    left: Any = None
    """The left value (a whole record for ``missing``)."""
    right: Any = None
    """The right value (a whole record for ``orphan``)."""
    owner: str | None = None
    """The system whose value wins: the field's owner, or the record's for missing/orphan."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"key": self.key, "class": self.category.value}
        if self.field is not None:
            doc["field"] = self.field
        doc["left"] = jsonable(self.left)
        doc["right"] = jsonable(self.right)
        if self.owner is not None:
            doc["owner"] = self.owner
        if self.category is DiscrepancyClass.AMOUNT_MISMATCH:
            left, right = _decimal(self.left), _decimal(self.right)
            if left is not None and right is not None:
                doc["difference"] = str(right - left)
        return doc


@dataclass(frozen=True, slots=True)
class TotalMismatch:
    """A money total per group (account and period) that differs between the sides."""

    group: tuple[str, ...]
    field: str
    left: Decimal
    right: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "group": list(self.group),
            "field": self.field,
            "left": str(self.left),
            "right": str(self.right),
            "difference": str(self.right - self.left),
        }


@dataclass(slots=True)
class Comparison:
    """Everything one comparison of two sides found."""

    left: str
    right: str
    fields: tuple[FieldSpec, ...]
    left_rows: int = 0
    right_rows: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    totals: list[TotalMismatch] = field(default_factory=list)
    group_by: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Discrepancies per class, every class present (zero when none)."""
        counts = {c.value: 0 for c in DiscrepancyClass}
        for item in self.discrepancies:
            counts[item.category.value] += 1
        return counts

    @property
    def clean(self) -> bool:
        """True when nothing differs, totals included."""
        return not self.discrepancies and not self.totals

    def to_json(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "right": self.right,
            "rows": {"left": self.left_rows, "right": self.right_rows},
            "compared": [f.name for f in self.fields],
            "counts": self.counts,
            "discrepancies": [d.to_json() for d in self.discrepancies],
            "totals": {
                "group_by": list(self.group_by),
                "agree": not self.totals,
                "mismatches": [t.to_json() for t in self.totals],
            },
        }


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return None


def jsonable(value: Any) -> Any:
    """``value`` with decimals as text and mappings/sequences made JSON-ready."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
