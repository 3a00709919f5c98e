"""Append-only stream with RabbitMQ-compatible offsets.

Theory of operation.  Every appended message gets the next offset (0, 1, 2, …
over the stream's life, never reused) and its arrival time.  The stored bytes
already carry the message annotations RabbitMQ adds (`x-stream-offset`,
`x-exchange`, `x-routing-key`), written once at append, so every consumer is
sent the same bytes object and a delivery copies nothing.

Each consumer has a cursor: the next offset it will read.  Reading never
removes anything; settlement outcomes are accepted and ignored.  Retention
trims from the head by age, total bytes and message count; a cursor left
behind the head continues from the oldest retained message.  The time index
(a `SortedKeyList` of (arrival time, offset)) answers "first message at or
after T" for timestamp and interval offset specs.  Arrival times come from the
wall clock, which can step backwards, so the index is keyed by the latest
arrival time so far rather than each message's own: the keys then never
decrease, the index stays in offset order (trimming pops its front), and the
first key at or after T belongs to the first offset that arrived at or after T.

Durable streams (`--data-dir`) have a `backing` (store/durable.py's
StreamBacking): every appended message is also written to disk, the time
index is the backing's (kept on disk, not in memory), and once more than
`resident_limit` bytes of messages are in memory the oldest ones already on
disk leave it; reading them again loads them from the backing.  `_log` then
starts at `_log_base`, which may be above `first_offset`: the offsets between
are retained, on disk only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sortedcontainers import SortedKeyList  # type: ignore[import-untyped]

from broker.codec.types import (
    Byte,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)
from broker.filters.fields import FieldsCache
from broker.nodes.base import ENTRY_OVERHEAD, Consumer, Entry

log = logging.getLogger("broker.stream")

OFFSET_SPEC = Symbol("rabbitmq:stream-offset-spec")
_INTERVAL = re.compile(r"^(\d+)([YMDhms])$")
_UNIT_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}
_INTEGER_TYPES = (ULong, Long, UInt, Int, UShort, Short, UByte, Byte)


def parse_interval(text: str) -> float | None:
    """'10m', '1h', '7D' … → seconds; None if it is not an interval."""
    m = _INTERVAL.match(text)
    if m is None:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where a consumer starts: 'first' | 'last' | 'next' | 'offset' | 'timestamp'."""

    kind: str
    value: float = 0  # the offset, or the time in wall-clock seconds


def parse_offset_spec(value: object, now: float) -> StartAt | None:
    """The start position an offset-spec value asks for; None if invalid."""
    if type(value) is Timestamp:
        return StartAt("timestamp", int(value) / 1000.0)
    if isinstance(value, str):
        text = str(value)
        if text in ("first", "last", "next"):
            return StartAt(text)
        seconds = parse_interval(text)
        if seconds is not None:
            return StartAt("timestamp", now - seconds)
        return None
    if type(value) in _INTEGER_TYPES or type(value) is int:  # exact types: not bool
        offset = int(value)  # type: ignore[call-overload]
        if offset >= 0:
            return StartAt("offset", offset)
    return None


RESIDENT_LIMIT = 16 * 1024 * 1024  # bytes of a durable stream's messages kept in memory


class StreamStore(Protocol):
    """What a durable stream's messages are written to and read back from."""

    @property
    def durable_end(self) -> int:
        """Offsets below this are on disk."""
        ...

    def append(self, entry: Entry, index_time: float) -> None: ...
    def trimmed(self) -> None: ...
    def load(self, offset: int) -> Entry | None: ...
    def index_time(self, offset: int) -> float | None: ...
    def size(self, offset: int) -> int: ...
    def find_time(self, when: float) -> int: ...


class StreamCursor:
    __slots__ = ("consumer", "position")

    def __init__(self, consumer: Consumer, position: int) -> None:
        self.consumer = consumer
        self.position = position


