"""System pairs: seeded drifts of every class per pair, healing under the policy, convergence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from accord.ownership.policy import default_policy, load_policy
from accord.reconcile.heal import FixAction
from accord.reconcile.model import DiscrepancyClass, FieldKind
from accord.reconcile.pairs import PAIRS, Pair, pair_named
from accord.reconcile.run import reconcile_pair
from accord.reconcile.sides import MemorySide
from accord.runtime.effects import Effect, EffectExecutor, EffectOutcome, MemoryLedger, Vendor


class MemorySystem(MemorySide, Vendor):
    """A system held in memory: a side to read and a vendor to write to."""

    def __init__(self, name: str, records: dict[str, dict[str, Any]]) -> None:
        super().__init__(name, records)
        self.writes: list[Effect] = []

    def perform(self, effect: Effect) -> EffectOutcome:
        self.writes.append(effect)
        key = str(effect.request["external_id"])
        data = dict(effect.request["data"])
        if effect.request["operation"] == "create":
            self.records[key] = data  # type: ignore[index]
        else:
            self.records[key].update(data)  # type: ignore[attr-defined]
        return EffectOutcome(key)

    def lookup(self, effect: Effect) -> EffectOutcome | None:
        return None


class FakeQueue:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def raise_(
        self,
        type: str,
        *,
        role: str,
        summary: str,
        context: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
        trace_id: str | None = None,
    ) -> str:
        key = dedupe_key or str(len(self.items))
        self.items.setdefault(
            key, {"type": type, "role": role, "context": context, "trace": trace_id}
        )
        return key


def _value(kind: FieldKind, n: int) -> Any:
    return n * 100 if kind is FieldKind.MONEY else ("open" if kind is FieldKind.STATUS else f"v{n}")


def _records(pair: Pair, count: int = 20) -> dict[str, dict[str, Any]]:
    records = {}
    for n in range(count):
        record = {name: _value(kind, n) for name, kind in pair.fields}
        record.update(account_id=f"acc{n % 3}", period="2025-01")
        records[f"{pair.name}-{n}"] = record
    return records


def _drift(
    pair: Pair, right: dict[str, dict[str, Any]]
) -> set[tuple[str, DiscrepancyClass, str | None]]:
    """Seed one drift of each class the pair's fields allow; return what must be found."""
    keys = sorted(right)
    expected: set[tuple[str, DiscrepancyClass, str | None]] = set()
    kinds = {kind: name for name, kind in reversed(pair.fields)}
    for n, kind in enumerate((FieldKind.TEXT, FieldKind.MONEY, FieldKind.STATUS)):
        name = kinds.get(kind)
        if name is None or name in ("account_id",):
            continue
        key = keys[n]
        right[key][name] = 1 if kind is FieldKind.MONEY else "drifted"
        expected.add(
            (key, next(f for f in pair.specs(default_policy()) if f.name == name).mismatch, name)
        )
    del right[keys[5]]
    expected.add((keys[5], DiscrepancyClass.MISSING, None))
    right["stray"] = dict(right[keys[6]])
    expected.add(("stray", DiscrepancyClass.ORPHAN, None))
    return expected


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_seeded_drift_of_a_pair_is_found_and_clean_data_has_none(name: str) -> None:
    pair = pair_named(name)
    policy = default_policy()
    left = _records(pair)
    clean = reconcile_pair(
        pair,
        MemorySide("l", left),
        MemorySide("r", {k: dict(v) for k, v in left.items()}),
        policy=policy,
        heal=False,
    )
    assert clean.comparison.clean
    right = {k: dict(v) for k, v in left.items()}
    expected = _drift(pair, right)
    report = reconcile_pair(
        pair, MemorySide("l", left), MemorySide("r", right), policy=policy, heal=False
    )
    assert {(d.key, d.category, d.field) for d in report.comparison.discrepancies} == expected
    assert all(o.state == "open" for o in report.outcomes)
    if pair.group_by:
        assert report.comparison.totals  # the seeded money drift moves a total too


def test_field_mismatches_name_the_owning_side_from_the_policy() -> None:
    pair = pair_named("accounts")
    policy = default_policy()
    left = {"a": {"legal_name": "Acme", "payment_terms_days": "30", "status": "active"}}
    right = {"a": {"legal_name": "ACME", "payment_terms_days": "45", "status": "active"}}
    report = reconcile_pair(
        pair, MemorySide("salesforce", left), MemorySide("xero", right), policy=policy, heal=False
    )
    owners = {d.field: d.owner for d in report.comparison.discrepancies}
    assert owners == {"legal_name": "salesforce", "payment_terms_days": "xero"}
    fixes = {
        d.field: o.fix
        for d, o in zip(report.comparison.discrepancies, report.outcomes, strict=True)
    }
    assert (fixes["legal_name"].target, dict(fixes["legal_name"].data)) == (
        "xero",
        {"legal_name": "Acme"},
    )
    assert fixes["legal_name"].mode.value == "auto"
    assert (fixes["payment_terms_days"].target, fixes["payment_terms_days"].mode.value) == (
        "salesforce",
        "review",
    )


