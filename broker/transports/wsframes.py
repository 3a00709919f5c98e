"""RFC 6455 data framing, server side, after the handshake (sans-io).

wsproto does the HTTP upgrade; this small reader takes over for the frames,
because the broker's per-message CPU budget is a few tens of microseconds and
wsproto's general-purpose frame pipeline (a generator chain and an event
object per frame) cost a third of it on a WebSocket connection.  It streams
payloads as they arrive: a frame's bytes are unmasked and handed on without
waiting for the rest of the frame or message, so no size limit is needed.

Unmasking is the one per-byte cost WebSocket adds over TCP (39 % of the
broker's time at 1 MiB messages in pure Python).  The `websockets` package
ships it in C (`websockets.speedups.apply_mask`, wheels for every platform
CPython has): 50x faster at 64 KiB, 6x at 100 bytes.  Where it is missing
(an interpreter without its wheel), the pure-Python way below does the work.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003

_u16 = struct.Struct(">H")
_u64 = struct.Struct(">Q")


class WsProtocolError(Exception):
    """The peer broke RFC 6455; close with 1002."""


@dataclass(slots=True)
class WsControl:
    """A complete control frame (close, ping or pong) and its payload."""

    opcode: int
    payload: bytes


_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]

_apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - the wheel is there wherever CPython is
    _apply_mask = None


def unmask(data: bytes | memoryview, mask: bytes, offset: int) -> bytes:
    """XOR `data` with the 4-byte mask, starting `offset` bytes into the frame."""
    if _apply_mask is None:
        return unmask_python(bytes(data), mask, offset)
    r = offset & 3
    return _apply_mask(data, mask[r:] + mask[:r] if r else mask)


def _unmask_whole_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    return unmask_python(bytes(data), mask, 0)


# a whole frame's payload, from its first byte: the mask as it came, no rotation
_unmask_whole = _apply_mask if _apply_mask is not None else _unmask_whole_python


def unmask_python(data: bytes, mask: bytes, offset: int) -> bytes:
    """`unmask` without the C helper.

    Two pure-Python ways, each faster in its range (measured here): one
    big-integer XOR for short payloads, one `translate` per mask byte over
    every fourth byte for long ones."""
    n = len(data)
    if not n:
        return b""
    r = offset & 3
    rotated = mask[r:] + mask[:r]
    if n < 1024:
        key = rotated * (n // 4 + 1)
        return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
            n, "little")
    out = bytearray(data)
    for lane in range(4):
        out[lane::4] = out[lane::4].translate(_XOR_TABLES[rotated[lane]])
    return bytes(out)


def encode_frame(opcode: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One unmasked, final frame from the server (§5.1: servers never mask)."""
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        return head + bytes((n,)) + payload
    if n < 65536:
        return head + b"\x7e" + _u16.pack(n) + payload
    return head + b"\x7f" + _u64.pack(n) + payload


