"""A fix's effect key: the same within one run (a retry), new in the next (a recurrence)."""

from __future__ import annotations

from accord.ownership import default_policy
from accord.reconcile.heal import Healer, propose
from accord.reconcile.model import Discrepancy, DiscrepancyClass
from accord.reconcile.pairs import pair_named


def _effect_key(run_id: str, value: str = "Acme") -> str:
    pair = pair_named("accounts")
    policy = default_policy()
    item = Discrepancy(
        "acc-1", DiscrepancyClass.FIELD_MISMATCH, "legal_name", value, "ACME", "salesforce"
    )
    fix = propose(pair, policy, item, pair.systems(policy))
    return Healer(policy, None).effect(pair, item, fix, None, run_id=run_id).key


def test_a_retry_of_one_run_keeps_the_key_and_a_later_run_gets_a_new_one() -> None:
    assert _effect_key("run-1") == _effect_key("run-1")
    assert _effect_key("run-1") != _effect_key("run-2")
    assert _effect_key("run-1", "Acme Ltd") != _effect_key("run-1")


def test_the_leakage_pair_never_copies_a_value_unasked() -> None:
    pair = pair_named("billable_work")
    policy = default_policy()
    item = Discrepancy("t1", DiscrepancyClass.AMOUNT_MISMATCH, "amount", 100, 101, "tryton")
    fix = propose(pair, policy, item, pair.systems(policy))
    assert fix.mode.value == "review"
