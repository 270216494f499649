"""Quote to cash through the Python API: the phases one by one, re-run, and corrected.

``accord demo`` is the whole month in one command; these tests drive the same
processes step by step in one process, to check what the summary cannot show:
that running a phase again changes nothing anywhere, and that a ``rebill``
credit re-opens the work it credits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.q2c import billing, context, payments
from accord.q2c.demo import (
    PHASES,
    Endpoints,
    StandIns,
    _outside,
    open_context,
    run_hub_phase,
    seed_scenario,
    summarise,
)
from accord.q2c.scenario import seed
from accord.store import Records


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StandIns, Any]]:
    workdir: Path = tmp_path_factory.mktemp("q2c-api")
    facts = seed.default_facts()
    world = seed.pre_amendment_world(seed.load_world(), facts.amendment)
    si = StandIns(11).start()
    hub = None
    try:
        subsidiaries = seed_scenario(si, facts)
        endpoints = Endpoints(
            database_url=f"sqlite:///{workdir / 'accord.db'}",
            salesforce=si.salesforce.url,
            harvest=si.harvest.url,
            stripe=si.stripe.url,
            netsuite=si.netsuite.url,
            netsuite_credentials=si.netsuite.credentials,
            subsidiaries=subsidiaries,
        )
        hub, ctx = open_context(endpoints, world, facts, executor_id="api-test")
        for phase in PHASES:
            if phase in ("deals", "amend", "bill", "payments", "credit"):
                run_hub_phase(ctx, phase)
            else:
                _outside(si, ctx, phase)
        yield si, ctx
    finally:
        if hub is not None:
            hub.stop()
        si.stop()


def _counts(si: StandIns) -> dict[str, dict[str, int]]:
    return summarise(si, context.current(), {})["systems"]


def test_running_every_phase_again_changes_nothing_at_any_system(
    month: tuple[StandIns, Any],
) -> None:
    si, ctx = month
    before = _counts(si)
    ledger_before = summarise(si, ctx, {})["effects"]["calls"]
    for phase in ("deals", "amend", "bill", "payments", "credit"):
        run_hub_phase(ctx, phase)
    assert _counts(si) == before
    assert summarise(si, ctx, {})["effects"]["calls"] == ledger_before


def test_the_amendment_is_a_second_contract_version(month: tuple[StandIns, Any]) -> None:
    _, ctx = month
    with ctx.engine.connect() as conn:
        history = Records(conn).history("contract", "kw-2026")
    assert [v.version for v in history] == [1, 2]
    assert history[0].data["amendments"] == []
    assert history[1].data["amendments"][0]["effective"] == "2026-03-16"


def test_billed_sources_carry_their_invoice(month: tuple[StandIns, Any]) -> None:
    _, ctx = month
    iid = billing.invoice_id("kw-2026", ctx.world.period_end)
    invoice = context.get(ctx, "invoice", iid)
    assert invoice is not None
    for line in invoice["lines"]:
        for source in line["sources"]:
            kind = billing.source_kind(source)
            assert context.get(ctx, kind, source)["invoice"] == iid  # type: ignore[index]


def test_a_rebill_credit_reopens_the_work_it_credits(month: tuple[StandIns, Any]) -> None:
    si, ctx = month
    iid = billing.invoice_id("nw-2026", ctx.world.period_end)
    memo = payments.issue_credit_memo(iid, "time", "rebill")
    assert memo["gross"] == 250000 and memo["currency"] == "USD"  # 1680.00 + 820.00
    invoice = context.get(ctx, "invoice", iid)
    assert invoice is not None and invoice["credited"] == 250000
    sources = [s for line in invoice["lines"] for s in line["sources"]]
    for source in sources:
        assert context.get(ctx, "time_entry", source)["billing"] == "unbilled"  # type: ignore[index]
    world = billing.collect_world(ctx)
    reopened = {e.id for e in world.time_entries if not e.billed}
    assert set(sources) <= reopened
    assert len(si.netsuite.records("creditMemo")) == 2
    assert len(si.stripe.objects("credit_note")) == 2


def test_a_write_off_goes_to_the_erp_once_and_refuses_more_than_is_open(
    month: tuple[StandIns, Any],
) -> None:
    si, ctx = month
    iid = billing.invoice_id("kw-2026", ctx.world.period_end)
    from dbos._error import DBOSMaxStepRetriesExceeded

    from accord.errors import InvalidInput

    with pytest.raises((InvalidInput, DBOSMaxStepRetriesExceeded)):
        payments.write_off(iid, 1, "paid in full, nothing is open")