def frame_head(opcode: int, n: int) -> bytes:
    """The header of one unmasked, final frame of `n` bytes, for a writer that
    sends the payload beside it (`os.writev`) instead of joining them."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 0x7E)) + _u16.pack(n)
    return bytes((0x80 | opcode, 0x7F)) + _u64.pack(n)


def close_frame(code: int, reason: str = "") -> bytes:
    return encode_frame(OP_CLOSE, _u16.pack(code) + reason.encode("utf-8")[:120])


class WsFrameReader:
    """Feed bytes; get binary payload chunks, text markers and control frames."""

    def __init__(self) -> None:
        self._buf = b""
        self._remaining = 0  # payload bytes left in the current frame
        self._mask = b""
        self._offset = 0  # payload bytes of the current frame already read
        self._opcode = 0  # opcode of the current frame (continuations resolved)
        self._in_message = 0  # opcode of the fragmented data message in progress, or 0
        self._control = b""  # payload of the current control frame so far

    def feed(self, data: bytes) -> list[bytes | WsControl | int]:
        """Events in order: `bytes` (binary payload), `OP_TEXT` once per text
        frame, `WsControl` for a whole close/ping/pong frame."""
        buf = self._buf + data if self._buf else data
        view = memoryview(buf)  # payload slices unmasked from it, not copied first
        pos, end = 0, len(buf)
        events: list[bytes | WsControl | int] = []
        append = events.append
        while pos < end:
            # The usual frame first, read with locals only: a final binary frame
            # of up to 65535 bytes that is here whole, outside a fragmented
            # message.  Clients that send each AMQP frame as a WebSocket message
            # (rhea does) make this once per transfer; the general way below
            # costs twice as much per frame.
            if not self._remaining and buf[pos] == 0x82 and not self._in_message:
                b1 = buf[pos + 1] if pos + 1 < end else 0
                if 0x80 < b1 < 0xFE:  # masked, 1 to 125 bytes
                    p, length = pos + 6, b1 - 0x80
                    mask = buf[pos + 2 : p]
                elif b1 == 0xFE:  # masked, 126 to 65535 bytes
                    p = pos + 8
                    length = buf[pos + 2] << 8 | buf[pos + 3] if p <= end else 0
                    mask = buf[pos + 4 : p]
                else:
                    length = 0
                if length and p + length <= end:
                    append(_unmask_whole(view[p : p + length], mask))
                    pos = p + length
                    continue
            if self._remaining:
                n = min(self._remaining, end - pos)
                chunk = unmask(view[pos : pos + n], self._mask, self._offset)
                pos += n
                self._offset += n
                self._remaining -= n
                if self._opcode == OP_BINARY:
                    append(chunk)
                elif self._opcode >= OP_CLOSE:
                    self._control += chunk
                    if not self._remaining:
                        events.append(WsControl(self._opcode, self._control))
                continue
            header = self._header(buf, pos, end, events)
            if header < 0:
                break
            pos = header
        self._buf = buf[pos:] if pos < end else b""
        return events

    def _header(self, buf: bytes, pos: int, end: int, events: list[bytes | WsControl | int]) -> int:
        """Parse one frame header at `pos`; return the offset after it, or -1 if incomplete."""
        if end - pos < 2:
            return -1
        b0, b1 = buf[pos], buf[pos + 1]
        if b0 & 0x70:
            raise WsProtocolError("reserved bits set without an extension")
        if not b1 & 0x80:
            raise WsProtocolError("client frames must be masked")
        need = 2 + 4 + (2 if b1 & 0x7F == 126 else 8 if b1 & 0x7F == 127 else 0)
        if end - pos < need:
            return -1
        fin, opcode, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
        p = pos + 2
        if length == 126:
            length = _u16.unpack_from(buf, p)[0]
            p += 2
        elif length == 127:
            length = _u64.unpack_from(buf, p)[0]
            if length >> 63:
                # §5.2: the most significant bit of a 64-bit length MUST be 0;
                # read as a length, it would make the rest of the connection one frame.
                raise WsProtocolError("64-bit payload length with the most significant bit set")
            p += 8
        self._mask = buf[p : p + 4]
        p += 4
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise WsProtocolError(f"unknown control opcode {opcode}")
            if not fin or length > 125:
                raise WsProtocolError("control frames must be final and at most 125 bytes")
            self._control = b""
            if not length:
                events.append(WsControl(opcode, b""))
        elif opcode == OP_CONTINUATION:
            if not self._in_message:
                raise WsProtocolError("continuation frame outside a message")
            opcode = self._in_message
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._in_message:
                raise WsProtocolError("new message before the previous one ended")
            if opcode == OP_TEXT:
                events.append(OP_TEXT)
        else:
            raise WsProtocolError(f"unknown data opcode {opcode}")
        if opcode < OP_CLOSE:
            self._in_message = 0 if fin else opcode
        self._opcode = opcode
        self._remaining = length
        self._offset = 0
        return p
