"""The system pairs Accord reconciles, and what each compares.

A :class:`Pair` names the object (its entity type in the ownership policy),
the two roles compared (the left one owns the records), the fields and how
each compares, and the columns that group the money totals. Owners and the
``auto``/``review`` mode of every field come from the ownership policy, so a
pair never hard-codes who wins.

Sides project records onto these field names; money is integer minor units
(or exact decimals, for files), ``period`` is the ``YYYY-MM`` of the record's
accounting date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from accord.errors import InvalidInput
from accord.ownership.policy import Mode, OwnershipPolicy
from accord.reconcile.model import FieldKind, FieldSpec

__all__ = ["PAIRS", "Pair", "pair_named"]

_TEXT, _MONEY, _STATUS = FieldKind.TEXT, FieldKind.MONEY, FieldKind.STATUS
_BY_ACCOUNT_PERIOD = ("account_id", "period", "currency")
"""Money totals per account, period and currency: amounts in two currencies never add up."""


@dataclass(frozen=True, slots=True)
class Pair:
    """Two systems' copies of one object type, compared field by field."""

    name: str
    """How the CLI, the schedule and the store name the pair (``invoices``)."""
    entity_type: str
    """The object's entity type in the ownership policy (``invoice``)."""
    left: str
    """The role whose records are complete (the object's owner): ``billing``."""
    right: str
    """The role whose copy is checked: ``erp``."""
    fields: tuple[tuple[str, FieldKind], ...]
    """The compared fields and how each compares."""
    group_by: tuple[str, ...] = ()
    """Columns grouping the money totals (``account_id``, ``period``)."""
    create_missing: bool = True
    """Whether an ``auto`` policy may create a missing record on the right. The
    leakage pair sets it off: reconciliation never issues an invoice line."""
    auto_copy: bool = True
    """Whether an ``auto`` policy may copy a differing field's value unasked. The
    leakage pair sets it off: an invoice line's amount is a person's to change."""
    description: str = ""

    def specs(self, policy: OwnershipPolicy) -> list[FieldSpec]:
        """The compared fields, each with its owner from ``policy``."""
        return [
            FieldSpec(name, kind, policy.owner_of(self.entity_type, name))
            for name, kind in self.fields
        ]

    def systems(self, policy: OwnershipPolicy) -> tuple[str, str]:
        """The concrete (left, right) systems under ``policy``."""
        try:
            return policy.systems[self.left], policy.systems[self.right]
        except KeyError as exc:
            raise InvalidInput(
                f"the ownership policy names no system for role {exc.args[0]!r}",
                record=f"pair {self.name}",
                field=str(exc.args[0]),
            ) from None

    def record_owner(self, policy: OwnershipPolicy) -> str:
        """The system that owns the records as a whole (missing and orphan)."""
        return policy.object(self.entity_type).default.owner

    def record_mode(self, policy: OwnershipPolicy) -> Mode:
        """Whether a missing record may be created without asking."""
        return policy.object(self.entity_type).default.mode


PAIRS: Mapping[str, Pair] = MappingProxyType(
    {
        pair.name: pair
        for pair in (
            Pair(
                "accounts",
                "account",
                "crm",
                "erp",
                (
                    ("legal_name", _TEXT),
                    ("domain", _TEXT),
                    ("default_currency", _TEXT),
                    ("payment_terms_days", _TEXT),
                    ("credit_limit", _MONEY),
                    ("status", _STATUS),
                ),
                description="CRM accounts against ERP customers.",
            ),
            Pair(
                "projects",
                "project",
                "psa",
                "erp",
                (
                    ("name", _TEXT),
                    ("code", _TEXT),
                    ("account_id", _TEXT),
                    ("budget", _MONEY),
                    ("status", _STATUS),
                ),
                description="PSA projects against ERP projects.",
            ),
            Pair(
                "invoices",
                "invoice",
                "billing",
                "erp",
                (
                    ("number", _TEXT),
                    ("account_id", _TEXT),
                    ("currency", _TEXT),
                    ("net", _MONEY),
                    ("tax", _MONEY),
                    ("gross", _MONEY),
                    ("amount_due", _MONEY),
                    ("status", _STATUS),
                ),
                _BY_ACCOUNT_PERIOD,
                description="Billing invoices against ERP receivables.",
            ),
            Pair(
                "payments",
                "payment",
                "billing",
                "erp",
                (
                    ("invoice_id", _TEXT),
                    ("account_id", _TEXT),
                    ("currency", _TEXT),
                    ("amount", _MONEY),
                    ("status", _STATUS),
                ),
                _BY_ACCOUNT_PERIOD,
                description="Billing payments against ERP payments.",
            ),
            Pair(
                "credit_memos",
                "credit_memo",
                "billing",
                "erp",
                (
                    ("invoice_id", _TEXT),
                    ("account_id", _TEXT),
                    ("currency", _TEXT),
                    ("amount", _MONEY),
                    ("status", _STATUS),
                ),
                _BY_ACCOUNT_PERIOD,
                description="Billing credit memos against ERP credit notes.",
            ),
            Pair(
                "billable_work",
                "time_entry",
                "psa",
                "billing",
                (
                    ("account_id", _TEXT),
                    ("currency", _TEXT),
                    ("amount", _MONEY),
                ),
                _BY_ACCOUNT_PERIOD,
                create_missing=False,
                auto_copy=False,
                description=(
                    "Approved billable time and expenses in the PSA against billed invoice"
                    " lines (keyed by the source record): missing lines are revenue leakage."
                ),
            ),
        )
    }
)


def pair_named(name: str) -> Pair:
    """The built-in pair called ``name``, or an error listing the known ones."""
    try:
        return PAIRS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown pair {name!r} (known: {', '.join(sorted(PAIRS))})", record="--pair"
        ) from None
