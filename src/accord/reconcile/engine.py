"""The hash-diff engine: compare two sides of a million records in seconds.

Three streaming passes, holding only hashes and the few records that differ:

1. read the left side into ``key → hash`` of the compared values (money already
   read as exact decimals, so ``1234.5`` and ``1,234.50`` hash alike);
2. read the right side; each key is looked up and removed: unknown keys are
   orphans, keys whose hash differs are candidates, and both keep their values;
   what remains of the left is missing on the right;
3. read the left side again for just the candidate and missing keys, and
   compare the candidates field by field with the full normalisation (white
   space, empty equals absent). A candidate whose fields all agree after it is
   not a discrepancy.

Money totals per group (account and period for system pairs; one grand total
per money column for files) are summed in passes 1 and 2 and compared after.
Python's ``hash`` is stable within a process, which is all a run needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from accord.reconcile.model import (
    Comparison,
    Discrepancy,
    DiscrepancyClass,
    FieldKind,
    FieldSpec,
    MalformedInput,
    TotalMismatch,
)
from accord.reconcile.sides import Side
from accord.reconcile.values import money_value, same, text_value

__all__ = ["compare"]

_Totals = dict[tuple[Any, ...], list[Decimal]]


#: Marks a left key already met on the right. ``hash()`` never returns -1 (CPython
#: reserves it for errors), so no row's hash can be mistaken for it.
_MATCHED = -1


def _row_hash(values: tuple[Any, ...]) -> int:
    try:
        return hash(values)
    except TypeError:  # a nested document: hash its text
        return hash(repr(values))


class _Pass:
    """Hashes one side's rows and sums its money per group."""

    def __init__(self, fields: Sequence[FieldSpec], group_by: Sequence[str]) -> None:
        self.width = len(fields)
        self.money = [i for i, f in enumerate(fields) if f.kind is FieldKind.MONEY]
        self.grouped = bool(group_by)
        self.totals: _Totals = {}
        self.digest: Callable[[tuple[Any, ...]], int]
        if not self.money and not self.grouped:
            self.digest = _row_hash
        elif self.grouped:
            self.digest = self._grouped
        else:
            self._sums = self.totals[()] = [Decimal(0)] * len(self.money)
            self.digest = self._ungrouped

    def _ungrouped(self, values: tuple[Any, ...]) -> int:
        compared = list(values)
        sums = self._sums
        for n, i in enumerate(self.money):
            value = compared[i]
            if type(value) is str:
                # the fast path: plain numbers (the bulk of any export) read directly
                try:
                    amount = Decimal(value)
                except ArithmeticError:
                    pass
                else:
                    if amount.is_finite():
                        compared[i] = amount
                        sums[n] += amount
                        continue
            value = compared[i] = money_value(value)
            if isinstance(value, Decimal | int) and not isinstance(value, bool):
                sums[n] += value
        return _row_hash(tuple(compared))

    def _grouped(self, values: tuple[Any, ...]) -> int:
        width = self.width
        compared = list(values[:width])
        group = values[width:]
        sums = self.totals.get(group)
        if sums is None:
            sums = self.totals[group] = [Decimal(0)] * len(self.money)
        for n, i in enumerate(self.money):
            value = compared[i] = money_value(compared[i])
            if isinstance(value, Decimal | int) and not isinstance(value, bool):
                sums[n] += value
        return _row_hash(tuple(compared))


def _normaliser(kind: FieldKind) -> Callable[[Any], Any]:
    return money_value if kind is FieldKind.MONEY else text_value


def _duplicate(side: Side, key: str) -> MalformedInput:
    return MalformedInput(f"duplicate key {key!r}", source=side.name, column=key)


