"""A contract amendment makes a new version: later time at the new rate, the past untouched."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from accord.billing.engine import run_billing
from accord.errors import InvalidInput
from accord.q2c.amendment import (
    amend_rate_card,
    apply_amendment,
    rate_card_from_doc,
    rate_card_to_doc,
)
from accord.q2c.scenario.seed import default_facts, load_world, pre_amendment_world


def _rates_of(world, contract: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    run = run_billing(world)
    invoice = next(i for i in run.invoices if i.contract == contract)
    return {line.sources[0]: str(line.unit_price) for line in invoice.lines}


def test_amending_the_signed_rate_card_gives_the_amended_one() -> None:
    world = load_world()
    amendment = default_facts().amendment
    signed = pre_amendment_world(world, amendment).rate_cards[amendment.rate_card]
    amended = amend_rate_card(
        signed, role=amendment.role, rate=amendment.rate, effective=amendment.effective
    )
    assert set(amended.entries) == set(world.rate_cards[amendment.rate_card].entries)


def test_time_after_the_amendment_bills_at_the_new_rate_and_earlier_time_at_the_old() -> None:
    world = load_world()
    amendment = default_facts().amendment
    before = _rates_of(pre_amendment_world(world, amendment), "kw-2026")
    after = _rates_of(world, "kw-2026")
    # t-020 (11 March) keeps 160 GBP/h; t-021 (18 March) moves from 160 to 170 GBP/h
    assert before["t-020"] == after["t-020"]
    assert before["t-021"] != after["t-021"]
    assert Decimal(after["t-021"]) == Decimal("170.00") * Decimal("1.17")


def test_billed_time_is_not_billed_again_after_an_amendment() -> None:
    world = load_world()
    billed = tuple(
        dataclasses.replace(e, billed=True) if e.id == "t-020" else e for e in world.time_entries
    )
    run = run_billing(dataclasses.replace(world, time_entries=billed))
    sources = {s for i in run.invoices for line in i.lines for s in line.sources}
    assert "t-020" not in sources and "t-021" in sources


def test_a_contract_document_round_trips_and_records_its_amendments() -> None:
    world = load_world()
    card = world.rate_cards["gbp-2026"]
    assert rate_card_from_doc(rate_card_to_doc(card)) == card
    signed = pre_amendment_world(world, default_facts().amendment).rate_cards["gbp-2026"]
    doc = {"id": "kw-2026", "rate_cards": {"gbp-2026": rate_card_to_doc(signed)}}
    amended = apply_amendment(
        doc,
        rate_card="gbp-2026",
        role="senior",
        rate=Decimal("170.00"),
        effective=date(2026, 3, 16),
    )
    assert amended["amendments"] == [
        {"rate_card": "gbp-2026", "role": "senior", "rate": "170.00", "effective": "2026-03-16"}
    ]
    assert doc.get("amendments") is None  # the old version is not changed in place


def test_an_amendment_needs_a_rate_in_force_and_a_positive_rate() -> None:
    card = load_world().rate_cards["gbp-2026"]
    with pytest.raises(InvalidInput, match="no partner rate"):
        amend_rate_card(card, role="partner", rate=Decimal(300), effective=date(2026, 3, 16))
    with pytest.raises(InvalidInput, match="positive"):
        amend_rate_card(card, role="senior", rate=Decimal(0), effective=date(2026, 3, 20))
    with pytest.raises(InvalidInput, match="already has"):
        amend_rate_card(card, role="senior", rate=Decimal(180), effective=date(2026, 3, 16))
    with pytest.raises(InvalidInput, match="no rate card"):
        apply_amendment(
            {"id": "x", "rate_cards": {}}, rate_card="gbp-2026", role="senior",
            rate=Decimal(1), effective=date(2026, 3, 16),
        )  # fmt: skip
