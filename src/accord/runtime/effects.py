"""Exactly-once effects on vendor systems.

Every outbound call goes through :class:`EffectExecutor`. It records the intent
in the effect ledger (committed) before calling the vendor, and the outcome
after. A crash between the two leaves the intent in doubt; the next attempt
resolves the doubt by looking the object up at the vendor (by idempotency key
or external id) before it calls again, so an effect is never duplicated and
never lost. The vendor call itself carries the idempotency key (an
``Idempotency-Key`` header, an external-id upsert or a look-up-before-create),
so even a retry that races a lost response creates one object.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from accord.errors import AccordError, InvalidInput
from accord.jsontext import compiled
from accord.runtime.retry import RetryPolicy

__all__ = [
    "Effect",
    "EffectExecutor",
    "EffectFailed",
    "EffectOutcome",
    "Ledger",
    "LedgerEntry",
    "MemoryLedger",
    "Vendor",
    "effect_key",
    "ordered_effect_key",
    "request_digest",
]

LedgerStatus = Literal["intent", "done", "failed", "doubt"]


#: The JSON form a request is recorded and digested in (built once: ``json.dumps``
#: with options builds an encoder per call).
REQUEST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
#: ``REQUEST_JSON.encode`` without its set-up per call (:mod:`accord.jsontext`).
request_json = compiled(REQUEST_JSON)


def request_digest(request: Mapping[str, Any]) -> str:
    """A stable digest of a request body (canonical JSON, sorted keys)."""
    return hashlib.sha256(request_json(request).encode()).hexdigest()


def effect_key(system: str, operation: str, *canonical_ids: str) -> str:
    """The idempotency key of an effect: derived from what it is about, never random.

    The same operation on the same canonical records always yields the same key,
    whichever worker computes it and however often.
    """
    material = "\x1f".join((system, operation, *canonical_ids))
    return f"acc_{hashlib.sha256(material.encode()).hexdigest()[:40]}"


#: Hex digits of the order in an ordered key: 2**48 events before it wraps.
_ORDER_DIGITS = 12


def ordered_effect_key(order: int, system: str, operation: str, *canonical_ids: str) -> str:
    """An effect key that sorts by ``order``: for effects recorded in bulk.

    The same form as :func:`effect_key` (``acc_`` and 40 hex digits), but the
    first 12 digits are ``order`` — the inbox sequence number of the event
    whose change the effect carries — and the rest a digest of what the effect
    is about. Still derived, never random: one change of one record is made by
    exactly one event, so its effects always get the same keys. Keys of a
    stream of new effects so land at the end of the ledger's index instead of
    on a random page of it each, which kept a long run's cost per event from
    growing with the ledger.
    """
    if not 0 <= order < 16**_ORDER_DIGITS:
        raise ValueError(f"order {order} does not fit {_ORDER_DIGITS} hex digits")
    material = "\x1f".join((system, operation, *canonical_ids))
    digest = hashlib.sha256(material.encode()).hexdigest()[: 40 - _ORDER_DIGITS]
    return f"acc_{order:0{_ORDER_DIGITS}x}{digest}"


@dataclass(frozen=True, slots=True)
class Effect:
    """One intended change at a vendor."""

    system: str
    operation: str
    key: str
    request: Mapping[str, Any]
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class EffectOutcome:
    external_id: str | None
    result: Mapping[str, Any] = field(default_factory=dict)
    replayed: bool = False
    """True when the ledger or a vendor look-up already knew the outcome."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    status: LedgerStatus
    request_digest: str
    external_id: str | None = None
    result: Mapping[str, Any] | None = None
    attempts: int = 0
    error: str | None = None


class Ledger(Protocol):
    """Where intents and outcomes are recorded; each call commits on its own."""

    def get(self, key: str) -> LedgerEntry | None: ...

    def intend(self, effect: Effect, digest: str) -> None: ...

    def attempt(self, key: str) -> None: ...

    def complete(self, key: str, outcome: EffectOutcome) -> None: ...

    def fail(self, key: str, error: str) -> None: ...


