"""A stream on disk: segment files of messages, each with an index file, so
that any offset and any time is found without reading the messages.

Layout of `streams/<id>/`:

- `<first offset, 20 digits>.seg`: the magic, then one record per message
  (store/records.py framing), kind MESSAGE: offset u64, arrival time f64,
  then the stored message's bytes;
- `<first offset>.idx`: 16 bytes per message, in offset order: the record's
  position in the segment (u64) and the stream's index time (f64: the latest
  arrival time so far, which never decreases, so a time is found by binary
  search even when the wall clock stepped back).

In memory the log keeps, per segment, those two columns as arrays (16 bytes
a message), never the messages: `load(offset)` reads one record back with
`os.pread`.  Segments roll at `segment_bytes`; retention deletes whole
segments once every offset in them is below the stream's head.

Recovery reads the index files and checks them against their segments: an
index longer than its segment's good records (a crash between the two
writes) is cut, a shorter one is rebuilt from the segment's tail, and a torn
record at the end of the last segment is cut off.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from broker.codec.messaging import Message
from broker.nodes.base import Entry
from broker.store.records import (
    HEADER,
    MAGIC_SIZE,
    ScanResult,
    append_record,
    end_of_good_records,
    move_aside,
    scan,
    write_all,
)

log = logging.getLogger("broker.store")

MAGIC: Final = b"AWSSTRM1"
MESSAGE: Final = 1
_MESSAGE: Final = struct.Struct(">Qd")
_INDEX: Final = struct.Struct(">Qd")
SEGMENT_BYTES: Final = 64 * 1024 * 1024


class _Segment:
    __slots__ = ("fd", "first", "positions", "size", "times")

    def __init__(self, first: int) -> None:
        self.first = first  # its first offset
        self.positions = array("Q")
        self.times = array("d")
        self.size = MAGIC_SIZE  # bytes of the segment file, as far as batches have reached
        self.fd: int | None = None  # for reading, opened on first load

    @property
    def end(self) -> int:
        return self.first + len(self.positions)


@dataclass(slots=True)
class StreamBatch:
    """Appends to segments (first offset → (segment bytes, index bytes, new file)),
    and the segments to delete after them."""

    writes: list[tuple[int, bytes, bytes, bool]] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    end: int = 0  # offsets below this are on disk once the batch is committed


class StreamLog:
    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []  # each segment's first offset, for bisect
        self._pending: list[Entry] = []
        self._pending_times: list[float] = []
        self.durable_end = 0  # offsets below this are on disk
        self.end = 0  # the next offset this log will hold
        self._files: dict[int, tuple[io.FileIO, io.FileIO]] = {}  # committing thread: open appenders by first offset

    # -- the container's side -------------------------------------------------------

    def append(self, entry: Entry, index_time: float) -> None:
        """A message the stream just took (its offset and arrival time set)."""
        self._pending.append(entry)
        self._pending_times.append(index_time)
        self.end = entry.offset + 1

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def take_batch(self, head: int) -> StreamBatch | None:
        """The pending messages as appends, and the segments wholly below `head`
        (the stream's oldest retained offset) to delete."""
        batch = StreamBatch()
        pending, times = self._pending, self._pending_times
        self._pending, self._pending_times = [], []
        # by segment (its first offset): the records, the index entries, a new file?
        appends: dict[int, tuple[bytearray, bytearray, bool]] = {}
        for entry, index_time in zip(pending, times, strict=True):
            segment = self._segments[-1] if self._segments else None
            if segment is None or segment.size >= self.segment_bytes:
                segment = _Segment(entry.offset)
                self._segments.append(segment)
                self._firsts.append(entry.offset)
                appends[segment.first] = (bytearray(), bytearray(), True)
            data, index, _ = appends.setdefault(segment.first, (bytearray(), bytearray(), False))
            before = len(data)
            append_record(data, MESSAGE, _MESSAGE.pack(entry.offset, entry.timestamp),
                          entry.payload)
            index += _INDEX.pack(segment.size, index_time)
            segment.positions.append(segment.size)
            segment.times.append(index_time)
            segment.size += len(data) - before
        batch.writes = [(first, bytes(data), bytes(index), new)
                        for first, (data, index, new) in appends.items()]
        while len(self._segments) > 1 and self._segments[0].end <= head:
            gone = self._segments.pop(0)
            self._firsts.pop(0)
            if gone.fd is not None:
                os.close(gone.fd)
            batch.delete.append(gone.first)
        batch.end = self.end
        if not batch.writes and not batch.delete:
            return None
        return batch

    def committed(self, batch: StreamBatch) -> None:
        self.durable_end = max(self.durable_end, batch.end)

    # -- reading ------------------------------------------------------------------------

    def _segment_of(self, offset: int) -> _Segment | None:
        i = bisect.bisect_right(self._firsts, offset) - 1
        if i < 0:
            return None
        segment = self._segments[i]
        return segment if offset < segment.end else None

    def load(self, offset: int) -> Entry | None:
        """The message at `offset`, read back from its segment (None if the log
        has no such offset on disk)."""
        if offset >= self.durable_end:
            return None
        segment = self._segment_of(offset)
        if segment is None:
            return None
        i = offset - segment.first
        start = segment.positions[i]
        end = segment.positions[i + 1] if i + 1 < len(segment.positions) else segment.size
        if segment.fd is None:
            segment.fd = os.open(self._path(segment.first, ".seg"), os.O_RDONLY)
        raw = os.pread(segment.fd, end - start, start)
        body = memoryview(raw)[HEADER.size:]
        stored_offset, timestamp = _MESSAGE.unpack_from(body)
        entry = Entry(Message.trusted(bytes(body[_MESSAGE.size:])))
        entry.offset = stored_offset
        entry.timestamp = timestamp
        return entry

    def index_time(self, offset: int) -> float | None:
        segment = self._segment_of(offset)
        return None if segment is None else segment.times[offset - segment.first]

    def size(self, offset: int) -> int:
        """The stored message's bytes at `offset` (its record less the framing)."""
        segment = self._segment_of(offset)
        if segment is None:
            return 0
        i = offset - segment.first
        end = segment.positions[i + 1] if i + 1 < len(segment.positions) else segment.size
        return end - segment.positions[i] - HEADER.size - _MESSAGE.size

    def find_time(self, when: float) -> int:
        """The first offset whose index time is at or after `when` (`end` if none),
        among the messages on disk and those still pending."""
        for segment in self._segments:
            if segment.times and segment.times[-1] >= when:
                return segment.first + bisect.bisect_left(segment.times, when)
        for entry, index_time in zip(self._pending, self._pending_times, strict=True):
            if index_time >= when:
                return entry.offset
        return self.end

    @property
    def first(self) -> int:
        return self._segments[0].first if self._segments else self.end

    @property
    def stored_bytes(self) -> int:
        """The stored messages' bytes, less the framing (recovery's count for
        max-length-bytes)."""
        framing = HEADER.size + _MESSAGE.size
        return sum(s.size - MAGIC_SIZE - framing * len(s.positions) for s in self._segments)

    @property
    def last_index_time(self) -> float:
        for segment in reversed(self._segments):
            if segment.times:
                return segment.times[-1]
        return float("-inf")

    # -- the committing side ------------------------------------------------------------

    def _path(self, first: int, suffix: str) -> Path:
        return self.directory / f"{first:020d}{suffix}"

    def write(self, batch: StreamBatch) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for first, data, index, new in batch.writes:
            files = self._files.get(first)
            if files is None or new:
                if files is not None:
                    for f in files:
                        f.close()
                seg = io.FileIO(self._path(first, ".seg"), "ab")
                idx = io.FileIO(self._path(first, ".idx"), "ab")
                if seg.tell() == 0:
                    try:
                        write_all(seg, MAGIC)
                    except OSError:
                        seg.truncate(0)
                        raise
                files = self._files[first] = (seg, idx)
                for older in [k for k in self._files if k < first]:
                    for f in self._files.pop(older):
                        f.close()
            seg, idx = files
            before = seg.tell(), idx.tell()
            try:
                write_all(seg, data)
                write_all(idx, index)
            except OSError:
                seg.truncate(before[0])
                idx.truncate(before[1])
                raise

    def sync(self) -> None:
        for files in self._files.values():
            for f in files:
                os.fsync(f.fileno())

    def delete(self, batch: StreamBatch) -> None:
        for first in batch.delete:
            for suffix in (".seg", ".idx"):
                try:
                    self._path(first, suffix).unlink()
                except FileNotFoundError:
                    pass

    def close_writers(self) -> None:
        """The committing side's files (on its thread, or when no commit runs)."""
        for files in self._files.values():
            for f in files:
                f.close()
        self._files.clear()

    def close_readers(self) -> None:
        """The container side's read descriptors."""
        for segment in self._segments:
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None

    def close(self) -> None:
        self.close_writers()
        self.close_readers()

    # -- recovery -----------------------------------------------------------------------

    def recover(self) -> tuple[int, int]:
        """Read the index files (checked against their segments): the first and
        next offsets of what is on disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        firsts = sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())
        for n, first in enumerate(firsts):
            path = self._path(first, ".seg")
            size = path.stat().st_size
            with open(path, "rb") as f:
                magic = f.read(MAGIC_SIZE)
            if magic != MAGIC:
                move_aside(path, "it does not start with the stream log's magic")
                continue
            segment = _Segment(first)
            index_path = self._path(first, ".idx")
            raw = index_path.read_bytes() if index_path.exists() else b""
            count = len(raw) // _INDEX.size
            for i in range(count):
                position, index_time = _INDEX.unpack_from(raw, i * _INDEX.size)
                if position >= size:
                    break
                segment.positions.append(position)
                segment.times.append(index_time)
            # The index may miss the tail of its segment, or point at a torn
            # last record: check from its last entry on, reading only that far.
            start = segment.positions[-1] if segment.positions else MAGIC_SIZE
            if segment.positions:
                segment.positions.pop()
                segment.times.pop()
            data = _read_from(path, start)
            result = ScanResult(0)
            last_time = segment.times[-1] if segment.times else float("-inf")
            expected = segment.end
            for record in scan(data, 0, result):
                offset, timestamp = _MESSAGE.unpack_from(record.body)
                if record.kind != MESSAGE or offset != expected:
                    result.problem = f"offset {offset} where {expected} belongs"
                    result.good_end = record.position
                    break
                last_time = max(last_time, timestamp)
                segment.positions.append(start + record.position)
                segment.times.append(last_time)
                expected += 1
            segment.size = start + result.good_end
            end_of_good_records(path, result, segment.size, last=n == len(firsts) - 1,
                                what="stream log")
            if len(segment.positions) != count or len(raw) % _INDEX.size:
                with open(index_path, "wb") as f:  # the index as checked
                    f.write(b"".join(_INDEX.pack(p, t) for p, t in
                                     zip(segment.positions, segment.times, strict=True)))
            if segment.positions or n == len(firsts) - 1:
                self._segments.append(segment)
                self._firsts.append(first)
        self.end = self._segments[-1].end if self._segments else 0
        self.durable_end = self.end
        return self.first, self.end


def _read_from(path: Path, start: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read()
