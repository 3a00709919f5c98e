"""The journal of durable queues: one append-only log of segment files for
every durable queue's durable messages.

Records (store/records.py framing):

- PUBLISH  queue id u32, sequence u64, expires-at f64 (-1: never), delivered
           u8, then the stored message's bytes;
- DELIVERED queue id, sequence: the message went out to a consumer once (a
           restart then redelivers it with delivery-count +1);
- ACK      queue id, sequence: the message left its queue (accepted,
           rejected, expired, dropped, purged, replaced);
- SEQUENCE queue id, sequence: the highest number the queue gave out, for
           messages not journaled (transient ones), and for every queue at the
           start of each segment, so numbering goes on after a restart even
           once the segments holding the PUBLISH records are gone.

A message is live from its PUBLISH until its ACK.  Replaying the segments
in order rebuilds every queue's live messages; the queue id names a queue in
the topology file, and records of ids no longer there are skipped, which is
how deleting a queue drops its messages.

Segments roll at `segment_bytes`.  A segment is deleted once it and every
older segment hold no live message (deleting only whole prefixes keeps every
ACK as long as the PUBLISH it cancels).  One long-lived message would pin
every segment after it, so when a roll finds the oldest segment holding
fewer live messages than a quarter of what a segment holds (the most
written to any), its live messages are written again into the new segment
and the old one goes: RabbitMQ's classic store and Artemis's journal compact
for the same reason.

The journal is driven from two sides.  The container's thread records
(`publish`, `delivered`, `removed`): pure bookkeeping, no I/O, and a message
published and removed before its batch was taken is never written at all.
`take_batch` (same thread) turns what is pending into bytes and decides the
segment and the deletions; `commit` (the server's worker thread) writes,
syncs and deletes.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from broker.nodes.base import Entry
from broker.store.records import (
    MAGIC_SIZE,
    ScanResult,
    append_record,
    end_of_good_records,
    move_aside,
    scan,
    write_all,
)

log = logging.getLogger("broker.store")

MAGIC: Final = b"AWSQJRN1"
PUBLISH, DELIVERED, ACK, SEQUENCE = 1, 2, 3, 4
_PUBLISH: Final = struct.Struct(">IQdB")
_KEY: Final = struct.Struct(">IQ")
SEGMENT_BYTES: Final = 64 * 1024 * 1024
_PENDING: Final = -1  # the segment of a publish not yet taken into a batch


@dataclass(slots=True)
class Recovered:
    """A live message found by replay."""

    sequence: int
    expires_at: float | None
    delivered: bool
    payload: bytes


@dataclass(slots=True)
class JournalBatch:
    """What one commit writes: bytes into segment `segment` (a new file when
    `new_segment`), then the older segment files to delete."""

    segment: int
    new_segment: bool
    data: bytes
    delete: list[int] = field(default_factory=list)


class _Live:
    """A live durable message: its entry (the payload to compact from) and the
    segment its PUBLISH is in."""

    __slots__ = ("entry", "segment")

    def __init__(self, entry: Entry | None, segment: int) -> None:
        self.entry = entry
        self.segment = segment


class Journal:
    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._live: dict[int, dict[int, _Live]] = {}  # queue id → sequence → live
        self._live_in: dict[int, int] = {}  # segment → live messages in it
        self._written_in: dict[int, int] = {}  # segment → messages ever written to it
        self._segment = 0  # the segment being appended to (0: none yet)
        self._segment_size = 0
        self._pending: list[tuple[int, int, int, Entry | None]] = []  # (kind, queue, seq, entry)
        self._pending_publish: dict[tuple[int, int], int] = {}  # key → index in _pending
        self._file: io.FileIO | None = None  # the open segment, on the committing thread only
        self._numbered: dict[int, int] = {}  # queue → highest sequence given out since a batch
        # every queue's highest sequence given out, for the SEQUENCE records each new
        # segment starts with (the store's: it knows the queues)
        self.sequences: Callable[[], dict[int, int]] = dict
        self.recovered_sequences: dict[int, int] = {}  # recovery: queue → highest seen

    # -- the container's side: bookkeeping --------------------------------------------

    def publish(self, queue: int, entry: Entry) -> None:
        key = (queue, entry.sequence)
        self._pending_publish[key] = len(self._pending)
        self._pending.append((PUBLISH, queue, entry.sequence, entry))
        self._live.setdefault(queue, {})[entry.sequence] = _Live(entry, _PENDING)

    def delivered(self, queue: int, sequence: int) -> bool:
        """The message went out the first time; True if that is a record to write."""
        live = self._live.get(queue)
        if live is not None and sequence in live:
            self._pending.append((DELIVERED, queue, sequence, None))
            return True
        return False

    def numbered(self, queue: int, sequence: int) -> None:
        """A queue gave out `sequence` to a message not journaled (transient):
        written as a SEQUENCE record so numbering never goes back after a restart."""
        if sequence > self._numbered.get(queue, 0):
            self._numbered[queue] = sequence

    def removed(self, queue: int, sequence: int) -> bool:
        """The message left its queue; True if that is a record to write."""
        live = self._live.get(queue)
        found = live.pop(sequence, None) if live is not None else None
        if found is None:
            return False
        if found.segment == _PENDING:  # never written: nor will it be
            index = self._pending_publish.pop((queue, sequence))
            self._pending[index] = (0, queue, sequence, None)
            return False
        self._live_in[found.segment] -= 1
        self._pending.append((ACK, queue, sequence, None))
        return True

    def drop_queue(self, queue: int) -> None:
        """A deleted queue: its messages stop counting (its id is gone from the
        topology, so replay skips them) and no pending record of it is written."""
        for sequence, found in self._live.pop(queue, {}).items():
            if found.segment == _PENDING:
                index = self._pending_publish.pop((queue, sequence))
                self._pending[index] = (0, queue, sequence, None)
            else:
                self._live_in[found.segment] -= 1

    @property
    def pending(self) -> bool:
        return bool(self._pending or self._numbered)

    @property
    def numbering_pending(self) -> bool:
        return bool(self._numbered)

    def take_batch(self) -> JournalBatch | None:
        """The pending records as one write (None when there are none)."""
        pending = self._pending
        numbered = self._numbered
        if not pending and not numbered:
            return None
        self._pending = []
        self._numbered = {}
        self._pending_publish = {}
        new_segment = False
        if not self._segment or self._segment_size >= self.segment_bytes:
            self._segment += 1
            self._segment_size = MAGIC_SIZE
            self._live_in[self._segment] = 0
            self._written_in[self._segment] = 0
            new_segment = True
        segment = self._segment
        out = bytearray()
        written = 0
        if new_segment:  # older segments may go: this one carries the numbering on
            numbered = {**self.sequences(), **numbered}
        for queue, sequence in numbered.items():
            append_record(out, SEQUENCE, _KEY.pack(queue, sequence))
        for kind, queue, sequence, entry in pending:
            if kind == PUBLISH:
                assert entry is not None
                _append_publish(out, queue, entry)
                self._live[queue][sequence].segment = segment
                written += 1
            elif kind:
                append_record(out, kind, _KEY.pack(queue, sequence))
        if new_segment:
            written += self._compact_oldest(out, segment)
        self._live_in[segment] += written
        self._written_in[segment] += written
        self._segment_size += len(out)
        return JournalBatch(segment, new_segment, bytes(out), self._deletable())

    def _compact_oldest(self, out: bytearray, segment: int) -> int:
        """Move the live messages of a mostly dead oldest segment into `segment`."""
        older = sorted(s for s in self._live_in if s != segment)
        if len(older) < 2:
            return 0
        oldest = older[0]
        live = self._live_in[oldest]
        # mostly dead: a quarter of what a segment holds (the fullest one's count,
        # since the oldest may be a small one, cut short by a restart)
        if not live or live * 4 >= max(self._written_in[s] for s in older):
            return 0
        moved = 0
        for queue, messages in self._live.items():
            for found in messages.values():
                if found.segment == oldest and found.entry is not None:
                    _append_publish(out, queue, found.entry)
                    found.segment = segment
                    moved += 1
        self._live_in[oldest] -= moved
        log.debug("journal: %d live messages moved out of segment %d", moved, oldest)
        return moved

    def _deletable(self) -> list[int]:
        """The oldest segments, none of them current, holding no live message."""
        gone = []
        for s in sorted(self._live_in):
            if s == self._segment or self._live_in[s] > 0:
                break
            gone.append(s)
        for s in gone:
            del self._live_in[s]
            del self._written_in[s]
        return gone

    # -- the committing side: I/O -------------------------------------------------------

    def path(self, segment: int) -> Path:
        return self.directory / f"{segment:08d}.log"

    def write(self, batch: JournalBatch) -> None:
        """Append the batch (a new segment file first if it says so); on
        failure the segment is cut back to where it was, so no half record
        stays ahead of the next batch."""
        if batch.new_segment or self._file is None:
            self.close()
            f = self._file = io.FileIO(self.path(batch.segment), "ab")
            if f.tell() == 0:
                try:
                    write_all(f, MAGIC)
                except OSError:
                    f.truncate(0)
                    raise
        f = self._file
        before = f.tell()
        try:
            write_all(f, batch.data)
        except OSError:
            f.truncate(before)
            raise

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def delete(self, batch: JournalBatch) -> None:
        for segment in batch.delete:
            try:
                self.path(segment).unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- recovery -----------------------------------------------------------------------

    def recover(self, queues: set[int]) -> dict[int, list[Recovered]]:
        """Replay every segment: the live messages of each of `queues`, in
        sequence order.  A torn tail of the last segment is cut off; a segment
        that cannot be read is moved aside (`.unreadable`), never deleted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = sorted(int(p.stem) for p in self.directory.glob("*.log") if p.stem.isdigit())
        live: dict[tuple[int, int], Recovered] = {}
        segment_of: dict[tuple[int, int], int] = {}  # a live message → its PUBLISH's segment
        written: dict[int, int] = {}  # segment → PUBLISH records in it (compaction's measure)
        for index, segment in enumerate(segments):
            path = self.path(segment)
            data = path.read_bytes()
            if data[:MAGIC_SIZE] != MAGIC:
                move_aside(path, "it does not start with the journal's magic")
                continue
            result = ScanResult(MAGIC_SIZE)
            for record in scan(data, MAGIC_SIZE, result):
                body = record.body
                if record.kind == PUBLISH:
                    queue, sequence, expires, delivered = _PUBLISH.unpack_from(body)
                    key = (queue, sequence)
                    seen = self.recovered_sequences
                    seen[queue] = max(seen.get(queue, 0), sequence)
                    live[key] = Recovered(sequence, None if expires < 0 or math.isnan(expires)
                                          else expires, bool(delivered),
                                          bytes(body[_PUBLISH.size:]))
                    segment_of[key] = segment
                    written[segment] = written.get(segment, 0) + 1
                elif record.kind == DELIVERED:
                    found = live.get(_KEY.unpack_from(body))
                    if found is not None:
                        found.delivered = True
                elif record.kind == ACK:
                    key = _KEY.unpack_from(body)
                    live.pop(key, None)
                    segment_of.pop(key, None)
                elif record.kind == SEQUENCE:
                    queue, sequence = _KEY.unpack_from(body)
                    seen = self.recovered_sequences
                    seen[queue] = max(seen.get(queue, 0), sequence)
            end_of_good_records(path, result, result.good_end,
                                last=index == len(segments) - 1, what="journal")
            self._written_in[segment] = written.get(segment, 0)
            self._live_in[segment] = 0
        by_queue: dict[int, list[Recovered]] = {}
        for key, found in live.items():
            if key[0] in queues:
                by_queue.setdefault(key[0], []).append(found)
                segment = segment_of[key]
                self._live_in[segment] += 1
                self._live.setdefault(key[0], {})[key[1]] = _Live(None, segment)
        for found_list in by_queue.values():
            found_list.sort(key=lambda r: r.sequence)
        # the next batch opens a new segment, after every file there was (read or
        # moved aside): appending to one that was cut or set aside is never needed
        self._segment = segments[-1] if segments else 0
        self._segment_size = self.segment_bytes
        return by_queue

    def attach(self, queue: int, sequence: int, entry: Entry) -> None:
        """Recovery: the entry now holding a recovered message (compaction
        copies its bytes from there)."""
        found = self._live.get(queue, {}).get(sequence)
        if found is not None:
            found.entry = entry


def _append_publish(out: bytearray, queue: int, entry: Entry) -> None:
    expires = entry.expires_at if entry.expires_at is not None else -1.0
    append_record(out, PUBLISH, _PUBLISH.pack(queue, entry.sequence, expires,
                                              1 if entry.acquired_before else 0),
                  entry.payload)
