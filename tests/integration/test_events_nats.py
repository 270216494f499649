"""The event stream contract against real NATS JetStream (and the in-process fake).

Each JetStream test gets its own stream and subject prefix, deleted afterwards,
so tests never see each other's events or the production ``ACCORD_EVENTS``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import nats
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from accord.errors import InvalidInput, TransientError
from accord.events import (
    CLOUDEVENTS_CONTENT_TYPE,
    CanonicalChange,
    EventStream,
    JetStreamStream,
    MemoryStream,
    Published,
    from_envelope,
    replay_to_lines,
)

T = TypeVar("T")
TOTAL = 1000
FIRST_BATCH = 600  # published before the time boundary; the rest after it


def change(n: int) -> CanonicalChange:
    return CanonicalChange.create(
        entity_type="time_entry" if n % 3 else "invoice",
        entity_id=f"rec-{n:04d}",
        version=1 + n % 4,
        system="tryton" if n % 2 else "salesforce",
        changed_fields=("hours", "status"),
        data={"hours": str(n % 8), "status": "approved", "n": n},
        trace_id=f"trace-{n // 10}",
    )


def with_nats(url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(jetstream_context)`` on a fresh connection: the test's own view."""

    async def main() -> T:
        nc = await nats.connect(url)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


async def _delete(js: Any, name: str) -> None:
    try:
        await js.delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass


@dataclass
class Target:
    stream: EventStream
    nats_url: str | None = None
    stream_name: str = ""
    subject_prefix: str = ""

    def reopen(self) -> JetStreamStream:
        assert self.nats_url is not None
        return JetStreamStream(
            self.nats_url, stream_name=self.stream_name, subject_prefix=self.subject_prefix
        )


@pytest.fixture
def jetstream(nats_url: str) -> Iterator[Target]:
    tag = uuid.uuid4().hex[:12]
    name, prefix = f"ACCORD_TEST_{tag.upper()}", f"accordtest.{tag}"
    stream = JetStreamStream(nats_url, instance="ci", stream_name=name, subject_prefix=prefix)
    try:
        yield Target(stream, nats_url, name, prefix)
    finally:
        stream.close()
        with_nats(nats_url, lambda js: _delete(js, name))


