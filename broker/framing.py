"""Protocol headers and frames (§2.2, §2.3), parsed incrementally.

`FrameReader` is fed arbitrary chunks of the byte stream and hands out whole
protocol headers and frames; any chunking of the same bytes gives the same
results, with one deliberate exception: a protocol header that goes wrong
(e.g. an HTTP request on the AMQP port) is reported as soon as the first
wrong byte arrives, so its `raw` holds what had arrived by then.  It checks
only the frame header (size, doff, type) — the body is decoded by the engine
— so a peer that declares a 4 GiB frame is refused before we buffer it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from broker.codec.decode import decode
from broker.codec.encode import ENCODERS, encode_into
from broker.errors import FramingError

MIN_MAX_FRAME_SIZE = 512  # §2.7.1: no peer may ask for smaller frames
FRAME_HEADER_SIZE = 8


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


@dataclass(slots=True)  # not frozen: one per frame, and frozen init costs 3x
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
# a part of a read at least this big is kept as a view of the read (which the
# view keeps alive), a smaller one copied
_VIEW_FROM = 16 * 1024


class FrameReader:
    """Incremental frame parser.

    Call `expect_header()` whenever the protocol layer expects a protocol
    header next (at the start, and after a successful SASL outcome).

    Each read is parsed where it lies: a frame that is in it whole becomes its
    body with one copy, and the read itself is never copied into a buffer.
    Only a frame (or header) that a read leaves unfinished is kept, as pieces
    joined once it is whole, so a frame that spans reads is copied once more.
    At 64 KiB messages the old way (every read appended to one buffer, each
    body sliced out of it twice) was five copies of every byte.  A read is
    kept as fed only if it is `bytes` or a view of `bytes` (`feed`).
    """

    def __init__(self, max_frame_size: int = 0xFFFFFFFF) -> None:
        self._data: bytes | memoryview = b""  # the read being parsed, not copied
        self._pos = 0  # where its next frame starts
        self._pieces: list[bytes | bytearray | memoryview] = []  # an unfinished frame's bytes so far
        self._have = 0  # their length
        self._want_header = True
        self._taken = 0  # where the last transfer `take_transfer` took began
        self.max_frame_size = max_frame_size

    def expect_header(self) -> None:
        self._want_header = True
        if self._have:  # (never, from the engine) what is kept begins the header
            self._data, self._pos = self._joined() + bytes(self._data[self._pos:]), 0
            self._pieces, self._have = [], 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse `data` next.  It is kept, not copied, if it is `bytes` or a
        view of `bytes`; anything else (a buffer its owner may reuse) is copied."""
        if type(data) is not bytes and not (type(data) is memoryview and
                                            type(data.obj) is bytes):
            data = bytes(data)
        if self._pos < len(self._data):  # the last read not parsed to its end
            data = bytes(self._data[self._pos:]) + data
        self._data, self._pos = data, 0

    @property
    def buffered(self) -> int:
        return self._have + len(self._data) - self._pos

    def next(self) -> ProtocolHeader | Frame | _NeedData:
        if self._have or self._want_header:
            return self._next_slowly()
        data, pos = self._data, self._pos
        avail = len(data) - pos
        if avail < FRAME_HEADER_SIZE:
            return self._keep()
        size, doff, ftype, channel = _HEADER.unpack_from(data, pos)
        if not FRAME_HEADER_SIZE <= size <= self.max_frame_size or doff < 2 or \
                doff * 4 > size or ftype > 1:
            self._check(size, doff, ftype)  # raises, saying which
        if avail < size:
            return self._keep()
        end = pos + size
        self._pos = end
        if type(data) is bytes:
            return Frame(ftype, channel, data[pos + doff * 4 : end])
        return Frame(ftype, channel, bytes(data[pos + doff * 4 : end]))

    def take_transfer(self) -> tuple[int, TransferFields, bytes] | None:
        """The next frame, if it is a usual transfer (`parse_transfer_at`) whole
        in this read: its channel, fields and payload, the payload the one copy
        made, with no `Frame` and no body between.  Otherwise None, with
        nothing taken: `next()` then hands out the frame (or says what is
        wrong with it).  `untake()` gives the transfer back."""
        if self._have or self._want_header:
            return None
        data, pos = self._data, self._pos
        if len(data) - pos < FRAME_HEADER_SIZE:
            return None
        size, doff, ftype, channel = _HEADER.unpack_from(data, pos)
        end = pos + size
        if ftype or end > len(data) or size > self.max_frame_size or doff < 2 or \
                doff * 4 > size:
            return None
        hot = parse_transfer_at(data, pos + doff * 4, end)
        if hot is None:
            return None
        self._taken, self._pos = pos, end
        start = hot[1]
        if type(data) is bytes:
            return channel, hot[0], data[start:end]
        return channel, hot[0], bytes(data[start:end])

    def untake(self) -> None:
        """Give back the transfer the call just before took, for `next()`."""
        self._pos = self._taken

    def _check(self, size: int, doff: int, ftype: int) -> None:
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

    def _keep(self) -> _NeedData:
        """The rest of the read begins a frame that a later read finishes."""
        data, pos = self._data, self._pos
        if pos < len(data):
            self._add(data, pos, len(data))
        self._data, self._pos = b"", 0
        return NEED_DATA

    def _take(self, n: int) -> bool:
        """Move up to `n` bytes of the read into the pieces; True if all `n` came."""
        data, pos = self._data, self._pos
        got = min(n, len(data) - pos)
        if got:
            self._add(data, pos, pos + got)
            self._pos = pos + got
        return got == n

    def _add(self, data: bytes | memoryview, start: int, end: int) -> None:
        """Keep `data[start:end]`: a big part of a read as a view of it (no
        copy), the rest copied into a buffer that later small parts join, so
        a frame sent a few bytes at a time is one buffer, not a list of them."""
        pieces = self._pieces
        if end - start >= _VIEW_FROM:  # (what is fed is bytes or a view of bytes)
            pieces.append(memoryview(data)[start:end])
        elif pieces and type(pieces[-1]) is bytearray:
            pieces[-1] += data[start:end]
        else:
            pieces.append(bytearray(data[start:end]))
        self._have += end - start

    def _joined(self) -> bytes:
        whole = b"".join(self._pieces)
        self._pieces = [whole]
        return whole

    def _next_slowly(self) -> ProtocolHeader | Frame | _NeedData:
        """A protocol header, or a frame begun in an earlier read."""
        if self._want_header:
            if not self._take(8 - self._have):
                raw = self._joined()
                # Fail fast on bytes that can never start a header.
                if raw[:4] != b"AMQP"[: len(raw)]:
                    return self._header(raw)
                return self._keep()
            return self._header(self._joined())
        if self._have < FRAME_HEADER_SIZE and not self._take(FRAME_HEADER_SIZE - self._have):
            return self._keep()
        first = self._pieces[0]
        if len(first) < FRAME_HEADER_SIZE:
            first = self._joined()
        size, doff, ftype, channel = _HEADER.unpack_from(first, 0)
        self._check(size, doff, ftype)
        if not self._take(size - self._have):
            return self._keep()
        skip = doff * 4
        pieces = self._pieces
        if len(pieces[0]) >= skip:
            pieces[0] = memoryview(pieces[0])[skip:]
            body = b"".join(pieces)
        else:  # an extended header longer than the first piece
            body = b"".join(pieces)[skip:]
        self._pieces, self._have = [], 0
        return Frame(ftype, channel, body)

    def _header(self, raw: bytes) -> ProtocolHeader:
        self._pieces, self._have = [], 0
        self._want_header = False
        return ProtocolHeader(bytes(raw))


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
    try:
        ENCODERS.get(type(performative), encode_into)(out, performative)
    except BaseException:
        del out[start:]  # no half frame may stay for the close that follows
        raise
    out += payload
    out[start : start + 4] = (len(out) - start).to_bytes(4, "big")


