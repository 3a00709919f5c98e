"""Protocol headers and frames (§2.2, §2.3), parsed incrementally.

`FrameReader` is fed arbitrary chunks of the byte stream and hands out whole
protocol headers and frames; any chunking of the same bytes gives the same
results.  It checks only the frame header (size, doff, type) — the body is
decoded by the engine — so a peer that declares a 4 GiB frame is refused
before we buffer it.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from broker.errors import DecodeError, FramingError
from broker.codec.decode import decode
from broker.codec.encode import ENCODERS, encode_into

MIN_MAX_FRAME_SIZE = 512  # §2.7.1: no peer may ask for smaller frames
FRAME_HEADER_SIZE = 8


class FrameType(enum.IntEnum):
    AMQP = 0x00
    SASL = 0x01


class ProtocolId(enum.IntEnum):
    """§2.2: the protocol id byte of `AMQP x 1 0 0`."""

    AMQP = 0
    TLS = 2
    SASL = 3


AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"


@dataclass(frozen=True, slots=True)
class ProtocolHeader:
    """A received protocol header; `raw` keeps the 8 bytes for error messages."""

    raw: bytes

    @property
    def is_valid(self) -> bool:
        return self.raw[:4] == b"AMQP" and self.raw[5:] == b"\x01\x00\x00"

    @property
    def protocol_id(self) -> int:
        return self.raw[4]


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: `body` is everything after the (extended) header; empty for heartbeats."""

    type: int
    channel: int
    body: bytes


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

_HEADER = struct.Struct(">IBBH")


class FrameReader:
    """Incremental frame parser.

    Call `expect_header()` whenever the protocol layer expects a protocol
    header next (at the start, and after a successful SASL outcome).
    """

    def __init__(self, max_frame_size: int = 0xFFFFFFFF) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._want_header = True
        self.max_frame_size = max_frame_size

    def expect_header(self) -> None:
        self._want_header = True

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next(self) -> ProtocolHeader | Frame | _NeedData:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if self._want_header:
            if avail < 8:
                # Fail fast on bytes that can never start a header.
                if avail and buf[pos : pos + min(avail, 4)] != b"AMQP"[: min(avail, 4)]:
                    self._pos = len(buf)
                    self._want_header = False
                    return ProtocolHeader(bytes(buf[pos:]))
                return NEED_DATA
            self._pos = pos + 8
            self._want_header = False
            return ProtocolHeader(bytes(buf[pos : pos + 8]))
        if avail < FRAME_HEADER_SIZE:
            return NEED_DATA
        size, doff, ftype, channel = _HEADER.unpack_from(buf, pos)
        if size < FRAME_HEADER_SIZE:
            raise FramingError(f"frame size {size} is smaller than the 8-byte frame header")
        if doff < 2:
            raise FramingError(f"frame data offset {doff} is less than 2")
        if doff * 4 > size:
            raise FramingError(f"frame data offset {doff * 4} is beyond the frame size {size}")
        if size > self.max_frame_size:
            raise FramingError(
                f"frame of {size} bytes exceeds the max-frame-size {self.max_frame_size}"
            )
        if ftype not in (0x00, 0x01):
            raise FramingError(f"unknown frame type 0x{ftype:02x}")
        if avail < size:
            return NEED_DATA
        body = bytes(buf[pos + doff * 4 : pos + size])
        self._pos = pos + size
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        return Frame(ftype, channel, body)


def decode_frame_body(body: bytes) -> tuple[object, bytes]:
    """Split a frame body into its performative and the payload after it (§2.3.2)."""
    performative, end = decode(body)
    return performative, body[end:]


def encode_frame(
    out: bytearray, channel: int, performative: object, payload: bytes = b"", ftype: int = 0
) -> None:
    """Append one frame carrying `performative` (and a transfer payload) to `out`."""
    start = len(out)
    out += b"\x00\x00\x00\x00\x02"
    out.append(ftype)
    out += channel.to_bytes(2, "big")
    ENCODERS.get(type(performative), encode_into)(out, performative)
    out += payload
    out[start : start + 4] = (len(out) - start).to_bytes(4, "big")


HEARTBEAT = b"\x00\x00\x00\x08\x02\x00\x00\x00"



_TRANSFER_HEAD = b"\x00\x53\x14"
_u32 = struct.Struct(">I").pack


def _uint_bytes(v: int) -> bytes:
    if v == 0:
        return b"\x43"
    if v < 256:
        return b"\x52" + bytes((v,))
    return b"\x70" + _u32(v)


def encode_transfer_frame(
    out: bytearray,
    channel: int,
    handle: int,
    delivery_id: int,
    tag: bytes,
    message_format: int,
    settled: bool,
    more: bool,
    payload: bytes,
) -> None:
    """Hot path: one transfer frame, written by hand (same bytes as `encode_frame`
    with a `Transfer(handle, delivery_id, delivery_tag, message_format, settled, more)`)."""
    fields = bytearray()
    fields += _uint_bytes(handle)
    fields += _uint_bytes(delivery_id)
    n = len(tag)
    fields += (b"\xa0" + bytes((n,)) if n < 256 else b"\xb0" + _u32(n)) + tag
    fields += _uint_bytes(message_format)
    count = 5
    fields += b"\x41" if settled else b"\x42"
    if more:
        fields += b"\x41"
        count = 6
    size = len(fields) + 1
    if size < 256:
        perf = _TRANSFER_HEAD + bytes((0xC0, size, count))
    else:  # pragma: no cover - tags are at most 32 bytes
        perf = _TRANSFER_HEAD + b"\xd0" + _u32(len(fields) + 4) + _u32(count)
    frame_size = 8 + len(perf) + len(fields) + len(payload)
    out += _u32(frame_size)
    out += b"\x02\x00"
    out += channel.to_bytes(2, "big")
    out += perf
    out += fields
    out += payload
