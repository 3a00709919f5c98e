"""The record framing every store file uses: a file header (magic), then
records, each

    u32 length   bytes of type + body (big-endian, as AMQP's own framing)
    u32 crc32    zlib.crc32 of type + body
    u8  type
    body

so that a reader can tell a whole record from a torn one.  A crash while
appending leaves at most one partial or garbled record at the end of the
last file: `scan` stops there and says where the good bytes end, and the
caller truncates the file to that length.  Pure: bytes in, records out.
"""

from __future__ import annotations

import errno
import logging
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

log = logging.getLogger("broker.store")

HEADER: Final = struct.Struct(">IIB")  # length, crc, type
MAX_RECORD: Final = 1 << 30  # a length beyond this is garbage, not a record
MAGIC_SIZE: Final = 8


def encode_record(kind: int, body: bytes | bytearray | memoryview) -> bytes:
    typed = bytes((kind,)) + bytes(body)
    return struct.pack(">II", len(typed), zlib.crc32(typed)) + typed


def append_record(out: bytearray, kind: int, *parts: bytes | bytearray | memoryview) -> None:
    """Append one record made of `parts` (the body in pieces) to `out`,
    without joining the pieces first."""
    length = 1 + sum(len(p) for p in parts)
    crc = zlib.crc32(bytes((kind,)))
    for part in parts:
        crc = zlib.crc32(part, crc)
    out += HEADER.pack(length, crc, kind)
    for part in parts:
        out += part


def write_all(f: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Write every byte: a raw file's `write` may write fewer (a nearly full
    disk stops at a page boundary) without raising, and a record written in
    part would be acknowledged as kept."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(errno.ENOSPC, "short write: no more space")
        view = view[n:]


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    body: memoryview
    position: int  # where the record starts in the scanned buffer
    end: int  # where the next one starts


@dataclass(slots=True)
class ScanResult:
    """How far the good records reach, and why the scan stopped short if it did."""

    good_end: int
    problem: str | None = None  # None: the buffer ended on a record boundary


def scan(data: bytes | memoryview, start: int, result: ScanResult) -> Iterator[Record]:
    """The whole, intact records of `data` from `start`; `result` then says
    where the last good one ended and what stopped the scan."""
    view = memoryview(data)
    n = len(view)
    i = start
    result.good_end = start
    result.problem = None
    while i < n:
        if n - i < HEADER.size:
            result.problem = f"a torn record header at byte {i}"
            return
        length, crc, _ = HEADER.unpack_from(view, i)
        if length < 1 or length > MAX_RECORD:
            result.problem = f"a record of impossible length {length} at byte {i}"
            return
        end = i + 8 + length
        if end > n:
            result.problem = f"a torn record at byte {i} ({length} bytes, {n - i - 8} there)"
            return
        typed = view[i + 8:end]
        if zlib.crc32(typed) != crc:
            result.problem = f"a record failing its checksum at byte {i}"
            return
        yield Record(typed[0], typed[1:], i, end)
        i = end
        result.good_end = i


def end_of_good_records(path: Path, result: ScanResult, end: int, *, last: bool,
                        what: str) -> None:
    """After a scan of `path` stopped short (`result.problem`): in the last
    file, a crash mid-append, so the file is cut back to `end`, the end of its
    good records; anywhere else, damage, said so once and left in place."""
    if result.problem is None:
        return
    if last:
        log.warning("%s %s: %s; cut back to %d bytes (a crash mid-write)",
                    what, path.name, result.problem, end)
        with open(path, "r+b") as f:
            f.truncate(end)
    else:
        log.error("%s %s: %s; the records after it are not read", what, path.name,
                  result.problem)


def move_aside(path: Path, why: str) -> None:
    """A file that cannot be read: renamed `.unreadable` for a human, never deleted."""
    aside = path.with_name(path.name + ".unreadable")
    path.rename(aside)
    log.error("%s cannot be read (%s): moved aside to %s", path, why, aside.name)