HEARTBEAT = b"\x00\x00\x00\x08\x02\x00\x00\x00"
# A read of nothing but empty frames, which Connection.receive_data calls bare:
# one, or two (the read after a socket let the kernel hold one back).  Compared
# with ==, never hashed: a read's hash would cost a pass over its bytes.
BARE_HEARTBEATS = (HEARTBEAT, HEARTBEAT * 2)
# Between frames, fewer bytes than this can only be an empty frame, or the
# start of a frame whose rest is still to come: every other frame is at least
# 12 bytes (its header, a descriptor, an empty list).  So a socket between
# frames may wait for this many (SO_RCVLOWAT) and delay nothing but a heartbeat.
HOLD_BACK_LOWAT = len(HEARTBEAT) + 1

_u32 = struct.Struct(">I").pack
_FRAME_HEADER = struct.Struct(">IBBH").pack
# uint encodings of 0..255 (uint0 / smalluint), precomputed for the hot path
_SMALL_UINT = [b"\x43"] + [bytes((0x52, i)) for i in range(1, 256)]
_BYTE = [bytes((i,)) for i in range(256)]
_TRANSFER_LIST_HEAD = b"\x00\x53\x14\xc0"  # described transfer, list8
# frame header, described transfer, list8 size and count (5 fields: no `more`)
_TRANSFER_HEAD = struct.Struct(">IBBHBBBBBB").pack
_UINT_AND_TAG_HEAD = struct.Struct(">BIBB").pack  # uint delivery-id, vbin8 tag's code and size


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
    """Hot path: one transfer frame, written by hand.

    The same bytes as `encode_frame` with `Transfer(handle, delivery_id,
    delivery_tag, message_format, settled, more)`: most compact encodings,
    `more` omitted when false.  Delivery tags are at most 32 bytes (§2.8.7),
    so the field list always fits a list8."""
    if delivery_id > 255 and handle < 256 and not message_format and not more:
        # the usual frame: two packs and the tag and payload, no join
        h = _SMALL_UINT[handle]
        n = len(h) + 9 + len(tag)
        out += _TRANSFER_HEAD(n + 14 + len(payload), 2, 0, channel, 0, 0x53, 0x14, 0xC0, n + 1, 5)
        out += h
        out += _UINT_AND_TAG_HEAD(0x70, delivery_id, 0xA0, len(tag))
        out += tag
        out += b"\x43\x41" if settled else b"\x43\x42"
        out += payload
        return
    fields = b"".join((
        _SMALL_UINT[handle] if handle < 256 else b"\x70" + _u32(handle),
        _SMALL_UINT[delivery_id] if delivery_id < 256 else b"\x70" + _u32(delivery_id),
        b"\xa0", _BYTE[len(tag)], tag,
        _SMALL_UINT[message_format] if message_format < 256 else b"\x70" + _u32(message_format),
        b"\x41" if settled else b"\x42",
        b"\x41" if more else b"",
    ))
    n = len(fields)
    out += _FRAME_HEADER(n + 14 + len(payload), 2, 0, channel)
    out += _TRANSFER_LIST_HEAD
    out.append(n + 1)
    out.append(6 if more else 5)
    out += fields
    out += payload


