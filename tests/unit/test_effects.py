"""Exactly-once effects over real HTTP against a stand-in that injects faults."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.runtime.effects import (
    Effect,
    EffectExecutor,
    EffectFailed,
    MemoryLedger,
    effect_key,
    ordered_effect_key,
    request_digest,
)
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.retry import RetryPolicy
from accord.sandbox.recorder import Faults, RecorderServer

_OPEN: list[IdempotentHttpVendor] = []


@pytest.fixture
def server() -> Iterator[RecorderServer]:
    with RecorderServer(seed=7) as srv:
        yield srv
        while _OPEN:
            _OPEN.pop().close()


def effect(i: int, body: str = "x") -> Effect:
    return Effect(
        "erp",
        "create_customer",
        effect_key("erp", "create_customer", f"acc{i}"),
        {"name": f"customer {i}", "body": body},
    )


def executor(server: RecorderServer, ledger: MemoryLedger, **policy: float) -> EffectExecutor:
    vendor = IdempotentHttpVendor(server.url, timeout=2)
    _OPEN.append(vendor)
    retry = RetryPolicy(initial_interval=0, maximum_attempts=int(policy.get("attempts", 30)))
    return EffectExecutor(ledger, {"erp": vendor}, retry, sleep=lambda _s: None)


def test_effect_key_is_derived_from_what_it_is_about() -> None:
    assert effect_key("erp", "create", "a1") == effect_key("erp", "create", "a1")
    assert effect_key("erp", "create", "a1") != effect_key("erp", "create", "a2")
    assert effect_key("erp", "create", "a", "b") != effect_key("erp", "create", "ab")


@given(
    orders=st.lists(st.integers(min_value=0, max_value=16**12 - 1), min_size=2, max_size=20),
    ids=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3),
)
def test_ordered_effect_keys_sort_by_their_order_and_stay_derived(
    orders: list[int], ids: list[str]
) -> None:
    keys = [ordered_effect_key(order, "erp", "upsert", *ids) for order in orders]
    # the same form as any effect key, and the same key for the same inputs
    assert all(len(key) == len(effect_key("erp", "upsert", *ids)) for key in keys)
    assert keys == [ordered_effect_key(order, "erp", "upsert", *ids) for order in orders]
    # plain string order is the order given
    by_key = sorted(zip(keys, orders, strict=True))
    assert [order for _, order in by_key] == sorted(orders)


def test_ordered_effect_keys_differ_by_what_they_are_about() -> None:
    assert ordered_effect_key(7, "erp", "upsert", "a", "1") != ordered_effect_key(
        7, "erp", "upsert", "a", "2"
    )
    assert ordered_effect_key(7, "erp", "upsert", "a") != ordered_effect_key(
        7, "crm", "upsert", "a"
    )
    with pytest.raises(ValueError, match="does not fit"):
        ordered_effect_key(16**12, "erp", "upsert", "a")


def test_every_effect_lands_exactly_once_despite_errors_throttling_and_lost_responses(
    server: RecorderServer,
) -> None:
    server.faults = Faults(
        error_rate=0.2, throttle_rate=0.1, retry_after=0.0, lost_response_rate=0.3
    )
    ledger = MemoryLedger()
    run = executor(server, ledger)
    for i in range(150):
        run.execute(effect(i))
    for i in range(150):  # a second pass is answered from the ledger
        assert run.execute(effect(i)).replayed
    stats = server.stats()
    assert stats["objects"] == 150
    assert stats["requests"]["write"] > 150  # faults really happened
    assert all(entry.status == "done" for entry in ledger.entries.values())


def test_intent_left_by_a_crash_is_resolved_by_looking_the_object_up(
    server: RecorderServer,
) -> None:
    first = MemoryLedger()
    executor(server, first).execute(effect(1))
    # a worker that crashed after the vendor applied the call but before recording it
    crashed = MemoryLedger()
    crashed.intend(effect(1), request_digest(effect(1).request))
    crashed.attempt(effect(1).key)  # the attempt is recorded before the call goes out
    outcome = executor(server, crashed).execute(effect(1))
    assert outcome.replayed and server.stats()["objects"] == 1
    assert server.stats()["requests"].get("lookup", 0) >= 1


def test_an_intent_never_attempted_is_sent_without_a_look_up(server: RecorderServer) -> None:
    ledger = MemoryLedger()
    ledger.intend(effect(1), request_digest(effect(1).request))
    executor(server, ledger).execute(effect(1))
    assert server.stats()["requests"].get("lookup", 0) == 0
    assert server.stats()["objects"] == 1


def test_vendor_rejection_is_not_retried_and_is_recorded(server: RecorderServer) -> None:
    ledger = MemoryLedger()
    run = executor(server, ledger)
    run.execute(effect(1, body="a"))
    # the vendor refuses the same key with another body (409): not retryable
    other = Effect("erp", "create_customer", effect(1).key, {"name": "customer 1", "body": "b"})
    fresh = MemoryLedger()
    with pytest.raises(EffectFailed) as caught:
        executor(server, fresh).execute(other)
    assert caught.value.retryable is False and caught.value.attempts == 1
    assert fresh.entries[other.key].status == "failed"


def test_reusing_a_key_with_another_request_is_refused_before_any_call(
    server: RecorderServer,
) -> None:
    ledger = MemoryLedger()
    run = executor(server, ledger)
    run.execute(effect(1, body="a"))
    writes = server.stats()["requests"]["write"]
    with pytest.raises(InvalidInput, match="another request"):
        run.execute(Effect("erp", "create_customer", effect(1).key, {"other": True}))
    assert server.stats()["requests"]["write"] == writes


def test_exhausted_retries_give_a_retryable_failure(server: RecorderServer) -> None:
    server.faults = Faults(error_rate=1.0)
    ledger = MemoryLedger()
    with pytest.raises(EffectFailed) as caught:
        executor(server, ledger, attempts=3).execute(effect(1))
    assert caught.value.retryable and caught.value.attempts == 3
    assert ledger.entries[effect(1).key].status == "failed"
    server.faults = Faults()  # the vendor recovers: the same effect now lands once
    executor(server, ledger).execute(effect(1))
    assert server.stats()["objects"] == 1


def test_retry_after_is_honoured() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={})
        return httpx.Response(200, json={"id": "obj_1"})

    slept: list[float] = []
    vendor = IdempotentHttpVendor("http://vendor.test", transport=httpx.MockTransport(handler))
    run = EffectExecutor(
        MemoryLedger(), {"erp": vendor}, RetryPolicy(initial_interval=0.01), sleep=slept.append
    )
    assert run.execute(effect(1)).external_id == "obj_1"
    assert slept == [7.0]
    vendor.close()


def test_retry_policy_backs_off_exponentially_up_to_its_maximum() -> None:
    policy = RetryPolicy(initial_interval=1, backoff_coefficient=2, maximum_interval=5)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert policy.delay(1, retry_after=30) == 30
    with pytest.raises(ValueError):
        RetryPolicy(maximum_attempts=0)
