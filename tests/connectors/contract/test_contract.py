"""The contract every connector keeps, run against each (see ``conftest.py`` for the adapters).

Reads miss nothing and repeat nothing across pages, even when many records
share the cursor's stamp; a write sent twice makes one record; a write whose
response is lost is recovered by the effect executor into exactly one record;
errors say whether a retry helps; webhooks are verified or plainly not
supported; and the quota governor keeps calls inside the budget.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from accord.connectors.base import (
    Capability,
    Connector,
    ConnectorVendor,
    NotSupported,
    WriteRequest,
)
from accord.connectors.governor import MemoryGovernor, QuotaPolicy
from accord.errors import AccordError, InvalidInput, TransientError
from accord.runtime.effects import Effect, EffectExecutor, MemoryLedger
from accord.runtime.retry import RetryPolicy
from tests.connectors.contract.conftest import Adapter, Clock


def effect_of(adapter: Adapter, request: WriteRequest) -> Effect:
    body: dict[str, object] = {
        "object": request.object,
        "operation": request.operation,
        "data": dict(request.data),
    }
    if request.external_id is not None:
        body["external_id"] = request.external_id
    return Effect(
        adapter.name, f"{request.operation}_{request.object}", request.idempotency_key, body
    )


def test_incremental_read_across_pages_misses_nothing_that_shares_the_cursor_value(
    adapter: Adapter,
) -> None:
    connector = adapter.make()
    start = adapter.start_cursor(connector)
    seeded = adapter.seed_shared_stamp(7)
    sent_before = len(adapter.wire.sent)

    first, cursor = connector.read_changes(adapter.read_object, start)

    ids = [record.id for record in first]
    assert seeded <= set(ids)
    assert len(ids) == len(set(ids))
    assert len({record.modified for record in first if record.id in seeded}) == 1
    assert len(adapter.wire.sent) - sent_before >= 3  # seven records came over several pages

    more = adapter.seed_shared_stamp(3)
    second, cursor = connector.read_changes(adapter.read_object, cursor)
    assert {record.id for record in second} == more
    third, unchanged = connector.read_changes(adapter.read_object, cursor)
    assert third == [] and unchanged == cursor


def test_the_same_write_sent_twice_makes_one_record(adapter: Adapter) -> None:
    connector = adapter.make()
    request = adapter.write_request("twice")

    first = connector.write(request)
    second = connector.write(request)

    assert first.external_id == second.external_id
    assert adapter.count_written(connector, request) == 1


def test_a_lost_response_is_recovered_into_exactly_one_record(adapter: Adapter) -> None:
    connector = adapter.make()
    request = adapter.write_request("lost")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        adapter.lose_responses(False)

    executor = EffectExecutor(
        MemoryLedger(),
        {adapter.name: ConnectorVendor(connector)},
        RetryPolicy(initial_interval=0.0, maximum_attempts=5),
        sleep,
    )
    adapter.lose_responses(True)
    outcome = executor.execute(effect_of(adapter, request))

    assert adapter.wire.errors >= 1 and len(waits) == 1  # the response was lost once
    assert outcome.external_id is not None
    assert adapter.count_written(connector, request) == 1


def test_errors_say_whether_a_retry_helps(adapter: Adapter) -> None:
    connector = adapter.make()

    adapter.fail_with("throttle", retry_after=3)
    with pytest.raises(TransientError) as throttled:
        adapter.probe(connector)
    assert throttled.value.retryable and throttled.value.retry_after == 3.0
    assert "429" in str(throttled.value)

    adapter.fail_with("error")
    with pytest.raises(TransientError) as failing:
        adapter.probe(connector)
    assert failing.value.retryable and "50" in str(failing.value)

    adapter.fail_with(None)
    with pytest.raises(AccordError) as refused:
        connector.write(adapter.invalid_write())
    assert isinstance(refused.value, InvalidInput) and not refused.value.retryable


def test_webhooks_are_verified_or_plainly_not_supported(adapter: Adapter) -> None:
    connector = adapter.make()
    now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    if Capability.WEBHOOKS not in connector.capabilities:
        with pytest.raises(NotSupported):
            connector.verify_webhook({}, b"{}", now)
        return
    headers, body, event_id = adapter.signed_delivery(now)
    assert [event.event_id for event in connector.verify_webhook(headers, body, now)] == [event_id]
    with pytest.raises(InvalidInput):
        connector.verify_webhook(headers, body.replace(b"cus_1", b"cus_2"), now)
    with pytest.raises(InvalidInput):
        connector.verify_webhook({}, body, now)


def test_the_governor_keeps_calls_inside_a_rolling_window(adapter: Adapter) -> None:
    now = [1_700_000_000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    governor = MemoryGovernor(
        {adapter.name: QuotaPolicy(per_second=3)}, clock=lambda: now[0], sleep=sleep
    )
    connector = adapter.make(governor=governor)
    adapter.start_cursor(connector)  # any warm-up reads happen before the count
    adapter.wire.clock = lambda: now[0]
    before = len(adapter.wire.sent)

    for _ in range(4):
        adapter.probe(connector)

    stamps = [stamp for stamp, _, _ in adapter.wire.sent[before:]]
    assert len(stamps) >= 4
    for index, stamp in enumerate(stamps):
        assert sum(1 for other in stamps[index:] if other < stamp + 1.0) <= 3
    assert now[0] - 1_700_000_000.0 >= (len(stamps) - 3) / 3 - 0.2  # it waited, not refused


def test_the_governor_never_lets_more_than_the_slots_be_in_flight(
    adapter: Adapter, clock: Clock
) -> None:
    governor = MemoryGovernor({adapter.name: QuotaPolicy(concurrency=2)})
    connectors: list[Connector] = [adapter.make(governor=governor) for _ in range(5)]
    for connector in connectors:
        adapter.start_cursor(connector)
    adapter.wire.delay = 0.05
    adapter.wire.peak = 0
    failures: list[BaseException] = []

    def read(connector: Connector) -> None:
        try:
            adapter.probe(connector)
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=read, args=(c,)) for c in connectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert adapter.wire.peak == 2