# encode_transfer_frame's usual frame up to the payload, for a handle whose
# smalluint form is 1 or 2 bytes: size, the fixed part, delivery-id, vbin8, tag, format+settled
_RUN_HEADS = {k: struct.Struct(f">I{k + 11}sIBB16s2s").pack for k in (1, 2)}


class TransferRun:
    """What a run of one-frame transfers on one link (16-byte tags, delivery
    ids above 255) shares: `pack(size + len(payload), fixed, delivery_id,
    0xA0, 16, tag, tail)` gives the bytes `encode_transfer_frame` writes
    before the payload, in one pack instead of a call."""

    __slots__ = ("fixed", "pack", "size", "tail")

    def __init__(self, channel: int, handle: int, settled: bool) -> None:
        h = _SMALL_UINT[handle]
        n = len(h) + 9 + 16
        # the frame header after its size, the transfer's descriptor and list8
        # head, the handle, the uint code of the delivery-id
        self.fixed = struct.pack(">BBHBBBBBB", 2, 0, channel, 0, 0x53, 0x14, 0xC0, n + 1, 5) \
            + h + b"\x70"
        self.pack = _RUN_HEADS[len(h)]
        self.size = n + 14
        self.tail = b"\x43\x41" if settled else b"\x43\x42"


class TransferFields:
    """The fields of a common transfer, read by `parse_transfer` (same names as `Transfer`)."""

    __slots__ = ("delivery_id", "delivery_tag", "handle", "message_format", "more", "settled")
    aborted = False
    state = None
    resume = False

    def __init__(self, handle: int, delivery_id: int | None, delivery_tag: bytes | None,
                 message_format: int | None, settled: bool | None, more: bool) -> None:
        self.handle = handle
        self.delivery_id = delivery_id
        self.delivery_tag = delivery_tag
        self.message_format = message_format
        self.settled = settled
        self.more = more


