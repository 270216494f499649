"""The ``reconcile:`` section of ``accord.yaml``.

::

    reconcile:
      schedule: "0 * * * *"        # cron (UTC): every hour
      pairs: [accounts, invoices]  # which pairs the schedule runs
      sources:                     # where each pair's two sides are read from
        invoices:
          left:  {file: exports/billing-invoices.csv, key: id}
          right: {table: erp_receivables, key: invoice_id}
        accounts:
          left:  {system: salesforce}   # read through the system's connector
          right: {system: netsuite}

A side is a file (CSV or JSON lines), a table of the store's database, or a
system of ``systems:`` read through its connector.
Errors name the key and line like every other configuration error.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = ["ReconcileSettings", "SideSource", "PairSources", "valid_cron"]

_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_NAMES = re.compile(r"^[A-Za-z]{3}(-[A-Za-z]{3})?(,[A-Za-z]{3}(-[A-Za-z]{3})?)*$")


def valid_cron(text: str) -> str:
    """``text`` if it is a 5-field (or 6, with seconds first) cron expression."""
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"expected a cron expression of 5 fields, got {text!r}")
    for part in fields:
        if not (_CRON_FIELD.match(part) or _CRON_NAMES.match(part)):
            raise ValueError(f"{part!r} is not a cron field (in {text!r})")
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SideSource(_Strict):
    """One side of a pair: a file or a table keyed by one column, or a configured system."""

    file: str | None = None
    table: str | None = None
    system: str | None = None
    """A system of ``systems:``, read through its connector (keyed by the canonical id)."""
    key: str = "id"

    @model_validator(mode="after")
    def _one_source(self) -> SideSource:
        given = [name for name in ("file", "table", "system") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'file', 'table' or 'system'")
        return self


class PairSources(_Strict):
    left: SideSource
    right: SideSource


class ReconcileSettings(_Strict):
    schedule: str | None = None
    """When the scheduled run starts (cron, UTC); none: no scheduled run."""
    pairs: list[str] = []
    """The pairs the scheduled run reconciles (all configured sources when empty)."""
    sources: dict[str, PairSources] = {}
    """Where each pair's sides are read from."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else valid_cron(value)

    @field_validator("pairs")
    @classmethod
    def _known_pairs(cls, value: list[str]) -> list[str]:
        from accord.reconcile.pairs import PAIRS

        for name in value:
            if name not in PAIRS:
                raise ValueError(f"unknown pair {name!r} (known: {', '.join(sorted(PAIRS))})")
        return value

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: dict[str, PairSources]) -> dict[str, PairSources]:
        cls._known_pairs(list(value))
        return value