class Vendor(ABC):
    """The side of a connector the executor needs: perform, and find again."""

    @abstractmethod
    def perform(self, effect: Effect) -> EffectOutcome:
        """Send the effect, carrying ``effect.key`` as the vendor's idempotency key.

        Raise :class:`accord.errors.TransientError` for faults a retry can cure
        (timeouts, 5xx, 429 with ``retry_after``) and any other
        :class:`accord.errors.AccordError` for those it cannot.
        """

    @abstractmethod
    def lookup(self, effect: Effect) -> EffectOutcome | None:
        """The outcome of an earlier attempt of this effect, if the vendor has it."""

    batch_size: int = 0
    """How many effects one vendor call may carry; 0 when the vendor has no batch API."""

    def perform_many(self, batch: Sequence[Effect]) -> list[EffectOutcome | AccordError]:
        """Send several effects in one call (sObject collections, batch endpoints).

        Returns one outcome or error per effect, in order; raises for a fault of
        the whole call. The default sends them one by one; the runtime uses it only
        when ``batch_size`` is above zero.
        """
        results: list[EffectOutcome | AccordError] = []
        for effect in batch:
            try:
                results.append(self.perform(effect))
            except AccordError as exc:
                results.append(exc)
        return results


class EffectFailed(AccordError):
    """An effect could not be applied; ``retryable`` says whether retrying may help."""

    def __init__(self, effect: Effect, reason: str, *, retryable: bool, attempts: int) -> None:
        super().__init__(f"{effect.system} {effect.operation} [{effect.key}]: {reason}")
        self.effect = effect
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts


class EffectExecutor:
    """Performs effects once, through the ledger, with retries and backoff."""

    def __init__(
        self,
        ledger: Ledger,
        vendors: Mapping[str, Vendor],
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ledger = ledger
        self._vendors = vendors
        self._policy = policy or RetryPolicy()
        self._sleep = sleep

    def vendor(self, system: str) -> Vendor | None:
        return self._vendors.get(system)

    def execute(self, effect: Effect) -> EffectOutcome:
        vendor = self._vendors.get(effect.system)
        if vendor is None:
            raise InvalidInput(f"no connector for system {effect.system!r}", record=effect.key)
        digest = request_digest(effect.request)
        entry = self._ledger.get(effect.key)
        if entry is not None:
            if entry.request_digest != digest:
                raise InvalidInput(
                    "the same idempotency key was used with another request",
                    record=effect.key,
                    field="request",
                )
            if entry.status == "done":
                return EffectOutcome(entry.external_id, entry.result or {}, replayed=True)
            # an intent never attempted cannot have reached the vendor; any other
            # (attempted, doubt, failed) may have: look it up before sending again
            untried = entry.status == "intent" and entry.attempts == 0
            return self._attempts(effect, vendor, look_first=not untried)
        self._ledger.intend(effect, digest)
        return self._attempts(effect, vendor, look_first=False)

    def _attempts(self, effect: Effect, vendor: Vendor, *, look_first: bool) -> EffectOutcome:
        policy = self._policy
        attempt = 0
        while True:
            attempt += 1
            self._ledger.attempt(effect.key)
            try:
                if look_first:
                    found = vendor.lookup(effect)
                    if found is not None:
                        self._ledger.complete(effect.key, found)
                        return EffectOutcome(found.external_id, found.result, replayed=True)
                outcome = vendor.perform(effect)
            except AccordError as exc:
                if not exc.retryable:
                    self._ledger.fail(effect.key, str(exc))
                    raise EffectFailed(effect, str(exc), retryable=False, attempts=attempt) from exc
                if attempt >= policy.maximum_attempts:
                    reason = f"gave up after {attempt} attempts: {exc}"
                    self._ledger.fail(effect.key, reason)
                    raise EffectFailed(effect, reason, retryable=True, attempts=attempt) from exc
                self._sleep(policy.delay(attempt, exc.retry_after))
                look_first = True  # a lost response may have been applied: look first
                continue
            self._ledger.complete(effect.key, outcome)
            return outcome


class MemoryLedger:
    """An in-memory :class:`Ledger`, for tests and rehearsal; not durable."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}

    def get(self, key: str) -> LedgerEntry | None:
        return self.entries.get(key)

    def intend(self, effect: Effect, digest: str) -> None:
        self.entries.setdefault(effect.key, LedgerEntry(effect.key, "intent", digest))

    def attempt(self, key: str) -> None:
        entry = self.entries[key]
        self.entries[key] = LedgerEntry(
            key,
            entry.status,
            entry.request_digest,
            entry.external_id,
            entry.result,
            entry.attempts + 1,
            entry.error,
        )

    def complete(self, key: str, outcome: EffectOutcome) -> None:
        entry = self.entries[key]
        self.entries[key] = LedgerEntry(
            key,
            "done",
            entry.request_digest,
            outcome.external_id,
            dict(outcome.result),
            entry.attempts,
            None,
        )

    def fail(self, key: str, error: str) -> None:
        entry = self.entries[key]
        self.entries[key] = LedgerEntry(
            key,
            "failed",
            entry.request_digest,
            entry.external_id,
            entry.result,
            entry.attempts,
            error,
        )
