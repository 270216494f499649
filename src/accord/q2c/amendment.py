"""A contract amendment mid-period: a new contract version with a new rate.

An amendment never rewrites the past. It closes the amended rate the day
before it takes effect and adds the new rate from that day, and it is stored as
a new version of the canonical contract record (the old version stays in the
history). A billing run reads the current version, so time worked before the
effective date bills at the old rate and later time at the new one; work already
invoiced is not billed again (the engine skips billed sources), so an invoice
issued before the amendment is untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from accord.billing.model import RateCard, RateEntry
from accord.errors import InvalidInput

__all__ = ["amend_rate_card", "apply_amendment", "rate_card_from_doc", "rate_card_to_doc"]


def rate_card_to_doc(card: RateCard) -> dict[str, Any]:
    """A rate card as a JSON document (decimals and dates as text)."""

    def entry(e: RateEntry) -> dict[str, Any]:
        return {
            "rate": str(e.rate),
            "person": e.person,
            "role": e.role,
            "project": e.project,
            "account": e.account,
            "default": e.default,
            "valid_from": e.valid_from.isoformat() if e.valid_from else None,
            "valid_to": e.valid_to.isoformat() if e.valid_to else None,
        }

    return {"id": card.id, "currency": card.currency, "entries": [entry(e) for e in card.entries]}


def rate_card_from_doc(doc: Mapping[str, Any]) -> RateCard:
    def day(value: Any) -> date | None:
        return date.fromisoformat(value) if value else None

    entries = tuple(
        RateEntry(
            rate=Decimal(str(e["rate"])),
            person=e.get("person"),
            role=e.get("role"),
            project=e.get("project"),
            account=e.get("account"),
            default=bool(e.get("default")),
            valid_from=day(e.get("valid_from")),
            valid_to=day(e.get("valid_to")),
        )
        for e in doc["entries"]
    )
    return RateCard(str(doc["id"]), str(doc["currency"]), entries)


def amend_rate_card(card: RateCard, *, role: str, rate: Decimal, effective: date) -> RateCard:
    """``card`` with ``role``'s open rate closed the day before ``effective`` and ``rate`` from it.

    Raises :class:`InvalidInput` when the card has no rate for the role in force
    on the effective date, or already has one starting that day.
    """
    if rate <= 0:
        raise InvalidInput(f"rate must be positive, not {rate}", record=card.id, field="rate")
    closing = effective - timedelta(days=1)
    entries: list[RateEntry] = []
    closed = 0
    for entry in card.entries:
        if entry.role != role or entry.person or entry.project or entry.account:
            entries.append(entry)
            continue
        if entry.valid_from == effective:
            raise InvalidInput(
                f"already has a {role} rate from {effective}", record=card.id, field="entries"
            )
        in_force = (entry.valid_from is None or entry.valid_from <= effective) and (
            entry.valid_to is None or entry.valid_to >= effective
        )
        if in_force:
            entry = dataclasses.replace(entry, valid_to=closing)
            closed += 1
        entries.append(entry)
    if closed == 0:
        raise InvalidInput(
            f"has no {role} rate in force on {effective}", record=card.id, field="entries"
        )
    entries.append(RateEntry(rate=rate, role=role, valid_from=effective))
    return RateCard(card.id, card.currency, tuple(entries))


def apply_amendment(
    contract: Mapping[str, Any], *, rate_card: str, role: str, rate: Decimal, effective: date
) -> dict[str, Any]:
    """The next version of a canonical contract document, with the amended rate card."""
    cards = dict(contract.get("rate_cards", {}))
    if rate_card not in cards:
        raise InvalidInput(
            f"the contract has no rate card {rate_card!r}",
            record=str(contract.get("id")),
            field="rate_cards",
        )
    amended = amend_rate_card(
        rate_card_from_doc(cards[rate_card]), role=role, rate=rate, effective=effective
    )
    cards[rate_card] = rate_card_to_doc(amended)
    history = list(contract.get("amendments", []))
    history.append(
        {
            "rate_card": rate_card,
            "role": role,
            "rate": str(rate),
            "effective": effective.isoformat(),
        }
    )
    return {**contract, "rate_cards": cards, "amendments": history}


def record_amendment(
    ctx: Any, contract_id: str, *, rate_card: str, role: str, rate: Decimal, effective: date
) -> int:
    """Store the amended contract as its next canonical version; the version.

    Idempotent: an amendment already recorded (same card, role, rate and date)
    is not applied twice.
    """
    from accord.q2c import context as c

    doc = c.get(ctx, "contract", contract_id)
    if doc is None:
        raise InvalidInput("no such contract", record=contract_id)
    wanted = {
        "rate_card": rate_card,
        "role": role,
        "rate": str(rate),
        "effective": effective.isoformat(),
    }
    if wanted in doc.get("amendments", []):
        with ctx.engine.connect() as conn:
            from accord.store import Records

            found = Records(conn).get("contract", contract_id)
        return found.version if found else 0
    amended = apply_amendment(doc, rate_card=rate_card, role=role, rate=rate, effective=effective)
    trace = c.trace_of(str(doc["opportunity"])) if doc.get("opportunity") else None
    return c.put(
        ctx, "contract", contract_id, amended, system="accord", trace_id=trace,
        action="contract.amended",
    )  # fmt: skip