_u32_from = struct.Struct(">I").unpack_from
_two_u32_from = struct.Struct(">II").unpack_from
_TRANSFER_PREFIX = b"\x00\x53\x14\xc0"  # the transfer descriptor, its fields a list8
_TRANSFER_PREFIX32 = b"\x00\x53\x14\xd0"  # ... a list32 (rhea writes every list so)


# What a transfer carries after its tag (message-format, settled, more and
# the null or false fields after them) is the same few bytes message after
# message, so each such tail is read once (`_tail_shape`) and remembered.
# A shape is (fields in the tail, message-format, settled, more); `_NOT_HOT`
# for a tail the hot path leaves to the decoder, which is not remembered.
# At most `_TAILS_MAX` tails of at most `_TAIL_MAX` bytes (a uint format, two
# booleans, five nulls) are kept; a full table starts over, so a peer
# writing ever new ones costs the remembering, never the memory or others'
# speed for long.
_Shape = tuple[int, int | None, bool | None, bool]
_NOT_HOT: _Shape = (-1, None, None, False)
_TAILS: dict[bytes, _Shape] = {}
_TAILS_MAX = 256
_TAIL_MAX = 5 + 2 + 5


def _tail_shape(tail: bytes) -> _Shape:
    """Read a transfer's fields after its tag, as `parse_transfer` takes them:
    a small uint or null format, booleans or null for settled and more, null
    for rcv-settle-mode and state, null or false for resume, aborted and
    batchable (the decoder refuses a boolean in the first two)."""
    fields = 0
    message_format: int | None = None
    settled: bool | None = None
    more = False
    pos = 0
    try:
        while pos < len(tail):
            c = tail[pos]
            if fields == 0:  # message-format
                message_format, pos = _small_uint(tail, pos)
            elif fields <= 2:  # settled, more
                if c not in (0x41, 0x42, 0x40):
                    return _NOT_HOT
                if fields == 1:
                    settled = None if c == 0x40 else c == 0x41
                else:
                    more = c == 0x41
                pos += 1
            elif (c == 0x40 and fields < 8) or (c == 0x42 and 5 <= fields < 8):
                pos += 1  # null anywhere; false only in resume, aborted, batchable
            else:
                return _NOT_HOT
            fields += 1
    except (IndexError, ValueError, struct.error):
        return _NOT_HOT
    if pos != len(tail):
        return _NOT_HOT
    return fields, message_format, settled, more