@pytest.fixture(params=["jetstream", "memory"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Every implementation of the port must pass the same contract."""
    if request.param == "memory":
        with MemoryStream(instance="ci") as stream:
            yield Target(stream)
    else:
        yield request.getfixturevalue("jetstream")


@dataclass
class Published1000:
    changes: list[CanonicalChange]
    boundary: datetime
    """A time after the first FIRST_BATCH events were stored and before the rest."""


def publish_thousand(stream: EventStream) -> Published1000:
    changes = [change(n) for n in range(TOTAL)]
    first = stream.publish_many(changes[:FIRST_BATCH])
    time.sleep(0.05)
    boundary = datetime.now(UTC)
    time.sleep(0.05)
    rest = [stream.publish(c) for c in changes[FIRST_BATCH : FIRST_BATCH + 10]]
    rest += stream.publish_many(changes[FIRST_BATCH + 10 :])
    assert first + rest == [Published(seq=n, duplicate=False) for n in range(1, TOTAL + 1)]
    return Published1000(changes, boundary)


def test_republishing_hundred_ids_leaves_exactly_thousand_events(target: Target) -> None:
    published = publish_thousand(target.stream)
    again_ids = list(range(0, TOTAL, 10))  # 100 changes from both batches, same event ids

    redelivered = target.stream.publish_many([change(n) for n in again_ids[:90]])
    redelivered += [target.stream.publish(change(n)) for n in again_ids[90:]]

    assert redelivered == [Published(seq=n + 1, duplicate=True) for n in again_ids]
    replayed = list(target.stream.replay())
    assert [seq for seq, _ in replayed] == list(range(1, TOTAL + 1))
    assert [c for _, c in replayed] == published.changes
    if target.nats_url is not None:
        info = with_nats(target.nats_url, lambda js: js.stream_info(target.stream_name))
        assert info.state.messages == TOTAL
        assert info.config.duplicate_window == 120


def test_replay_from_a_sequence_gives_exactly_the_suffix_in_order(target: Target) -> None:
    published = publish_thousand(target.stream)

    suffix = list(target.stream.replay(since_seq=901))

    assert [seq for seq, _ in suffix] == list(range(901, TOTAL + 1))
    assert [c for _, c in suffix] == published.changes[900:]
    assert [seq for seq, _ in target.stream.replay(since_seq=1, limit=300)] == list(range(1, 301))
    assert [seq for seq, _ in target.stream.replay(since_seq=TOTAL)] == [TOTAL]
    assert list(target.stream.replay(since_seq=TOTAL + 1)) == []


def test_replay_from_a_time_gives_exactly_the_events_stored_after_it(target: Target) -> None:
    published = publish_thousand(target.stream)

    suffix = list(target.stream.replay(since_time=published.boundary))

    assert [seq for seq, _ in suffix] == list(range(FIRST_BATCH + 1, TOTAL + 1))
    assert [c for _, c in suffix] == published.changes[FIRST_BATCH:]
    limited = target.stream.replay(since_time=published.boundary, limit=5)
    assert [seq for seq, _ in limited] == list(range(FIRST_BATCH + 1, FIRST_BATCH + 6))
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert list(target.stream.replay(since_time=later)) == []


def test_replay_stops_at_the_last_event_that_existed_when_it_began(target: Target) -> None:
    publish_thousand(target.stream)
    replay = target.stream.replay(since_seq=995)
    first = next(replay)

    target.stream.publish_many([change(n) for n in range(TOTAL, TOTAL + 20)])

    assert [first[0]] + [seq for seq, _ in replay] == list(range(995, TOTAL + 1))


def test_abandoned_replay_leaves_no_consumer_behind(jetstream: Target) -> None:
    publish_thousand(jetstream.stream)
    replay = jetstream.stream.replay()
    next(replay)
    replay.close()  # what a CLI does when its reader goes away

    assert jetstream.nats_url is not None
    info = with_nats(jetstream.nats_url, lambda js: js.stream_info(jetstream.stream_name))
    assert info.state.consumer_count == 0


def test_reader_sees_cloudevent_with_msg_id_header(jetstream: Target) -> None:
    published = publish_thousand(jetstream.stream)
    assert jetstream.nats_url is not None

    raw = with_nats(jetstream.nats_url, lambda js: js.get_msg(jetstream.stream_name, 3))

    original = published.changes[2]
    assert raw.headers["Nats-Msg-Id"] == original.event_id
    assert raw.headers["Content-Type"] == CLOUDEVENTS_CONTENT_TYPE
    assert raw.subject == f"{jetstream.subject_prefix}.{original.entity_type}"
    event = json.loads(raw.data)
    assert event["specversion"] == "1.0"
    assert event["id"] == original.event_id
    assert event["source"] == "accord://ci"
    assert event["type"] == f"accord.{original.entity_type}.changed"
    assert event["subject"] == f"{original.entity_type}/{original.entity_id}"
    assert event["datacontenttype"] == "application/json"
    assert event["traceid"] == original.trace_id
    assert datetime.fromisoformat(event["time"]) == original.time
    assert event["data"]["record"] == dict(original.data)
    assert from_envelope(event) == original

    lines = [json.loads(line) for line in replay_to_lines(jetstream.stream, "998")]
    assert [line["seq"] for line in lines] == [998, 999, 1000]
    assert [line["event"]["id"] for line in lines] == [c.event_id for c in published.changes[997:]]
    assert lines[0]["event"]["source"] == "accord://ci"


def test_reconnecting_to_an_existing_stream_keeps_its_events_and_dedupe(
    jetstream: Target,
) -> None:
    published = publish_thousand(jetstream.stream)

    with jetstream.reopen() as again:
        assert again.publish(published.changes[0]) == Published(seq=1, duplicate=True)
        assert sum(1 for _ in again.replay(since_seq=990)) == 11


def test_publish_to_a_vanished_stream_is_a_transient_error(jetstream: Target) -> None:
    jetstream.stream.publish(change(1))
    assert jetstream.nats_url is not None
    with_nats(jetstream.nats_url, lambda js: _delete(js, jetstream.stream_name))

    with pytest.raises(TransientError) as caught:
        jetstream.stream.publish(change(2))
    assert caught.value.retryable
    with pytest.raises(TransientError):
        jetstream.stream.publish_many([change(3), change(4)])


def test_closed_stream_refuses_work_with_a_transient_error(jetstream: Target) -> None:
    jetstream.stream.close()
    jetstream.stream.close()  # idempotent

    with pytest.raises(TransientError):
        jetstream.stream.publish(change(1))


def test_connecting_to_an_operator_made_stream_keeps_its_retention(nats_url: str) -> None:
    tag = uuid.uuid4().hex[:12]
    name, prefix = f"ACCORD_TEST_{tag.upper()}", f"accordtest.{tag}"

    async def create(js: Any) -> None:
        await js.add_stream(
            StreamConfig(name=name, subjects=[f"{prefix}.>"], max_age=3600, duplicate_window=10)
        )

    with_nats(nats_url, create)
    try:
        with JetStreamStream(nats_url, stream_name=name, subject_prefix=prefix) as stream:
            stream.publish(change(1))
        info = with_nats(nats_url, lambda js: js.stream_info(name))
        assert info.config.max_age == 3600
        assert info.config.duplicate_window == 120
        assert info.state.messages == 1
    finally:
        with_nats(nats_url, lambda js: _delete(js, name))


def test_subjects_taken_by_another_stream_are_refused_naming_the_stream(
    jetstream: Target,
) -> None:
    assert jetstream.nats_url is not None
    with pytest.raises(InvalidInput) as caught:
        JetStreamStream(
            jetstream.nats_url,
            stream_name=f"{jetstream.stream_name}_OTHER",
            subject_prefix=jetstream.subject_prefix,
        )
    assert caught.value.field == "stream_name"