class Stream:
    kind = "stream"
    temporary = False
    deleted = False  # set on the instance by the registry

    def __init__(
        self,
        name: str,
        *,
        max_age: float | None = None,
        max_length_bytes: int | None = None,
        max_length_messages: int | None = None,
    ) -> None:
        self.name = name
        # The log is a list indexed by offset - _log_base; trimmed slots are set
        # to None and compacted in bulk, so reading any offset is O(1).
        self._log: list[Entry | None] = []
        self._log_base = 0
        self.first_offset = 0  # oldest retained offset
        self.next_offset = 0
        self.bytes = 0
        self.delivered = 0  # deliveries to all readers, for metrics and the console
        self.max_age = max_age
        self.max_length_bytes = max_length_bytes
        self.max_length_messages = max_length_messages
        # (arrival time, offset), the time never below an earlier one's (see the top)
        self.time_index: SortedKeyList = SortedKeyList(key=lambda item: item[0])
        self._index_time = float("-inf")
        self.cursors: dict[int, StreamCursor] = {}  # by id(consumer)
        self._fields = FieldsCache()  # decoded sections, shared by filtering readers
        self._annotation_values: dict[object, object] = {
            Symbol("x-exchange"): "",
            Symbol("x-routing-key"): name,
        }
        self.backing: StreamStore | None = None  # durable streams: see the top
        self.resident_limit = RESIDENT_LIMIT
        self._resident_bytes = 0  # bytes of the messages in `_log`

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, offsets {self.first_offset}..{self.next_offset - 1})"

    @property
    def depth(self) -> int:
        """Messages retained."""
        return self.next_offset - self.first_offset

    @property
    def ready(self) -> bool:
        return self.next_offset > self.first_offset

    def entry(self, offset: int) -> Entry:
        if offset >= self._log_base:
            return self._log[offset - self._log_base]  # type: ignore[return-value]
        loaded = self.backing.load(offset) if self.backing is not None else None
        if loaded is None:
            raise KeyError(f"stream {self.name!r} has no offset {offset} in memory or on disk")
        return loaded

    def restore(self, first: int, end: int, stored_bytes: int, index_time: float) -> None:
        """Recovery: the backing holds offsets first..end-1, none in memory."""
        self.first_offset = first
        self.next_offset = self._log_base = end
        self._log = []
        self.bytes = stored_bytes
        self._index_time = index_time

    def evict(self) -> None:
        """Durable streams: past `resident_limit`, the oldest messages already
        on disk leave memory (down to half the limit, so this runs seldom)."""
        backing = self.backing
        if backing is None or self._resident_bytes <= self.resident_limit:
            return
        log_, limit, target = self._log, backing.durable_end, self.resident_limit // 2
        k = freed = 0
        while k < len(log_) and self._log_base + k < limit and \
                self._resident_bytes - freed > target:
            e = log_[k]
            if e is not None:
                freed += e.size
            k += 1
        if k:
            del log_[:k]
            self._log_base += k
            self._resident_bytes -= freed

    # -- publishing -------------------------------------------------------------

    def publish(self, entry: Entry, now: float) -> None:
        offset = self.next_offset
        message = entry.message
        annotations = dict(message.message_annotations or {})
        for key, value in self._annotation_values.items():  # routed messages keep theirs
            annotations.setdefault(key, value)
        annotations[Symbol("x-stream-offset")] = Long(offset)
        entry.payload = message.with_changes(message_annotations=annotations).encode()
        entry.size = len(entry.payload)
        entry.offset = offset
        entry.timestamp = now
        self._log.append(entry)
        self._index_time = max(self._index_time, now)
        self._resident_bytes += entry.size
        if self.backing is not None:
            self.backing.append(entry, self._index_time)  # its index is on disk
        else:
            self.time_index.add((self._index_time, offset))
        self.bytes += entry.size
        self.next_offset = offset + 1
        self.trim(now)
        if self.cursors:
            self.dispatch(now)

    def trim(self, now: float) -> int:
        """Drop the oldest messages beyond the retention limits; return how many."""
        removed = 0
        while self.first_offset < self.next_offset:
            timestamp, size = self._head()
            if not (
                (self.max_age is not None and timestamp < now - self.max_age)
                or (self.max_length_bytes is not None and self.bytes > self.max_length_bytes)
                or (self.max_length_messages is not None
                    and self.depth > self.max_length_messages)
            ):
                break
            if self.first_offset >= self._log_base:
                self._log[self.first_offset - self._log_base] = None
                self._resident_bytes -= size
            self.bytes -= size
            self.first_offset += 1
            removed += 1
        dead = self.first_offset - self._log_base
        if dead > 1024 and dead * 2 > len(self._log):
            del self._log[:dead]
            self._log_base = self.first_offset
        if removed:
            if self.backing is not None:
                self.backing.trimmed()  # whole segments below the head may go
            # The index is in offset order (its keys never decrease), so the
            # trimmed offsets are at its front.
            index = self.time_index
            while index and index[0][1] < self.first_offset:
                index.pop(0)
        return removed

    def _head(self) -> tuple[float, int]:
        """The oldest retained message's arrival time and size."""
        offset = self.first_offset
        if offset >= self._log_base:
            head: Entry = self._log[offset - self._log_base]  # type: ignore[assignment]
            return head.timestamp, head.size
        assert self.backing is not None
        return self.backing.index_time(offset) or 0.0, self.backing.size(offset)

    # -- consuming ----------------------------------------------------------------

    def resolve(self, start: StartAt) -> int:
        """The offset a consumer starting at `start` reads first."""
        if start.kind == "first":
            return self.first_offset
        if start.kind == "last":
            return max(self.first_offset, self.next_offset - 1)
        if start.kind == "next":
            return self.next_offset
        if start.kind == "offset":
            return max(int(start.value), self.first_offset)  # a future offset is waited for
        if self.backing is not None:
            return max(self.backing.find_time(start.value), self.first_offset)
        i: int = self.time_index.bisect_key_left(start.value)
        if i >= len(self.time_index):
            return self.next_offset
        offset: int = self.time_index[i][1]
        return max(offset, self.first_offset)

    def subscribe(self, consumer: Consumer, start: StartAt, now: float) -> int:
        self.trim(now)
        position = self.resolve(start)
        self.cursors[id(consumer)] = StreamCursor(consumer, position)
        self.dispatch(now)
        return position

    def add_consumer(self, consumer: Consumer, now: float) -> None:
        self.subscribe(consumer, StartAt("next"), now)

    def remove_consumer(self, consumer: Consumer, now: float | None = None) -> None:
        self.cursors.pop(id(consumer), None)

    def dispatch(self, now: float) -> None:
        for cursor in list(self.cursors.values()):
            self._feed(cursor, now)

    def consumer_ready(self, consumer: Consumer, now: float) -> None:
        cursor = self.cursors.get(id(consumer))
        if cursor is not None:
            self._feed(cursor, now)

    def _feed(self, cursor: StreamCursor, now: float) -> None:
        """Deliver from the cursor while the consumer has credit; a filtering
        consumer skips what does not match, each message decoded once for all
        the filtering readers near it (`FieldsCache`)."""
        consumer = cursor.consumer
        cursor.position = max(cursor.position, self.first_offset)
        log_, base = self._log, self._log_base
        match = consumer.filter
        while cursor.position < self.next_offset and consumer.credit > 0:
            position = cursor.position
            if match is None and position >= base:
                # what the credit allows of the log in memory, in one call
                count = min(self.next_offset - position, consumer.credit)
                run: list[Entry] = log_[position - base:position - base + count]  # type: ignore[assignment]
                cursor.position += count
                self.delivered += count
                consumer.deliver_run(run)
                continue
            entry: Entry = log_[position - base] if position >= base \
                else self.entry(position)  # type: ignore[assignment]
            cursor.position += 1
            if match is not None and not match.matches(
                    self._fields.fields(entry.offset, entry.message), now):
                continue
            self.delivered += 1
            consumer.deliver(entry, None)

    # -- settlement: a stream keeps everything ---------------------------------------

    def settle(self, entry: Entry) -> None:
        pass

    def reject(self, entry: Entry, now: float) -> None:
        pass

    def modify(self, entry: Entry, now: float, consumer: Consumer, *, delivery_failed: bool,
               undeliverable_here: bool, annotations: dict[object, object] | None) -> None:
        """Nothing to do: a stream keeps everything, and its stored message is
        shared by every reader, so it is never annotated."""

    def housekeeping(self, now: float) -> None:
        if self.max_age is not None:
            self.trim(now)

    @property
    def held_bytes(self) -> int:
        """What the stream holds in memory (a durable stream's older messages
        are on disk only)."""
        if self.backing is not None:
            return self._resident_bytes + ENTRY_OVERHEAD * len(self._log)
        return self.bytes + ENTRY_OVERHEAD * self.depth

    @property
    def published(self) -> int:
        return self.next_offset

    def requeue(self, entries: Iterable[Entry], now: float, **_: object) -> None:
        pass
