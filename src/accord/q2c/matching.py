"""Customer duplicate detection: is a CRM account already a customer in the ERP?

A won deal names a CRM account; before the ERP gets a customer for it, the
account is compared with every customer the ERP already has, on three keys:

1. **Tax id** (VAT number, EIN), compared after removing spaces, dots and
   dashes and upper-casing: equal tax ids are the same legal entity.
2. **Web domain**, compared without scheme, ``www.`` and path.
3. **Normalised legal name**: lower-cased, accents and punctuation removed,
   legal-form suffixes dropped (Ltd, Limited, Inc, GmbH, LLC, …), then scored
   with RapidFuzz's ``token_sort_ratio`` (0–100; word order does not matter).

The decision, per candidate, strongest first:

=====================================================  =========================
evidence                                               decision
=====================================================  =========================
tax ids equal                                          ``match``
domains equal, tax ids not contradicting               ``match``
name score ≥ ``MATCH_SCORE`` (95), nothing contradicting  ``match``
tax ids or domains contradict, name score ≥ ``REVIEW_SCORE``  ``possible_duplicate``
name score in ``[REVIEW_SCORE, MATCH_SCORE)`` (80–95)   ``possible_duplicate``
anything else                                          ``new``
=====================================================  =========================

"Contradicting" means both sides have the key and the values differ. An
uncertain match is never merged automatically: it becomes a
``possible_duplicate`` exception for sales operations, who decide.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rapidfuzz import fuzz

__all__ = [
    "MATCH_SCORE",
    "REVIEW_SCORE",
    "Candidate",
    "Decision",
    "MatchResult",
    "match_customer",
    "normalise_domain",
    "normalise_name",
    "normalise_tax_id",
]

MATCH_SCORE = 95.0
"""A name scoring at least this, with no contradicting tax id or domain, is the same customer."""
REVIEW_SCORE = 80.0
"""From this score up to ``MATCH_SCORE`` a name is a possible duplicate, for a person to decide."""

_LEGAL_FORMS = frozenset(
    {
        "ltd", "limited", "inc", "incorporated", "corp", "corporation", "co", "company",
        "llc", "llp", "lp", "plc", "gmbh", "ag", "kg", "se", "sa", "sarl", "bv", "nv",
        "srl", "spa", "oy", "ab", "as", "pty", "the",
    }
)  # fmt: skip
_NON_WORD = re.compile(r"[^a-z0-9]+")


class Decision(StrEnum):
    MATCH = "match"
    POSSIBLE_DUPLICATE = "possible_duplicate"
    NEW = "new"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A customer the ERP already has, as the matcher sees it."""

    id: str
    """Canonical account id."""
    legal_name: str
    tax_id: str | None = None
    domain: str | None = None
    erp_id: str | None = None

    @classmethod
    def from_record(cls, id: str, data: Mapping[str, Any], erp_id: str | None = None) -> Candidate:
        return cls(
            id=id,
            legal_name=str(data.get("legal_name") or ""),
            tax_id=data.get("tax_id"),
            domain=data.get("domain"),
            erp_id=erp_id,
        )


@dataclass(frozen=True, slots=True)
class MatchResult:
    decision: Decision
    candidate: Candidate | None
    score: float
    """Name score of the chosen candidate (0–100)."""
    reason: str


def normalise_name(name: str) -> str:
    """``"Brightline Partners Ltd."`` → ``"brightline partners"``."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    folded = folded.replace("&", " and ")
    words = [w for w in _NON_WORD.split(folded) if w and w not in _LEGAL_FORMS]
    return " ".join(words)


def normalise_domain(domain: str | None) -> str | None:
    """``"https://www.Example.com/about"`` → ``"example.com"``; ``None`` when empty."""
    if not domain:
        return None
    text = re.sub(r"^[a-z]+://", "", str(domain).strip().lower())
    text = text.split("/", 1)[0].split(":", 1)[0]
    text = text.removeprefix("www.")
    return text or None


def normalise_tax_id(tax_id: str | None) -> str | None:
    """``"GB 123 456 789"`` → ``"GB123456789"``; ``None`` when empty."""
    if not tax_id:
        return None
    text = re.sub(r"[\s.\-/]", "", str(tax_id)).upper()
    return text or None


def _conflict(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


def _judge(account: Candidate, other: Candidate) -> MatchResult:
    tax_a, tax_b = normalise_tax_id(account.tax_id), normalise_tax_id(other.tax_id)
    dom_a, dom_b = normalise_domain(account.domain), normalise_domain(other.domain)
    score = float(
        fuzz.token_sort_ratio(normalise_name(account.legal_name), normalise_name(other.legal_name))
    )
    if tax_a is not None and tax_a == tax_b:
        return MatchResult(Decision.MATCH, other, score, f"same tax id {tax_a}")
    contradicts = _conflict(tax_a, tax_b) or _conflict(dom_a, dom_b)
    if dom_a is not None and dom_a == dom_b and not _conflict(tax_a, tax_b):
        return MatchResult(Decision.MATCH, other, score, f"same domain {dom_a}")
    if score >= MATCH_SCORE and not contradicts:
        return MatchResult(Decision.MATCH, other, score, f"same name (score {score:.0f})")
    if score >= REVIEW_SCORE:
        why = "tax id or domain differs" if contradicts else "similar name"
        return MatchResult(
            Decision.POSSIBLE_DUPLICATE,
            other,
            score,
            f"{why}: {account.legal_name!r} ~ {other.legal_name!r} (score {score:.0f})",
        )
    return MatchResult(Decision.NEW, None, score, "no similar customer")


_RANK = {Decision.MATCH: 2, Decision.POSSIBLE_DUPLICATE: 1, Decision.NEW: 0}


def match_customer(account: Candidate, existing: Iterable[Candidate]) -> MatchResult:
    """The strongest decision over every existing customer (ties: the higher name score).

    Two or more candidates that each ``match`` are themselves ambiguous, so the
    result is then a ``possible_duplicate`` naming the best of them.
    """
    best = MatchResult(Decision.NEW, None, 0.0, "no similar customer")
    matches = 0
    for other in existing:
        if other.id == account.id:
            continue
        result = _judge(account, other)
        if result.decision is Decision.MATCH:
            matches += 1
        if (_RANK[result.decision], result.score) > (_RANK[best.decision], best.score):
            best = result
    if matches > 1 and best.candidate is not None:
        return MatchResult(
            Decision.POSSIBLE_DUPLICATE,
            best.candidate,
            best.score,
            f"{matches} existing customers match {account.legal_name!r}",
        )
    return best