def test_auto_fixes_are_effects_review_fixes_are_exceptions_for_the_owning_role() -> None:
    pair = pair_named("accounts")
    policy = default_policy()
    crm = MemorySystem(
        "salesforce",
        {"a": {"legal_name": "Acme", "payment_terms_days": "30"}, "b": {"legal_name": "Beta"}},
    )
    erp = MemorySystem(
        "xero",
        {"a": {"legal_name": "ACME", "payment_terms_days": "45"}, "z": {"legal_name": "Zed"}},
    )
    queue = FakeQueue()
    executor = EffectExecutor(MemoryLedger(), {"salesforce": crm, "xero": erp})
    report = reconcile_pair(
        pair, crm, erp, policy=policy, executor=executor, exceptions=queue, trace_id="t-1"
    )
    states = {
        (d.key, d.field): o.state
        for d, o in zip(report.comparison.discrepancies, report.outcomes, strict=True)
    }
    assert states == {
        ("a", "legal_name"): "healed",
        ("a", "payment_terms_days"): "exception",
        ("b", None): "healed",  # missing in the ERP: created (accounts are auto)
        ("z", None): "exception",  # orphan: flagged, never deleted
    }
    assert erp.records["a"]["legal_name"] == "Acme" and erp.records["b"]["legal_name"] == "Beta"
    assert all(w.trace_id == "t-1" for w in erp.writes)
    assert {item["role"] for item in queue.items.values()} == {"erp", "crm"}
    again = reconcile_pair(pair, crm, erp, policy=policy, executor=executor, exceptions=queue)
    assert {(d.key, d.field) for d in again.comparison.discrepancies} == {
        ("a", "payment_terms_days"),
        ("z", None),
    }
    assert len(queue.items) == 2  # the recurring items are the same two, not new ones
    assert len(erp.writes) == 2


ALL_AUTO = """
ownership:
  systems: {crm: salesforce, psa: tryton, erp: xero, billing: stripe}
  account: {owner: crm, fields: {payment_terms_days: erp}}
  project: {owner: psa}
  invoice: {owner: billing}
  payment: {owner: billing}
  credit_memo: {owner: billing}
  time_entry: {owner: psa}
"""


@pytest.mark.parametrize("name", ["accounts", "projects", "invoices", "payments", "credit_memos"])
def test_healing_converges_a_second_run_finds_nothing(name: str) -> None:
    pair = pair_named(name)
    policy = load_policy(ALL_AUTO)
    left_name, right_name = pair.systems(policy)
    records = _records(pair)
    left = MemorySystem(left_name, records)
    right = MemorySystem(right_name, {k: dict(v) for k, v in records.items()})
    _drift(pair, right.records)  # type: ignore[arg-type]
    del right.records["stray"]  # type: ignore[attr-defined]  # orphans are only ever flagged
    executor = EffectExecutor(MemoryLedger(), {left_name: left, right_name: right})
    first = reconcile_pair(
        pair, left, right, policy=policy, executor=executor, exceptions=FakeQueue()
    )
    assert first.comparison.discrepancies and all(o.state == "healed" for o in first.outcomes)
    assert reconcile_pair(
        pair, left, right, policy=policy, executor=executor, exceptions=FakeQueue()
    ).comparison.clean


def test_leakage_pair_never_creates_invoice_lines() -> None:
    pair = pair_named("billable_work")
    policy = load_policy(ALL_AUTO)
    work = MemorySystem(
        "tryton", {"t1": {"account_id": "a", "currency": "EUR", "amount": 500, "period": "2025-01"}}
    )
    lines = MemorySystem("stripe", {})
    executor = EffectExecutor(MemoryLedger(), {"tryton": work, "stripe": lines})
    queue = FakeQueue()
    report = reconcile_pair(pair, work, lines, policy=policy, executor=executor, exceptions=queue)
    assert [
        (d.category, o.fix.action, o.state)
        for d, o in zip(report.comparison.discrepancies, report.outcomes, strict=True)
    ] == [(DiscrepancyClass.MISSING, FixAction.CREATE, "exception")]
    assert not lines.records and [i["role"] for i in queue.items.values()] == ["psa"]