def _small_uint(buf: bytes | memoryview, pos: int) -> tuple[int | None, int]:
    """A uint as the hot path takes it (uint0, smalluint, uint; or null) and
    the offset after it; ValueError for anything else.  `parse_transfer`
    spells it out for the handle and the delivery-id: a call per field was a
    third of its time."""
    c = buf[pos]
    if c == 0x52:
        return buf[pos + 1], pos + 2
    if c == 0x43:
        return 0, pos + 1
    if c == 0x70:
        return _u32_from(buf, pos + 1)[0], pos + 5
    if c == 0x40:
        return None, pos + 1
    raise ValueError(f"not a small uint: 0x{c:02x}")


def parse_transfer(body: bytes) -> tuple[TransferFields, bytes] | None:
    """Hot path: read a transfer frame body written the usual way.

    Handles the shape every client we know sends (handle, delivery-id, tag,
    format, settled, more as small uints/booleans/binary, later fields null
    or false), in a list8 or, as rhea (and so every browser client) writes
    it, a list32.  Anything else returns None and goes through the generic
    decoder, which also produces the precise error for malformed input.
    The small uints are read inline (a call each would be a third of the
    time), and what follows the tag is looked up (`_TAILS`).
    """
    hot = parse_transfer_at(body, 0, len(body))
    return None if hot is None else (hot[0], body[hot[1]:])


def parse_transfer_at(buf: bytes | memoryview, start: int,
                      stop: int) -> tuple[TransferFields, int] | None:
    """`parse_transfer` of the body `buf[start:stop]` where it lies, in the
    read it came in (`FrameReader.take_transfer`): the fields, and where the
    payload starts.  A read past `stop` finds other bytes, not an IndexError,
    but every read moves `pos` on, so one past the fields' end fails the
    `pos > end` check as surely."""
    prefix = buf[start : start + 4]
    try:
        if prefix == _TRANSFER_PREFIX:
            end = start + 5 + buf[start + 4]
            count = buf[start + 5]
            pos = start + 6
        elif prefix == _TRANSFER_PREFIX32:
            size, count = _two_u32_from(buf, start + 4)
            end = start + 8 + size
            pos = start + 12
        else:
            return None
        if end > stop or not 0 < count <= 11:  # a transfer has 11 fields
            return None
        c = buf[pos]  # the handle and the delivery-id: _small_uint, spelled out
        if c == 0x52:
            handle, pos = buf[pos + 1], pos + 2
        elif c == 0x43:
            handle, pos = 0, pos + 1
        elif c == 0x70:
            handle, pos = _u32_from(buf, pos + 1)[0], pos + 5
        else:
            return None
        delivery_id = tag = None
        if count > 1:
            c = buf[pos]
            if c == 0x52:
                delivery_id, pos = buf[pos + 1], pos + 2
            elif c == 0x70:
                delivery_id, pos = _u32_from(buf, pos + 1)[0], pos + 5
            elif c == 0x43:
                delivery_id, pos = 0, pos + 1
            elif c == 0x40:
                pos += 1
            else:
                return None
        if count > 2:
            c = buf[pos]
            if c == 0xA0:
                n = buf[pos + 1]
                tag = buf[pos + 2 : pos + 2 + n]
                pos += 2 + n
            elif c == 0x40:
                pos += 1
            else:
                return None
    except (IndexError, struct.error):
        return None
    if pos > end or end - pos > _TAIL_MAX:
        return None
    tail = buf[pos:end]
    if type(tail) is not bytes:
        # a view is hashed only once the whole object under it is: here the
        # whole read, 64 KiB hashed once per read (callgrind: 5k instructions
        # per 4 KiB message through a socket)
        tail = bytes(tail)
    shape = _TAILS.get(tail)
    if shape is None:
        shape = _tail_shape(tail)
        if shape is _NOT_HOT:
            return None
        if len(_TAILS) >= _TAILS_MAX:
            _TAILS.clear()
        _TAILS[tail] = shape
    if shape[0] != (count - 3 if count > 3 else 0):
        return None
    if type(tag) is memoryview:
        tag = bytes(tag)
    return TransferFields(handle, delivery_id, tag, shape[1], shape[2], shape[3]), end
