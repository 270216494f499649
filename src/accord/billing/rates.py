"""Rate-card resolution and hour rounding (DOMAIN.md rule 1).

The most specific entry wins: person+project > person > role+project > project >
role > account > default. Entries may be effective-dated; among entries of the
same specificity the one that started latest wins. Resolution is cached per
(card, person, role, project, account) so that a run over a million time entries
does a dictionary look-up per entry, not a scan of the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from itertools import product

from accord.billing.model import RateCard, RateEntry, Rounding, RoundingMode

__all__ = ["RateResolver", "ResolvedRate", "round_hours", "specificity"]

_ROUNDINGS = {
    RoundingMode.UP: ROUND_CEILING,
    RoundingMode.DOWN: ROUND_FLOOR,
    RoundingMode.NEAREST: ROUND_HALF_UP,
}

# (person, project, role, account) presence, most specific first.
_PATTERNS: tuple[tuple[bool, bool, bool, bool], ...] = tuple(
    sorted(((p, j, r, a) for p, j, r, a in product((True, False), repeat=4)), reverse=True)
)


def specificity(entry: RateEntry) -> tuple[bool, bool, bool, bool]:
    """The (person, project, role, account) key presence of an entry."""
    return (
        entry.person is not None,
        entry.project is not None,
        entry.role is not None,
        entry.account is not None,
    )


def describe(entry: RateEntry) -> str:
    keys = [
        f"{name} {value}"
        for name, value in (
            ("person", entry.person),
            ("project", entry.project),
            ("role", entry.role),
            ("account", entry.account),
        )
        if value is not None
    ]
    return " + ".join(keys) if keys else "default"


def round_hours(hours: Decimal, rounding: Rounding | None) -> Decimal:
    """Bring ``hours`` to the rounding increment (7.533 h up to 0.1 → 7.6 h)."""
    if rounding is None:
        return hours
    steps = (hours / rounding.increment).to_integral_value(rounding=_ROUNDINGS[rounding.mode])
    return steps * rounding.increment


@dataclass(frozen=True, slots=True)
class ResolvedRate:
    rate: Decimal
    entry: RateEntry
    label: str


class RateResolver:
    """Finds the rate for a piece of work on one rate card."""

    __slots__ = ("_card", "_index", "_cache", "_resolved")

    def __init__(self, card: RateCard) -> None:
        self._card = card
        index: dict[tuple[str | None, str | None, str | None, str | None], list[RateEntry]] = {}
        for entry in card.entries:
            key = (entry.person, entry.project, entry.role, entry.account)
            index.setdefault(key, []).append(entry)
        for entries in index.values():
            entries.sort(key=lambda e: e.valid_from or date.min, reverse=True)
        self._index = index
        # One result object per entry: a million look-ups share a few thousand.
        self._resolved = {id(e): ResolvedRate(e.rate, e, describe(e)) for e in card.entries}
        self._cache: dict[
            tuple[str, str | None, str, str | None], tuple[tuple[RateEntry, ...], ...]
        ] = {}

    @property
    def card(self) -> RateCard:
        return self._card

    def _candidates(
        self, person: str, role: str | None, project: str, account: str | None
    ) -> tuple[tuple[RateEntry, ...], ...]:
        key = (person, role, project, account)
        found = self._cache.get(key)
        if found is None:
            groups = []
            for has_person, has_project, has_role, has_account in _PATTERNS:
                if (has_role and role is None) or (has_account and account is None):
                    continue
                probe = (
                    person if has_person else None,
                    project if has_project else None,
                    role if has_role else None,
                    account if has_account else None,
                )
                entries = self._index.get(probe)
                if entries:
                    groups.append(tuple(entries))
            found = tuple(groups)
            self._cache[key] = found
        return found

    def resolve(
        self, person: str, role: str | None, project: str, account: str | None, day: date
    ) -> ResolvedRate | None:
        """The winning entry for this work on ``day``, or ``None`` if none applies."""
        for group in self._candidates(person, role, project, account):
            for entry in group:
                if (entry.valid_from is None or entry.valid_from <= day) and (
                    entry.valid_to is None or day <= entry.valid_to
                ):
                    return self._resolved[id(entry)]
        return None
