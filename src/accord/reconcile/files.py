"""Reconcile two exports: CSV or JSON lines, keyed by one column.

    >>> from accord.reconcile.files import parse_compare
    >>> parse_compare("amount:money,status,name:text")
    [('amount', 'money'), ('status', None), ('name', 'text')]

Which columns are compared: those named (``--compare``), else every column the
two files share except the key. How each compares: a ``:money``, ``:text`` or
``:status`` hint decides; a column named ``status`` or ``state`` is a status;
otherwise a column is money when its sampled values read as money on both
sides (see :mod:`accord.reconcile.values`), and text when not.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from accord.errors import InvalidInput
from accord.reconcile.engine import compare
from accord.reconcile.model import Comparison, FieldKind, FieldSpec, MalformedInput
from accord.reconcile.sides import FileSide, Side
from accord.reconcile.values import MONEY_SAMPLE, looks_like_money

__all__ = ["compare_files", "field_specs", "parse_compare"]

_STATUS_NAMES = frozenset({"status", "state"})


def parse_compare(text: str) -> list[tuple[str, str | None]]:
    """``amount:money,status`` → ``[("amount", "money"), ("status", None)]``."""
    columns: list[tuple[str, str | None]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, given = part.partition(":")
        hint = given.strip().lower() or None
        if hint is not None and hint not in {k.value for k in FieldKind}:
            raise InvalidInput(
                f"unknown kind {hint!r} for column {name!r}; expected money, text or status",
                record="--compare",
                field=name,
            )
        columns.append((name.strip(), hint))
    if not columns:
        raise InvalidInput("name at least one column", record="--compare")
    return columns


def _sample(side: Side, column: str) -> list[str]:
    values = []
    for _, (value,) in islice(side.scan([column]), MONEY_SAMPLE):
        if isinstance(value, str) and value.strip():
            values.append(value)
        elif value is not None and not isinstance(value, str):
            values.append(str(value))
    return values


def field_specs(
    left: Side, right: Side, key: str, columns: Sequence[tuple[str, str | None]] | None = None
) -> list[FieldSpec]:
    """The compared fields of two file sides, each with its kind decided."""
    left_columns, right_columns = left.columns(), right.columns()
    for side, names in ((left, left_columns), (right, right_columns)):
        if key not in names:
            raise MalformedInput(
                f"no key column {key!r} (columns: {', '.join(names)})",
                source=_source(side),
                line=1,
                column=key,
            )
    if columns is None:
        shared = [c for c in left_columns if c != key and c in set(right_columns)]
        columns = [(c, None) for c in shared]
    else:
        for side, names in ((left, left_columns), (right, right_columns)):
            for name, _ in columns:
                if name not in names:
                    raise MalformedInput(
                        f"no column named {name!r} (columns: {', '.join(names)})",
                        source=_source(side),
                        line=1,
                        column=name,
                    )
    specs = []
    for name, hint in columns:
        if hint is not None:
            kind = FieldKind(hint)
        elif name.lower() in _STATUS_NAMES:
            kind = FieldKind.STATUS
        else:
            sample = _sample(left, name) + _sample(right, name)
            money = bool(sample) and all(looks_like_money(v) for v in sample)
            kind = FieldKind.MONEY if money else FieldKind.TEXT
        specs.append(FieldSpec(name, kind))
    return specs


def _source(side: Side) -> str:
    return str(side.path) if isinstance(side, FileSide) else side.name


def compare_files(
    left: str | Path,
    right: str | Path,
    key: str,
    columns: Sequence[tuple[str, str | None]] | None = None,
) -> Comparison:
    """Compare two exports by ``key``; the left file is the one that should be complete."""
    left_side = FileSide(left, key)
    right_side = FileSide(right, key)
    if left_side.name == right_side.name:
        left_side.name, right_side.name = str(left), str(right)
    specs = field_specs(left_side, right_side, key, columns)
    return compare(left_side, right_side, specs)
