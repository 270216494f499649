"""The canonical change envelope and the in-process event stream."""

from __future__ import annotations

import copy
import gc
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from accord.errors import InvalidInput, TransientError
from accord.events import (
    CanonicalChange,
    JetStreamStream,
    MemoryStream,
    Published,
    change_event_id,
    envelope_schema,
    from_envelope,
    from_json,
    open_stream,
    replay_to_lines,
    to_envelope,
    to_json,
)

T0 = datetime(2025, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def make_change(n: int = 1, *, version: int = 1, **overrides: Any) -> CanonicalChange:
    fields: dict[str, Any] = {
        "entity_type": "invoice",
        "entity_id": f"inv-{n}",
        "version": version,
        "system": "xero",
        "changed_fields": ("status", "amount_due"),
        "data": {"status": "paid", "amount_due": {"minor": 0, "currency": "EUR"}},
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "time": T0,
    }
    fields.update(overrides)
    return CanonicalChange.create(**fields)


class FakeClock:
    """A clock the test moves by hand, so windows and times need no sleeping."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


# -- envelope -----------------------------------------------------------------


def test_envelope_is_a_cloudevent_with_accord_attributes() -> None:
    change = make_change(7, version=3)

    envelope = to_envelope(change, instance="acme")

    assert envelope["specversion"] == "1.0"
    assert envelope["id"] == change.event_id
    assert envelope["source"] == "accord://acme"
    assert envelope["type"] == "accord.invoice.changed"
    assert envelope["subject"] == "invoice/inv-7"
    assert envelope["time"] == "2025-03-01T09:30:00.123456Z"
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["traceid"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert envelope["data"] == {
        "entity_type": "invoice",
        "entity_id": "inv-7",
        "version": 3,
        "system": "xero",
        "changed_fields": ["status", "amount_due"],
        "record": {"status": "paid", "amount_due": {"minor": 0, "currency": "EUR"}},
    }


def test_envelope_round_trip_gives_back_the_same_change() -> None:
    change = make_change(time=datetime(2025, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1))))

    assert from_json(to_json(change)) == change
    assert from_envelope(to_envelope(change)) == change
    assert from_json(to_json(change)).time == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def test_event_id_is_derived_from_record_and_version() -> None:
    assert make_change(1).event_id == make_change(1).event_id
    assert make_change(1).event_id == change_event_id("invoice", "inv-1", 1)
    assert make_change(1, version=2).event_id != make_change(1).event_id
    assert make_change(2).event_id != make_change(1).event_id


def test_change_is_immutable_and_hashable() -> None:
    change = make_change()
    with pytest.raises(AttributeError):
        change.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        change.data["status"] = "void"  # type: ignore[index]
    assert hash(change) == hash(make_change())


def test_naive_time_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        make_change(time=datetime(2025, 3, 1, 9, 30))
    assert caught.value.field == "time"


def test_shipped_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(dict(envelope_schema()))


def broken(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    envelope = copy.deepcopy(to_envelope(make_change()))
    edit(envelope)
    return envelope


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing subject", lambda e: e.pop("subject"), "subject"),
    ("missing traceid", lambda e: e.pop("traceid"), "traceid"),
    ("old specversion", lambda e: e.update(specversion="0.3"), "specversion"),
    ("foreign source", lambda e: e.update(source="https://example.com"), "source"),
    ("time without offset", lambda e: e.update(time="2025-03-01T09:30:00"), "time"),
    ("time that is not a time", lambda e: e.update(time="yesterday"), "time"),
    ("xml data", lambda e: e.update(datacontenttype="application/xml"), "datacontenttype"),
    ("version zero", lambda e: e["data"].update(version=0), "data.version"),
    ("version as text", lambda e: e["data"].update(version="2"), "data.version"),
    ("missing entity id", lambda e: e["data"].pop("entity_id"), "data.entity_id"),
    ("bad entity type", lambda e: e["data"].update(entity_type="Invoice"), "data.entity_type"),
    ("record not an object", lambda e: e["data"].update(record=[1]), "data.record"),
    (
        "changed field repeated",
        lambda e: e["data"].update(changed_fields=["a", "a"]),
        "data.changed_fields",
    ),
    ("unknown data field", lambda e: e["data"].update(colour="red"), "data.colour"),
    ("type of another entity", lambda e: e.update(type="accord.payment.changed"), "type"),
    ("subject of another record", lambda e: e.update(subject="invoice/inv-2"), "subject"),
]


@pytest.mark.parametrize(
    ("edit", "field"),
    [(edit, field) for _, edit, field in MALFORMED],
    ids=[m[0] for m in MALFORMED],
)
def test_malformed_envelope_is_refused_naming_the_field(
    edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_envelope(broken(edit))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"event.{field}: ")


def test_extension_attributes_from_other_producers_are_tolerated() -> None:
    envelope = broken(lambda e: e.update(partitionkey="inv-1"))
    assert from_envelope(envelope) == make_change()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"null"])
def test_envelope_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        from_json(body)


def test_building_validates_against_the_schema_too() -> None:
    with pytest.raises(InvalidInput) as caught:
        to_json(make_change(version=0))
    assert caught.value.field == "data.version"
    with pytest.raises(InvalidInput) as caught:
        to_json(make_change(entity_type="Billable Item"))
    assert caught.value.field == "data.entity_type"


def test_data_that_json_cannot_carry_is_refused_when_building() -> None:
    with pytest.raises(InvalidInput) as caught:
        to_json(make_change(data={"amount": object()}))
    assert caught.value.field == "data.record"


def test_bad_instance_name_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        to_json(make_change(), instance="Acme Corp")
    assert caught.value.field == "instance"
    with pytest.raises(InvalidInput):
        MemoryStream(instance="Acme Corp")


# -- MemoryStream ---------------------------------------------------------------


def test_sequences_start_at_one_and_replay_keeps_order() -> None:
    stream = MemoryStream()
    changes = [make_change(n) for n in range(1, 11)]

    published = stream.publish_many(changes)

    assert published == [Published(seq=n, duplicate=False) for n in range(1, 11)]
    assert list(stream.replay()) == list(enumerate(changes, start=1))


def test_replay_by_sequence_gives_the_suffix_from_that_sequence() -> None:
    stream = MemoryStream()
    changes = [make_change(n) for n in range(1, 11)]
    stream.publish_many(changes)

    assert [seq for seq, _ in stream.replay(since_seq=4)] == list(range(4, 11))
    assert [c for _, c in stream.replay(since_seq=4)] == changes[3:]
    assert [seq for seq, _ in stream.replay(since_seq=4, limit=3)] == [4, 5, 6]
    assert list(stream.replay(since_seq=11)) == []
    assert list(stream.replay(limit=0)) == []


def test_the_in_process_stream_keeps_only_its_newest_events() -> None:
    stream = MemoryStream(max_events=3)
    changes = [make_change(n) for n in range(1, 6)]

    published = stream.publish_many(changes)

    assert [p.seq for p in published] == [1, 2, 3, 4, 5]  # sequences go on counting
    assert [seq for seq, _ in stream.replay()] == [3, 4, 5]
    assert [c for _, c in stream.replay()] == changes[2:]
    assert [seq for seq, _ in stream.replay(since_seq=1)] == [3, 4, 5]  # from the oldest kept
    assert [seq for seq, _ in stream.replay(since_seq=4)] == [4, 5]
    assert list(stream.replay(since_seq=6)) == []
    assert stream.publish(make_change(6)).seq == 6
    # a change no longer kept is still recognised as a duplicate within the window
    again = stream.publish(make_change(1))
    assert (again.seq, again.duplicate) == (1, True)
    assert [seq for seq, _ in stream.replay()] == [4, 5, 6]
    with pytest.raises(InvalidInput, match="at least 1"):
        MemoryStream(max_events=0)


def test_kept_changes_leave_nothing_for_the_garbage_collector_to_walk() -> None:
    """A busy hub keeps the newest 100,000 changes: kept as objects, the cyclic
    collector walked them again and again (pauses of tens of milliseconds)."""
    stream = MemoryStream()
    nested = make_change(0, data={"lines": [{"amount": 1}], "terms": {"days": 30}})
    changes = [make_change(n) for n in range(1, 501)] + [nested]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        before = len(gc.get_objects())
        stream.publish_many(changes)
        after = len(gc.get_objects())
    finally:
        if was_enabled:
            gc.enable()

    assert after - before < 50  # the stream's own few containers, not one per change
    replayed = [c for _, c in stream.replay()]
    assert replayed == changes  # read back whole, nested data and field order included
    assert replayed[-1].data["lines"] == [{"amount": 1}]


def test_replay_by_time_starts_at_first_event_stored_at_or_after_it() -> None:
    clock = FakeClock()
    stream = MemoryStream(clock=clock)
    stream.publish_many([make_change(n) for n in range(1, 4)])
    boundary = clock.advance(seconds=5)
    stream.publish_many([make_change(n) for n in range(4, 7)])
    clock.advance(seconds=5)
    stream.publish(make_change(7))

    assert [seq for seq, _ in stream.replay(since_time=boundary)] == [4, 5, 6, 7]
    assert [seq for seq, _ in stream.replay(since_time=boundary + timedelta(seconds=1))] == [7]
    assert list(stream.replay(since_time=clock.advance(seconds=1))) == []
    local = boundary.astimezone(timezone(timedelta(hours=-5)))
    assert [seq for seq, _ in stream.replay(since_time=local, limit=2)] == [4, 5]


def test_republished_event_id_within_the_window_is_stored_once() -> None:
    clock = FakeClock()
    stream = MemoryStream(clock=clock)
    changes = [make_change(n) for n in range(1, 6)]
    stream.publish_many(changes)
    clock.advance(seconds=119)

    again = stream.publish_many(changes[1:3])

    assert again == [Published(seq=2, duplicate=True), Published(seq=3, duplicate=True)]
    assert [seq for seq, _ in stream.replay()] == [1, 2, 3, 4, 5]


def test_event_id_is_stored_again_once_the_window_has_passed() -> None:
    clock = FakeClock()
    stream = MemoryStream(clock=clock, duplicate_window=timedelta(minutes=2))
    stream.publish(make_change(1))
    clock.advance(seconds=60)
    assert stream.publish(make_change(1)).duplicate  # does not extend the window
    clock.advance(seconds=61)

    assert stream.publish(make_change(1)) == Published(seq=2, duplicate=False)


def test_replay_arguments_are_checked_when_called() -> None:
    stream = MemoryStream()
    with pytest.raises(InvalidInput):
        stream.replay(since_seq=1, since_time=T0)
    with pytest.raises(InvalidInput) as caught:
        stream.replay(since_seq=0)
    assert caught.value.field == "since_seq"
    with pytest.raises(InvalidInput) as caught:
        stream.replay(since_time=datetime(2025, 3, 1))
    assert caught.value.field == "since_time"
    with pytest.raises(InvalidInput) as caught:
        stream.replay(limit=-1)
    assert caught.value.field == "limit"


def test_unencodable_change_is_refused_before_anything_is_stored() -> None:
    stream = MemoryStream()
    with pytest.raises(InvalidInput):
        stream.publish(make_change(data={"rate": object()}))
    assert list(stream.replay()) == []


# -- replay_to_lines and open_stream --------------------------------------------


def test_replay_lines_by_sequence_are_json_with_seq_and_cloudevent() -> None:
    stream = MemoryStream(instance="acme")
    changes = [make_change(n) for n in range(1, 5)]
    stream.publish_many(changes)

    lines = list(replay_to_lines(stream, "3"))

    assert [json.loads(line)["seq"] for line in lines] == [3, 4]
    assert all("\n" not in line for line in lines)
    event = json.loads(lines[0])["event"]
    assert event == to_envelope(changes[2], instance="acme")
    assert from_envelope(event) == changes[2]
    assert len(list(replay_to_lines(stream, "0"))) == 4


def test_replay_lines_by_iso_time_accept_offsets_and_bare_utc() -> None:
    clock = FakeClock()
    stream = MemoryStream(clock=clock)
    stream.publish(make_change(1))
    clock.advance(minutes=10)  # stored at 09:40:00.123456 UTC
    stream.publish(make_change(2))

    for since in ("2025-03-01T09:35:00Z", "2025-03-01T10:35:00+01:00", "2025-03-01 09:35"):
        assert [json.loads(line)["seq"] for line in replay_to_lines(stream, since)] == [2]
    assert len(list(replay_to_lines(stream, "2025-03-01"))) == 2


@pytest.mark.parametrize("since", ["", "last tuesday", "-5", "2025-13-01"])
def test_replay_lines_refuse_a_since_that_is_neither_sequence_nor_time(since: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        replay_to_lines(MemoryStream(), since)
    assert caught.value.field == "since"


def test_without_a_nats_url_the_stream_is_in_process() -> None:
    assert isinstance(open_stream(None), MemoryStream)
    assert isinstance(open_stream(""), MemoryStream)


def test_unreachable_nats_is_a_transient_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError) as caught:
        JetStreamStream(f"nats://127.0.0.1:{port}", connect_timeout=0.5)
    assert caught.value.retryable
