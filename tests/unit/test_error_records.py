"""Errors survive being recorded and read back (a workflow engine pickles a failed step's error)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from accord.connectors.base import NotSupported
from accord.connectors.governor import CircuitOpen
from accord.errors import AccordError, InvalidInput, InvalidTransition, TransientError
from accord.runtime.effects import Effect, EffectFailed
from accord.store.repo import IdempotencyConflict, StaleVersion, XrefConflict, XrefLink

LINK = XrefLink(
    "account", "acc-1", "netsuite", "customer", "102", None, datetime(2026, 3, 1, tzinfo=UTC), None
)
ERRORS: list[AccordError] = [
    InvalidInput("write-off 9 outside 1..5", record="inv-1", field="amount"),
    TransientError("503 from the vendor", retry_after=2.5),
    InvalidTransition("invoice", "draft", "paid"),
    StaleVersion("account", "acc-1", expected=2, found=3),
    IdempotencyConflict("k-1", stored="a" * 64, given="b" * 64),
    XrefConflict("netsuite customer 102 is linked to acc-2", existing=LINK),
    CircuitOpen("stripe", "stripe is down", retry_after=3.0),
    NotSupported("harvest has no webhooks"),
    EffectFailed(
        Effect("erp", "upsert_customer", "k-2", {}), "refused", retryable=False, attempts=3
    ),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_reads_back_as_the_same_error(error: AccordError) -> None:
    back = pickle.loads(pickle.dumps(error))

    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__
    assert back.retryable == error.retryable and back.retry_after == error.retry_after