def compare(
    left: Side,
    right: Side,
    fields: Sequence[FieldSpec],
    *,
    group_by: Sequence[str] = (),
    record_owner: str | None = None,
) -> Comparison:
    """Compare ``left`` with ``right`` on ``fields``; every difference is data.

    ``left`` is the side that owns the records: a key only on the left is
    ``missing`` (from the right), a key only on the right an ``orphan``.
    ``group_by`` names extra columns (on both sides) whose values group the
    money totals; without it the totals are one group. ``record_owner`` is the
    system named as owner of missing and orphan records.
    """
    fields = tuple(fields)
    columns = [f.name for f in fields] + list(group_by)
    width = len(fields)
    result = Comparison(left.name, right.name, fields, group_by=tuple(group_by))

    left_pass = _Pass(fields, group_by)
    hashes: dict[str, int] = {}
    digest = left_pass.digest
    rows = 0
    for key, values in left.scan(columns):
        hashes[key] = digest(values)
        rows += 1
        if len(hashes) != rows:
            raise _duplicate(left, key)
    result.left_rows = rows

    right_pass = _Pass(fields, group_by)
    candidates: dict[str, tuple[Any, ...]] = {}
    orphans: dict[str, tuple[Any, ...]] = {}
    get = hashes.get
    digest = right_pass.digest
    rows = 0
    for key, values in right.scan(columns):
        rows += 1
        mine = digest(values)  # always: orphans count in the right's totals
        theirs = get(key)
        if theirs is None:
            if key in orphans:
                raise _duplicate(right, key)
            orphans[key] = values
            continue
        if theirs == _MATCHED:
            raise _duplicate(right, key)
        hashes[key] = _MATCHED
        if theirs != mine:
            candidates[key] = values[:width]
    result.right_rows = rows
    missing = {key for key, seen in hashes.items() if seen != _MATCHED}
    del hashes

    wanted: dict[str, tuple[Any, ...]] = {}
    look_for = missing.union(candidates)
    if look_for:
        for key, values in left.scan(columns):
            if key in look_for:
                wanted[key] = values

    normalise = [_normaliser(f.kind) for f in fields]
    found: list[Discrepancy] = []
    for key, right_values in candidates.items():
        ours = wanted[key]
        for spec, norm, a, b in zip(fields, normalise, ours, right_values, strict=False):
            a_value, b_value = norm(a), norm(b)
            if not same(a_value, b_value):
                found.append(
                    Discrepancy(key, spec.mismatch, spec.name, a_value, b_value, spec.owner)
                )
    # whole records (group columns too) for missing and orphans: a fix creates them
    extra = [text_value] * len(group_by)
    for key in missing:
        record = _record(columns, [*normalise, *extra], wanted[key])
        found.append(Discrepancy(key, DiscrepancyClass.MISSING, None, record, None, record_owner))
    for key, orphan in orphans.items():
        record = _record(columns, [*normalise, *extra], orphan)
        found.append(Discrepancy(key, DiscrepancyClass.ORPHAN, None, None, record, record_owner))
    order = {f.name: i for i, f in enumerate(fields)}
    found.sort(key=lambda d: (d.key, order.get(d.field or "", -1), d.category.value))
    result.discrepancies = found
    result.totals = _totals(fields, left_pass, right_pass)
    return result


def _record(
    columns: Sequence[str], normalise: Sequence[Callable[[Any], Any]], values: tuple[Any, ...]
) -> dict[str, Any]:
    return {name: norm(v) for name, norm, v in zip(columns, normalise, values, strict=True)}


def _totals(fields: Sequence[FieldSpec], left: _Pass, right: _Pass) -> list[TotalMismatch]:
    names = [fields[i].name for i in left.money]
    zero = [Decimal(0)] * len(names)
    mismatches: list[TotalMismatch] = []
    for group in sorted(set(left.totals) | set(right.totals), key=lambda g: tuple(map(str, g))):
        ours = left.totals.get(group, zero)
        theirs = right.totals.get(group, zero)
        for name, a, b in zip(names, ours, theirs, strict=True):
            if a != b:
                label = tuple("" if g is None else str(g) for g in group)
                mismatches.append(TotalMismatch(label, name, a, b))
    return mismatches
