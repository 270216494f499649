"""The canonical event stream: a port, an in-process fake, and NATS JetStream.

Every committed canonical change is appended to one ordered stream, so that
consumers (projections, search indexes, outside systems) can follow Accord
without polling its database, and can rebuild themselves by replaying from a
sequence number or a point in time.

Two implementations keep the same contract:

* :class:`MemoryStream` — in the process, for the embedded default and tests;
  it lives as long as the process does.
* :class:`JetStreamStream` — a NATS JetStream stream, chosen by setting
  ``ACCORD_NATS_URL``; durable and shared by every worker.

Contract (the same for both):

* sequence numbers start at 1 and grow by one per stored event;
* publishing an event id that was stored less than ``duplicate_window`` ago
  stores nothing and answers with the original sequence (``duplicate=True``);
  this is what makes at-least-once publishing from retried workflow steps safe;
* ``replay`` is inclusive (``since_seq=n`` starts at ``n``; ``since_time=t``
  starts at the first event *stored* at or after ``t`` — the stream's clock,
  not :attr:`CanonicalChange.time`), yields in sequence order, and stops at the
  last event that existed when the replay began;
* a fault that may pass (network, server, timeout) raises
  :class:`~accord.errors.TransientError`; a change that cannot be encoded raises
  :class:`~accord.errors.InvalidInput` before anything is sent.

The public API is synchronous because the workflow layer that publishes is;
:class:`JetStreamStream` keeps nats-py's asyncio client on a private event loop
in one background thread.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext

from accord.errors import AccordError, InvalidInput, TransientError
from accord.events.envelope import (
    CLOUDEVENTS_CONTENT_TYPE,
    DEFAULT_INSTANCE,
    CanonicalChange,
    from_json,
    source_for,
    to_envelope,
    to_json,
)
from accord.jsontext import compiled

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "DEFAULT_STREAM_NAME",
    "DEFAULT_SUBJECT_PREFIX",
    "EventStream",
    "JetStreamStream",
    "MemoryStream",
    "Published",
    "open_stream",
    "replay_to_lines",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: How long an event id is remembered for dedupe (JetStream's own default).
DEFAULT_DUPLICATE_WINDOW = timedelta(minutes=2)
#: Name of the JetStream stream in production.
DEFAULT_STREAM_NAME = "ACCORD_EVENTS"
#: Subjects are ``<prefix>.<entity_type>``; the stream captures ``<prefix>.>``.
DEFAULT_SUBJECT_PREFIX = "accord.events"

_STREAM_NAME_IN_USE = 10058  # JetStream API error: stream exists with another config
_PUBLISH_CHUNK = 500  # changes in flight at once in publish_many
_FETCH_BATCH = 256  # messages per pull request during replay
_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Published:
    """Where a published change landed."""

    seq: int
    """Stream sequence of the stored event (of the original, for a duplicate)."""
    duplicate: bool
    """True when the event id was already stored within the duplicate window."""


class EventStream(ABC):
    """The port: append canonical changes, replay them in order.

    Subclasses implement :meth:`publish` and :meth:`_replay`; argument checks,
    batching fallback and the context-manager protocol live here once.
    """

    def __init__(self, *, instance: str = DEFAULT_INSTANCE) -> None:
        source_for(instance)  # fail on a bad name now, not on the first publish
        #: Accord instance name; the CloudEvents source is ``accord://<instance>``.
        self.instance = instance

    @abstractmethod
    def publish(self, change: CanonicalChange) -> Published:
        """Append ``change`` unless its event id is within the duplicate window."""

    def publish_many(self, changes: Iterable[CanonicalChange]) -> list[Published]:
        """Append ``changes`` in order; one result per change, in the same order.

        Not atomic: after a :class:`TransientError` some changes may be stored.
        Publishing the same list again is safe (dedupe), which is the remedy.
        """
        return [self.publish(change) for change in changes]

    def replay(
        self,
        since_seq: int | None = None,
        since_time: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[int, CanonicalChange]]:
        """``(sequence, change)`` pairs in order, from ``since_seq`` or ``since_time``.

        With neither, replay starts at the oldest event kept. Arguments are
        checked now, not at the first ``next()``, so a bad call fails where it is made.
        """
        if since_seq is not None and since_time is not None:
            raise InvalidInput("give since_seq or since_time, not both", record="replay")
        if since_seq is not None and since_seq < 1:
            raise InvalidInput("sequences start at 1", record="replay", field="since_seq")
        if since_time is not None and since_time.utcoffset() is None:
            raise InvalidInput("must be timezone-aware", record="replay", field="since_time")
        if limit is not None and limit < 0:
            raise InvalidInput("must not be negative", record="replay", field="limit")
        if limit == 0:
            return iter(())
        when = since_time.astimezone(UTC) if since_time is not None else None
        return self._replay(since_seq, when, limit)

    @abstractmethod
    def _replay(
        self, since_seq: int | None, since_time: datetime | None, limit: int | None
    ) -> Iterator[tuple[int, CanonicalChange]]:
        """Implementation of :meth:`replay`, given checked arguments (time in UTC)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections and threads; the stream is unusable afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _plain(value: object) -> object:
    """Read-only mappings (the frozen change keeps its data in one) encode as dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: Checks that a change's data could go over the wire (built once, not per event).
_WIRE_CHECK = compiled(json.JSONEncoder(allow_nan=False, default=_plain))


#: Changes the in-process stream keeps (the newest); about 1-2 KB each.
DEFAULT_MEMORY_EVENTS = 100_000


class _Kept:
    """The changes the in-process stream keeps, a column per field.

    Each column is a deque of strings, numbers or times, none of which the
    cyclic garbage collector tracks, so keeping a change allocates nothing it
    must walk. Kept as objects (the change itself), the newest hundred thousand
    changes were walked by the collector again and again: at 5,000 changes/s, a
    pause of 20-90 ms every few seconds. ``data`` and ``changed_fields`` are
    kept as JSON text (the publish check writes the data's anyway); a change is
    built again, and its envelope validated, when it is read.
    """

    def __init__(self, limit: int | None) -> None:
        self.stored_at: deque[datetime] = deque(maxlen=limit)
        self._columns: tuple[deque[Any], ...] = tuple(deque(maxlen=limit) for _ in range(9))

    def append(self, stored_at: datetime, change: CanonicalChange, data: str) -> None:
        """Keep ``change`` (the oldest goes when the limit is reached)."""
        self.stored_at.append(stored_at)
        values = (
            change.event_id,
            change.entity_type,
            change.entity_id,
            change.version,
            change.system,
            _WIRE_CHECK(change.changed_fields),
            data,
            change.trace_id,
            change.time,
        )
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def snapshot(self) -> tuple[list[datetime], list[tuple[Any, ...]]]:
        """The store times and the rows of the kept changes, oldest first."""
        return list(self.stored_at), list(zip(*self._columns, strict=True))


def _change(row: tuple[Any, ...]) -> CanonicalChange:
    event_id, entity_type, entity_id, version, system, fields, data, trace_id, at = row
    return CanonicalChange(
        event_id=event_id,
        entity_type=entity_type,
        entity_id=entity_id,
        version=version,
        system=system,
        changed_fields=json.loads(fields),
        data=json.loads(data),
        trace_id=trace_id,
        time=at,
    )


class MemoryStream(EventStream):
    """The stream inside this process: the embedded default and the test fake.

    It refuses what JetStream could not carry, keeps each change as plain values
    (:class:`_Kept`) and encodes the CloudEvent when a change is read, so that
    replay exercises the encoder and the parser as JetStream's does.
    ``clock`` is injectable so tests can step through the duplicate window and
    replay by time without sleeping; stored times never go backwards.

    It keeps the newest ``max_events`` (``None``: all), as a JetStream stream
    with a message limit discards its oldest: a hub that runs for months keeps
    its memory flat. Sequence numbers go on counting; a replay from a sequence
    that is no longer kept starts at the oldest one kept.
    """

    def __init__(
        self,
        *,
        instance: str = DEFAULT_INSTANCE,
        duplicate_window: timedelta = DEFAULT_DUPLICATE_WINDOW,
        clock: Callable[[], datetime] = _utc_now,
        max_events: int | None = DEFAULT_MEMORY_EVENTS,
    ) -> None:
        super().__init__(instance=instance)
        if duplicate_window < timedelta(0):
            raise InvalidInput("must not be negative", field="duplicate_window")
        if max_events is not None and max_events < 1:
            raise InvalidInput("must be at least 1, or None for no limit", field="max_events")
        self._window = duplicate_window
        self._clock = clock
        self._lock = threading.Lock()
        self._kept = _Kept(max_events)
        self._last_seq = 0
        # event id → sequence, for the duplicate window: only the ids, never the
        # changes, so a busy window does not hold every change published in it
        self._seen: dict[str, int] = {}
        # when each id in the window was stored, oldest first (two deques, not
        # a deque of pairs: nothing per event for the garbage collector)
        self._expiry_at: deque[datetime] = deque()
        self._expiry_ids: deque[str] = deque()

    def publish(self, change: CanonicalChange) -> Published:
        try:  # refuse what could never be read back, as the wire would
            data = _WIRE_CHECK(change.data)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"holds a value JSON cannot carry ({exc})", record="event", field="data.record"
            ) from None
        with self._lock:
            now = self._clock().astimezone(UTC)
            stored_at = self._kept.stored_at
            if stored_at and now < stored_at[-1]:
                now = stored_at[-1]
            self._forget_before(now - self._window)
            original = self._seen.get(change.event_id)
            if original is not None:
                return Published(seq=original, duplicate=True)
            self._last_seq += 1
            seq = self._last_seq
            self._kept.append(now, change, data)  # the oldest goes when the limit is reached
            if self._window:
                self._seen[change.event_id] = seq
                self._expiry_at.append(now)
                self._expiry_ids.append(change.event_id)
            return Published(seq=seq, duplicate=False)

    def _forget_before(self, cutoff: datetime) -> None:
        # Like JetStream, the window runs from the original's store time and a
        # duplicate does not extend it.
        while self._expiry_at and self._expiry_at[0] <= cutoff:
            self._expiry_at.popleft()
            self._seen.pop(self._expiry_ids.popleft(), None)

    def _replay(
        self, since_seq: int | None, since_time: datetime | None, limit: int | None
    ) -> Iterator[tuple[int, CanonicalChange]]:
        with self._lock:
            times, rows = self._kept.snapshot()
            first = self._last_seq - len(rows) + 1  # sequence numbers are consecutive
        if since_seq is not None:
            start = max(0, since_seq - first)
        elif since_time is not None:
            start = bisect.bisect_left(times, since_time)
        else:
            start = 0
        end = len(rows) if limit is None else min(len(rows), start + limit)
        for index in range(start, end):
            yield first + index, from_json(to_json(_change(rows[index]), instance=self.instance))


@dataclass(slots=True)
class _Reader:
    """An ephemeral pull consumer reading one replay."""

    subscription: JetStreamContext.PullSubscription
    consumer: str
    last_seq: int
    next_consumer_seq: int = 1


class JetStreamStream(EventStream):
    """The stream as a NATS JetStream stream: durable, shared, replayable.

    Connecting creates the stream (``<subject_prefix>.>``, file storage, the
    duplicate window) or, when it exists, adds only what is missing (the subject
    and the window) and keeps the operator's retention and replica settings.
    Each change goes to ``<subject_prefix>.<entity_type>`` with the header
    ``Nats-Msg-Id`` = event id, so JetStream drops redeliveries within the window.

    nats-py is asyncio; this class runs its client on an event loop in one
    daemon thread and hands coroutines to it, so callers stay synchronous and
    any number of caller threads share one connection. :meth:`close` stops both;
    a call after it raises :class:`TransientError` (a restarted process can retry).
    """

    def __init__(
        self,
        url: str,
        *,
        instance: str = DEFAULT_INSTANCE,
        stream_name: str = DEFAULT_STREAM_NAME,
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        duplicate_window: timedelta = DEFAULT_DUPLICATE_WINDOW,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        super().__init__(instance=instance)
        if not _STREAM_NAME.fullmatch(stream_name):
            raise InvalidInput(f"{stream_name!r} is not a JetStream name", field="stream_name")
        if not _SUBJECT_PREFIX.fullmatch(subject_prefix):
            raise InvalidInput(f"{subject_prefix!r} is not a NATS subject", field="subject_prefix")
        if duplicate_window <= timedelta(0):
            raise InvalidInput("must be positive", field="duplicate_window")
        self.stream_name = stream_name
        self.subject_prefix = subject_prefix
        self._window = duplicate_window
        self._timeout = timeout
        self._closed = False
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"accord-events-{stream_name}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._connect(url, connect_timeout), connect_timeout + 2 * timeout)
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the background loop and wait, turning faults into AccordErrors."""
        if self._closed:
            coro.close()
            raise TransientError(f"event stream {self.stream_name} is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        limit = timeout if timeout is not None else 3 * self._timeout
        try:
            return future.result(limit)
        except AccordError:
            raise
        except TimeoutError as exc:  # nats-py's timeouts are TimeoutErrors too
            if not future.done():
                future.cancel()
                raise TransientError(f"NATS did not answer within {limit:g}s") from exc
            raise TransientError(f"NATS JetStream timed out: {exc or type(exc).__name__}") from exc
        except concurrent.futures.CancelledError as exc:
            raise TransientError(f"event stream {self.stream_name} was closed") from exc
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"NATS JetStream: {exc or type(exc).__name__}") from exc

    @property
    def _jetstream(self) -> JetStreamContext:
        if self._js is None:  # pragma: no cover - only after a failed connect
            raise TransientError("not connected to NATS")
        return self._js

    async def _connect(self, url: str, connect_timeout: float) -> None:
        async def on_error(exc: Exception) -> None:
            _log.warning("NATS connection error: %s", exc)

        try:
            # Once connected, reconnect forever (publishes meanwhile fail as
            # transient); the first connection, though, must fail fast.
            self._nc = await asyncio.wait_for(
                nats.connect(
                    url,
                    name=f"accord-{self.instance}",
                    connect_timeout=connect_timeout,
                    max_reconnect_attempts=-1,
                    error_cb=on_error,
                ),
                connect_timeout,
            )
        except TimeoutError as exc:
            raise TransientError(
                f"could not connect to NATS at {url} within {connect_timeout:g}s"
            ) from exc
        self._js = self._nc.jetstream(timeout=self._timeout)
        try:
            await self._ensure_stream()
        except nats.js.errors.BadRequestError as exc:
            # e.g. another stream already captures these subjects: an operator must act.
            raise InvalidInput(
                f"JetStream refused stream {self.stream_name!r}: {exc.description}",
                field="stream_name",
            ) from exc

    async def _ensure_stream(self) -> None:
        js = self._jetstream
        subject = f"{self.subject_prefix}.>"
        window = self._window.total_seconds()
        try:
            info = await js.stream_info(self.stream_name)
        except nats.js.errors.NotFoundError:
            config = StreamConfig(
                name=self.stream_name,
                description="Accord canonical changes (CloudEvents 1.0, structured JSON)",
                subjects=[subject],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=window,
            )
            try:
                await js.add_stream(config)
                return
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:  # not a lost creation race
                    raise
            info = await js.stream_info(self.stream_name)
        current = info.config
        subjects = list(current.subjects or [])
        if subject in subjects and current.duplicate_window == window:
            return
        if subject not in subjects:
            subjects.append(subject)
        await js.update_stream(current.evolve(subjects=subjects, duplicate_window=window))

    # -- publishing -------------------------------------------------------------

    def _headers(self, change: CanonicalChange) -> dict[str, str]:
        return {"Nats-Msg-Id": change.event_id, "Content-Type": CLOUDEVENTS_CONTENT_TYPE}

    def _subject(self, change: CanonicalChange) -> str:
        return f"{self.subject_prefix}.{change.entity_type}"

    def publish(self, change: CanonicalChange) -> Published:
        body = to_json(change, instance=self.instance)
        return self._call(self._publish(self._subject(change), body, self._headers(change)))

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> Published:
        try:
            ack = await self._jetstream.publish(
                subject, body, timeout=self._timeout, stream=self.stream_name, headers=headers
            )
        except nats.errors.MaxPayloadError as exc:
            raise InvalidInput(str(exc), record="event", field="data.record") from exc
        return Published(seq=ack.seq, duplicate=bool(ack.duplicate))

    def publish_many(self, changes: Iterable[CanonicalChange]) -> list[Published]:
        """Append ``changes`` in order with many publishes in flight at once.

        Every change is encoded before the first is sent, so a bad one refuses
        the whole batch; after a :class:`TransientError` publish the list again.
        """
        items = [
            (self._subject(c), to_json(c, instance=self.instance), self._headers(c))
            for c in changes
        ]
        results: list[Published] = []
        for start in range(0, len(items), _PUBLISH_CHUNK):
            chunk = items[start : start + _PUBLISH_CHUNK]
            results.extend(self._call(self._publish_chunk(chunk)))
        return results

    async def _publish_chunk(
        self, chunk: list[tuple[str, bytes, dict[str, str]]]
    ) -> list[Published]:
        js = self._jetstream
        pending: list[asyncio.Future[Any]] = []
        try:
            # Sent one after another on one connection, so stored in list order.
            for subject, body, headers in chunk:
                pending.append(
                    await js.publish_async(subject, body, stream=self.stream_name, headers=headers)
                )
            acks = await asyncio.wait_for(asyncio.gather(*pending), self._timeout)
        except nats.errors.MaxPayloadError as exc:
            raise InvalidInput(str(exc), record="event", field="data.record") from exc
        except (TimeoutError, nats.js.errors.Error) as exc:
            raise TransientError(f"NATS JetStream publish: {exc or type(exc).__name__}") from exc
        finally:
            for future in pending:
                if not future.done():
                    future.cancel()
        return [Published(seq=ack.seq, duplicate=bool(ack.duplicate)) for ack in acks]

    # -- replay -----------------------------------------------------------------

    def _replay(
        self, since_seq: int | None, since_time: datetime | None, limit: int | None
    ) -> Iterator[tuple[int, CanonicalChange]]:
        reader = self._call(self._open_reader(since_seq, since_time))
        if reader is None:
            return
        remaining = limit
        try:
            while remaining is None or remaining > 0:
                want = _FETCH_BATCH if remaining is None else min(_FETCH_BATCH, remaining)
                batch, finished = self._call(self._fetch(reader, want))
                for seq, body in batch:
                    yield seq, from_json(body)
                if remaining is not None:
                    remaining -= len(batch)
                if finished:
                    return
        finally:
            if not self._closed:
                self._call_quietly(self._close_reader(reader))

    async def _open_reader(
        self, since_seq: int | None, since_time: datetime | None
    ) -> _Reader | None:
        js = self._jetstream
        last_seq = (await js.stream_info(self.stream_name)).state.last_seq
        if last_seq == 0 or (since_seq is not None and since_seq > last_seq):
            return None
        if since_seq is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=since_seq
            )
        elif since_time is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since_time
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        # Ephemeral, unacknowledged, in memory: a replay is a read, not a subscription;
        # the server drops the consumer by itself if this process dies mid-replay.
        config.ack_policy = AckPolicy.NONE
        config.mem_storage = True
        config.inactive_threshold = max(30.0, 6 * self._timeout)
        subscription = await js.pull_subscribe(
            f"{self.subject_prefix}.>", stream=self.stream_name, config=config
        )
        info = await subscription.consumer_info()
        reader = _Reader(subscription=subscription, consumer=info.name, last_seq=last_seq)
        if not info.num_pending:
            await self._close_reader(reader)
            return None
        return reader

    async def _fetch(self, reader: _Reader, want: int) -> tuple[list[tuple[int, bytes]], bool]:
        """The next messages up to the snapshot's last sequence, and whether that was all."""
        try:
            msgs: list[Msg] = await reader.subscription.fetch(want, timeout=self._timeout)
        except nats.errors.TimeoutError as exc:
            raise TransientError("JetStream sent no messages although some were pending") from exc
        batch: list[tuple[int, bytes]] = []
        finished = False
        for msg in msgs:
            meta = msg.metadata
            if meta.sequence.consumer != reader.next_consumer_seq:
                # Without acks nothing is redelivered: a gap means a lost message.
                raise TransientError(
                    f"replay lost messages before stream sequence {meta.sequence.stream}"
                )
            reader.next_consumer_seq += 1
            if meta.sequence.stream > reader.last_seq:
                finished = True
                break
            batch.append((meta.sequence.stream, msg.data))
            if meta.sequence.stream == reader.last_seq or meta.num_pending == 0:
                finished = True
                break
        return batch, finished

    async def _close_reader(self, reader: _Reader) -> None:
        try:
            await reader.subscription.unsubscribe()
        finally:
            await self._jetstream.delete_consumer(self.stream_name, reader.consumer)

    def _call_quietly(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            self._call(coro)
        except AccordError as exc:  # the server expires the consumer anyway
            _log.warning("could not remove replay consumer: %s", exc)

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Close the NATS connection and stop the loop thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(
                    3 * self._timeout
                )
            except Exception as exc:  # closing must not mask the caller's error
                _log.warning("event stream did not close cleanly: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(3 * self._timeout)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._loop.shutdown_asyncgens()


def open_stream(nats_url: str | None, *, instance: str = DEFAULT_INSTANCE) -> EventStream:
    """The stream the configuration asks for: JetStream with a URL, else in-process.

    The caller (the composition root) reads ``ACCORD_NATS_URL``; nothing here
    touches the environment, so tests and tools can choose explicitly.
    """
    if nats_url:
        return JetStreamStream(nats_url, instance=instance)
    return MemoryStream(instance=instance)


def _parse_since(since: str) -> tuple[int | None, datetime | None]:
    text = since.strip()
    if text.isdigit():
        seq = int(text)
        return (seq if seq > 0 else None), None  # 0 reads as "from the beginning"
    try:
        when = datetime.fromisoformat(text.upper())
    except ValueError:
        raise InvalidInput(
            f"{since!r} is neither a sequence number nor an ISO-8601 time", field="since"
        ) from None
    if when.utcoffset() is None:
        when = when.replace(tzinfo=UTC)  # a bare time on the command line means UTC
    return None, when


def replay_to_lines(stream: EventStream, since: str) -> Iterator[str]:
    """JSON lines for ``accord events replay --since ...``: one event per line.

    ``since`` is a sequence number (``1200``; ``0`` means from the start) or an
    ISO-8601 time (``2025-03-01T09:30:00Z``; without an offset, UTC). Each line is
    ``{"seq": <n>, "event": <CloudEvent>}`` so a reader can resume from ``seq + 1``.
    It is parsed here, before the first line, so a typo fails at once.
    """
    since_seq, since_time = _parse_since(since)
    events = stream.replay(since_seq=since_seq, since_time=since_time)
    return (
        json.dumps(
            {"seq": seq, "event": to_envelope(change, instance=stream.instance)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for seq, change in events
    )
