"""Invoice-line sources name what they bill: time, expense, milestone or a fee's period."""

from __future__ import annotations

from accord.billing.scenario import simulate
from accord.q2c.billing import source_kind
from accord.q2c.scenario.seed import load_world


def test_each_source_kind_is_recognised() -> None:
    assert source_kind("t-636708001") == "time_entry"
    assert source_kind("x-15296001") == "expense"
    assert source_kind("bl-m2") == "milestone"
    assert source_kind("bl-mg:2026-03-01..2026-03-31") == "period"


def test_the_scenarios_own_ids_follow_the_same_convention() -> None:
    world = load_world()
    kinds = {
        source_kind(s) for i in simulate(world).invoices for line in i.lines for s in line.sources
    }
    assert kinds == {"time_entry", "expense", "milestone", "period"}
    assert {source_kind(e.id) for e in world.time_entries} == {"time_entry"}
    assert {source_kind(e.id) for e in world.expenses} == {"expense"}
