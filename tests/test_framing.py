"""FrameReader (§2.2 protocol headers, §2.3 frames), encode_frame and decode_frame_body.

Every reader case runs three ways: the bytes fed whole, fed one byte at a
time, and fed whole followed by the start of another frame (trailing data
that must stay buffered, never misread).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import framing
from broker.codec.messaging import Accepted
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Flow,
    Open,
    Role,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
)
from broker.codec.types import Symbol
from broker.errors import DecodeError, FramingError
from broker.framing import (
    AMQP_HEADER,
    HEARTBEAT,
    NEED_DATA,
    SASL_HEADER,
    TLS_HEADER,
    Frame,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
    encode_frame,
    parse_transfer,
    parse_transfer_at,
)

MODES = ["whole", "bytewise", "trailing"]
TRAILING = b"\x00\x00\x01\x00\x02\x00"  # the first 6 bytes of a 256-byte frame header


def frame(
    body: bytes, channel: int = 0, ftype: int = 0, doff: int = 2, ext: bytes | None = None
) -> bytes:
    """A raw frame; `ext` is the extended header (defaults to zeros filling doff)."""
    ext = bytes(doff * 4 - 8) if ext is None else ext
    return struct.pack(">IBBH", 8 + len(ext) + len(body), doff, ftype, channel) + ext + body


def raw_header(size: int, doff: int = 2, ftype: int = 0, channel: int = 0) -> bytes:
    return struct.pack(">IBBH", size, doff, ftype, channel)


def read(
    stream: bytes,
    mode: str,
    *,
    max_frame_size: int = 0xFFFFFFFF,
    header_first: bool = True,
    expect_header_after: type | None = None,
) -> list[object]:
    """Feed `stream` in `mode`; return what the reader handed out, then
    ("FramingError", message) if it raised.  `expect_header_after`: call
    expect_header() after handing out a frame whose performative has that type
    (the way the engine does after a SASL outcome)."""
    reader = FrameReader(max_frame_size)
    if not header_first:
        reader._want_header = False
    chunks: list[bytes]
    if mode == "bytewise":
        chunks = [stream[i : i + 1] for i in range(len(stream))]
    elif mode == "trailing":
        chunks = [stream + TRAILING]
    else:
        chunks = [stream]
    got: list[object] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (item := reader.next()) is not NEED_DATA:
                got.append(item)
                if (
                    expect_header_after is not None
                    and isinstance(item, Frame)
                    and item.body
                    and isinstance(decode_frame_body(item.body)[0], expect_header_after)
                ):
                    reader.expect_header()
    except FramingError as exc:
        got.append(("FramingError", str(exc)))
        return got
    if mode == "trailing":
        assert reader.buffered == len(TRAILING), "trailing bytes must stay buffered"
    else:
        assert reader.buffered == 0
    assert reader.next() is NEED_DATA
    return got


# --- protocol headers --------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("raw", "protocol_id"),
    [(AMQP_HEADER, 0), (SASL_HEADER, 3), (TLS_HEADER, 2)],
    ids=["amqp", "sasl", "tls"],
)
def test_protocol_headers(mode: str, raw: bytes, protocol_id: int) -> None:
    [header] = read(raw, mode)
    assert header == ProtocolHeader(raw)
    assert header.is_valid  # type: ignore[attr-defined]
    assert header.protocol_id == protocol_id  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_header_then_frames(mode: str) -> None:
    stream = AMQP_HEADER + HEARTBEAT + frame(b"\x00\x53\x18\x45")
    assert read(stream, mode) == [
        ProtocolHeader(AMQP_HEADER),
        Frame(0, 0, b""),
        Frame(0, 0, b"\x00\x53\x18\x45"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "raw",
    [b"AMQP\x00\x00\x09\x01", b"AMQP\x00\x01\x00\x01", b"AMQP\x00\x02\x00\x00"],
    ids=["amqp-0-9-1", "revision-1", "major-2"],
)
def test_bad_version_header_reported_whole(mode: str, raw: bytes) -> None:
    """Starts like AMQP: the reader waits for all 8 bytes and reports them."""
    [header] = read(raw, mode)
    assert header == ProtocolHeader(raw)
    assert not header.is_valid  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "raw",
    [b"HTTP/1.1 200 OK\r\n", b"GET / HTTP/1.1\r\n", b"AMQX\x00\x01\x00\x00"],
    ids=["http-response", "http-request", "amqx"],
)
def test_bad_header_reported_with_the_bytes_received(mode: str, raw: bytes) -> None:
    """Bytes that cannot start `AMQP` fail fast: the reader reports what it has
    (8 bytes when fed whole, just the bytes up to the first wrong one when
    fed a byte at a time) instead of waiting for a full header."""
    reader = FrameReader()
    if mode == "bytewise":
        for i in range(len(raw)):
            reader.feed(raw[i : i + 1])
            item = reader.next()
            if item is not NEED_DATA:
                break
        wrong = next(i for i in range(4) if raw[i] != b"AMQP"[i])
        assert item == ProtocolHeader(raw[: wrong + 1])
    else:
        reader.feed(raw + (TRAILING if mode == "trailing" else b""))
        item = reader.next()
        assert item == ProtocolHeader(raw[:8])
    assert not item.is_valid  # type: ignore[union-attr]
    assert raw.startswith(item.raw)  # type: ignore[union-attr]


def test_short_garbage_is_reported_before_eight_bytes() -> None:
    reader = FrameReader()
    reader.feed(b"\x16\x03")  # a TLS ClientHello without the AMQP TLS header
    item = reader.next()
    assert item == ProtocolHeader(b"\x16\x03") and not item.is_valid  # type: ignore[union-attr]


def test_partial_amqp_prefix_waits() -> None:
    reader = FrameReader()
    for b in b"AMQP\x00\x01\x00":
        reader.feed(bytes([b]))
        assert reader.next() is NEED_DATA
    reader.feed(b"\x00")
    assert reader.next() == ProtocolHeader(AMQP_HEADER)


# --- frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_heartbeat(mode: str) -> None:
    assert HEARTBEAT == frame(b"")
    assert read(HEARTBEAT * 3, mode, header_first=False) == [Frame(0, 0, b"")] * 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("doff", [3, 4, 255])
def test_extended_header_is_skipped(mode: str, doff: int) -> None:
    ext = bytes(i % 256 for i in range(doff * 4 - 8))
    body = b"\x00\x53\x17\x45"
    stream = frame(body, channel=5, doff=doff, ext=ext) + frame(b"", channel=6, doff=doff)
    assert read(stream, mode, header_first=False) == [Frame(0, 5, body), Frame(0, 6, b"")]


@pytest.mark.parametrize("mode", MODES)
def test_frame_whose_body_is_all_extended_header(mode: str) -> None:
    assert read(raw_header(12, doff=3) + b"xxxx", mode, header_first=False) == [Frame(0, 0, b"")]


PERFORMATIVE_FRAMES = [
    (0, Open(container_id="c", max_frame_size=4096), b""),
    (0, Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10), b""),
    (1, Attach(name="l", handle=0, role=Role.SENDER), b""),
    (
        1,
        Flow(incoming_window=10, next_outgoing_id=0, outgoing_window=10, handle=0, link_credit=5),
        b"",
    ),
    (
        1,
        Transfer(handle=0, delivery_id=0, delivery_tag=b"t", more=True),
        b"\x00\x53\x75\xa0\x03abc",
    ),
    (1, Transfer(handle=0), b"x" * 300),
    (1, Disposition(role=Role.RECEIVER, first=0, settled=True, state=Accepted()), b""),
    (1, Detach(handle=0, closed=True), b""),
    (65535, End(), b""),
    (0, Close(), b""),
]


@pytest.mark.parametrize("mode", MODES)
def test_frames_of_several_performatives(mode: str) -> None:
    out = bytearray(AMQP_HEADER)
    for channel, performative, payload in PERFORMATIVE_FRAMES:
        encode_frame(out, channel, performative, payload)
        out += HEARTBEAT
    items = read(bytes(out), mode)
    assert items[0] == ProtocolHeader(AMQP_HEADER)
    frames = [i for i in items[1:] if isinstance(i, Frame) and i.body]
    assert len(items) == 1 + 2 * len(PERFORMATIVE_FRAMES)
    for f, (channel, performative, payload) in zip(frames, PERFORMATIVE_FRAMES):
        assert (f.type, f.channel) == (0, channel)
        assert decode_frame_body(f.body) == (performative, payload)


@pytest.mark.parametrize("mode", MODES)
def test_sasl_then_amqp(mode: str) -> None:
    """SASL header and frames, then (after the outcome) the AMQP header and frames."""
    out = bytearray(SASL_HEADER)
    encode_frame(out, 0, SaslMechanisms(sasl_server_mechanisms=(Symbol("ANONYMOUS"),)), ftype=1)
    encode_frame(out, 0, SaslInit(mechanism=Symbol("ANONYMOUS")), ftype=1)
    encode_frame(out, 0, SaslOutcome(code=0), ftype=1)
    out += AMQP_HEADER
    encode_frame(out, 0, Open(container_id="c"))
    items = read(bytes(out), mode, expect_header_after=SaslOutcome)
    assert [type(i) for i in items] == [ProtocolHeader, Frame, Frame, Frame, ProtocolHeader, Frame]
    assert items[0] == ProtocolHeader(SASL_HEADER) and items[4] == ProtocolHeader(AMQP_HEADER)
    assert [i.type for i in items if isinstance(i, Frame)] == [1, 1, 1, 0]
    assert decode_frame_body(items[5].body)[0] == Open(container_id="c")  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
def test_frame_of_exactly_max_frame_size(mode: str) -> None:
    stream = frame(b"\x00" * 504)  # 512 bytes
    assert read(stream, mode, max_frame_size=512, header_first=False) == [
        Frame(0, 0, b"\x00" * 504)
    ]


# --- framing errors -----------------------------------------------------------------------

BAD_FRAMES = [
    ("size 0", raw_header(0), "smaller than"),
    ("size 7", raw_header(7), "smaller than"),
    ("doff 0", raw_header(8, doff=0), "less than 2"),
    ("doff 1", raw_header(16, doff=1) + bytes(8), "less than 2"),
    ("doff beyond size", raw_header(8, doff=3), "beyond the frame size"),
    ("doff 255 in a small frame", raw_header(100, doff=255) + bytes(92), "beyond the frame size"),
    ("frame type 2", raw_header(8, ftype=2), "unknown frame type"),
    ("frame type 0xff", raw_header(12, ftype=0xFF) + b"\x00\x53\x18\x45", "unknown frame type"),
    ("above max-frame-size", raw_header(513), "exceeds the max-frame-size"),
    ("4 GiB frame", raw_header(0xFFFFFFFF), "exceeds the max-frame-size"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "data", "match"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_bad_frame_header_is_a_framing_error(mode: str, name: str, data: bytes, match: str) -> None:
    """Raised as soon as the 8-byte frame header is in: a good frame before it
    comes out first, and the reader never waits for the bad frame's body."""
    got = read(AMQP_HEADER + HEARTBEAT + data[:8], mode, max_frame_size=512)
    assert got[:2] == [ProtocolHeader(AMQP_HEADER), Frame(0, 0, b"")]
    assert len(got) == 3 and got[2][0] == "FramingError"  # type: ignore[index]
    assert match in got[2][1]  # type: ignore[index]


def test_declared_size_is_not_buffered_ahead() -> None:
    """A 4 GiB frame within max-frame-size only makes the reader wait."""
    reader = FrameReader()
    reader.feed(AMQP_HEADER + raw_header(0xFFFFFFFF) + b"abc")
    assert reader.next() == ProtocolHeader(AMQP_HEADER)
    assert reader.next() is NEED_DATA
    assert reader.buffered == 11


def test_many_frames_through_buffer_compaction() -> None:
    """Enough data to make the reader compact its buffer, in odd-sized chunks."""
    frames = [frame(bytes([i % 256]) * (i % 200), channel=i % 7) for i in range(3000)]
    stream = b"".join(frames)
    reader = FrameReader()
    reader._want_header = False
    got: list[object] = []
    for i in range(0, len(stream), 997):
        reader.feed(stream[i : i + 997])
        while (item := reader.next()) is not NEED_DATA:
            got.append(item)
    assert got == [Frame(0, i % 7, bytes([i % 256]) * (i % 200)) for i in range(3000)]
    assert reader.buffered == 0


@pytest.mark.parametrize("read_size", [65536, 70000, 16384, 8191])
@pytest.mark.parametrize("as_view", [False, True])
def test_big_frames_across_reads(read_size: int, as_view: bool) -> None:
    """64 KiB frames in reads of about that size (what a socket hands over):
    frames whole in a read, begun in one and ended in the next, and spanning
    several; the reads as bytes or, as the pump feeds a long read in turns,
    as views of them."""
    bodies = [bytes([i]) * n for i, n in enumerate([65536, 3, 65536, 200000, 17, 70000])]
    stream = b"".join(frame(b, channel=i) for i, b in enumerate(bodies))
    reader = FrameReader()
    reader._want_header = False
    got: list[object] = []
    for i in range(0, len(stream), read_size):
        piece = stream[i : i + read_size]
        reader.feed(memoryview(piece) if as_view else piece)
        while (item := reader.next()) is not NEED_DATA:
            assert type(item.body) is bytes  # type: ignore[union-attr]
            got.append(item)
    assert got == [Frame(0, i, b) for i, b in enumerate(bodies)]
    assert reader.buffered == 0


@pytest.mark.parametrize("wrap", [bytearray, lambda b: memoryview(bytearray(b))],
                         ids=["bytearray", "view-of-bytearray"])
def test_a_buffer_its_owner_may_reuse_is_copied_when_fed(wrap: object) -> None:
    """Only bytes (or a view of bytes) are kept as fed: a bytearray changed
    after the feed must not change what is read, and a transfer in one is
    read as from bytes (not hashed as a buffer)."""
    reader = FrameReader()
    reader._want_header = False
    data = frame(b"ABCD") + frame(transfer_body(Transfer(handle=0, delivery_id=1,
                                                         delivery_tag=b"t"), b"pay"))
    buf = wrap(data)  # type: ignore[operator]
    reader.feed(buf)
    buf[8:12] = b"XXXX"
    assert reader.next() == Frame(0, 0, b"ABCD")
    hot = reader.take_transfer()
    assert hot is not None and hot[2] == b"pay"


def test_a_header_expected_after_a_kept_partial_frame_begins_with_it() -> None:
    """As the old reader did (the engine never asks so): what is kept, here
    more than a header's 8 bytes, is the start of the header."""
    reader = FrameReader()
    reader._want_header = False
    partial = frame(b"y" * 30)
    reader.feed(partial[:12])
    assert reader.next() is NEED_DATA
    reader.expect_header()
    reader.feed(partial[12:])
    assert reader.next() == ProtocolHeader(partial[:8])
    assert reader.buffered == len(partial) - 8


def test_a_frame_sent_a_byte_at_a_time_is_kept_in_one_buffer() -> None:
    """A slow sender's bytes are not kept as one object each."""
    reader = FrameReader()
    reader._want_header = False
    data = frame(b"z" * 5000)
    for i in range(len(data) - 1):
        reader.feed(data[i : i + 1])
        assert reader.next() is NEED_DATA
    assert len(reader._pieces) <= 2 and reader.buffered == len(data) - 1
    reader.feed(data[-1:])
    assert reader.next() == Frame(0, 0, b"z" * 5000)


def test_a_read_not_parsed_to_its_end_is_kept_before_the_next() -> None:
    """The engine stops asking once its connection is done; what it left
    comes before the next read's bytes if it is fed again."""
    reader = FrameReader()
    reader._want_header = False
    three, four = frame(b"three"), frame(b"four")
    reader.feed(frame(b"one") + frame(b"two") + three[:5])
    assert reader.next() == Frame(0, 0, b"one")
    reader.feed(three[5:] + four[:3])
    assert [reader.next(), reader.next()] == [Frame(0, 0, b"two"), Frame(0, 0, b"three")]
    assert reader.next() is NEED_DATA
    reader.feed(four[3:])
    assert reader.next() == Frame(0, 0, b"four")
    assert reader.buffered == 0


# --- encode_frame and decode_frame_body ---------------------------------------------------


def test_encode_frame_golden() -> None:
    out = bytearray()
    encode_frame(out, 0, Open(container_id="c"))
    assert out.hex(" ") == "00 00 00 11 02 00 00 00 00 53 10 c0 04 01 a1 01 63"
    out = bytearray(b"prefix")
    encode_frame(out, 0, SaslOutcome(code=0), ftype=1)
    assert out[6:].hex(" ") == "00 00 00 10 02 01 00 00 00 53 44 c0 03 01 50 00"
    out = bytearray()
    encode_frame(out, 0x1234, Transfer(handle=1), b"PAY")
    assert out.hex(" ") == "00 00 00 13 02 00 12 34 00 53 14 c0 03 01 52 01 50 41 59"


def test_decode_frame_body_splits_payload() -> None:
    assert decode_frame_body(bytes.fromhex("00 53 14 c0 03 01 52 01") + b"PAY") == (
        Transfer(handle=1),
        b"PAY",
    )
    assert decode_frame_body(bytes.fromhex("00 53 18 45")) == (Close(), b"")


@pytest.mark.parametrize(
    "body", [b"", b"\x00", b"\x00\x53", b"\x00\x53\x10\xc0\x04\x01\xa1\x01", b"\xff"]
)
def test_decode_frame_body_errors(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_frame_body(body)


def test_a_frame_that_cannot_be_encoded_leaves_nothing_behind() -> None:
    # found by `make fuzz`: a half-written frame header stayed in the output, and
    # the close(internal-error) after it reached the peer as garbage
    from broker.codec.performatives import Flow
    from broker.errors import EncodeError
    from broker.framing import encode_frame

    out = bytearray(b"before")
    with pytest.raises(EncodeError):
        encode_frame(out, 0, Flow(next_incoming_id=0, incoming_window=1, next_outgoing_id=0,
                                  outgoing_window=1, handle=0, link_credit=2**32 + 5))
    assert out == b"before"


# -- the transfer hot path ------------------------------------------------------------


def vars_of(hot: tuple[object, int] | None) -> object:
    """A `parse_transfer_at` answer as plain values, to compare two."""
    if hot is None:
        return None
    fields, start = hot
    return ({name: getattr(fields, name) for name in ("handle", "delivery_id", "delivery_tag",
                                                      "message_format", "settled", "more")},
            start)


def as_list32(body: bytes) -> bytes:
    """A transfer body of ours (its fields a list8) with the fields in a list32,
    as rhea writes every list."""
    assert body[:4] == b"\x00\x53\x14\xc0"
    end = 5 + body[4]
    count, fields = body[5], body[6:end]
    return b"\x00\x53\x14\xd0" + struct.pack(">II", len(fields) + 4, count) + fields + body[end:]


def transfer_body(transfer: Transfer, payload: bytes = b"PAY") -> bytes:
    out = bytearray()
    encode_frame(out, 0, transfer, payload)
    return bytes(out[8:])


HOT_TRANSFERS = [
    Transfer(handle=1),
    Transfer(handle=0, delivery_id=7, delivery_tag=b"0", message_format=0, settled=False,
             more=False),
    Transfer(handle=300, delivery_id=70000, delivery_tag=b"\x00" * 16, message_format=0,
             settled=True, more=True),
    Transfer(handle=2, delivery_id=5, delivery_tag=b"t", settled=None, more=False,
             batchable=False),
]


@pytest.mark.parametrize("transfer", HOT_TRANSFERS)
@pytest.mark.parametrize("form", ["list8", "list32"])
def test_parse_transfer_reads_what_the_decoder_reads(transfer: Transfer, form: str) -> None:
    body = transfer_body(transfer)
    if form == "list32":
        body = as_list32(body)
    decoded, payload = decode_frame_body(body)
    parsed = parse_transfer(body)
    assert parsed is not None, "a usual transfer takes the hot path"
    fields, rest = parsed
    assert rest == payload == b"PAY"
    for name in ("handle", "delivery_id", "delivery_tag", "message_format", "settled", "more"):
        assert getattr(fields, name) == getattr(decoded, name), name


@pytest.mark.parametrize("as_view", [False, True])
def test_take_transfer_takes_usual_transfers_whole_in_the_read(as_view: bool) -> None:
    """Transfers whole in the read come out with their payloads; anything else
    (another performative, a frame the read cuts short) is left to next()."""
    t1 = frame(transfer_body(Transfer(handle=0, delivery_id=1, delivery_tag=b"a"), b"one"))
    flow = frame(b"\x00\x53\x13\x45", channel=3)  # not a transfer
    t2 = frame(transfer_body(Transfer(handle=1, delivery_id=2, delivery_tag=b"b"), b"two"),
               channel=2)
    t3 = frame(transfer_body(Transfer(handle=0, delivery_id=3, delivery_tag=b"c"), b"three"))
    reader = FrameReader()
    reader._want_header = False
    read = t1 + flow + t2 + t3[:9]
    reader.feed(memoryview(read) if as_view else read)
    channel, fields, payload = reader.take_transfer()  # type: ignore[misc]
    assert (channel, fields.delivery_id, fields.delivery_tag, payload) == (0, 1, b"a", b"one")
    assert type(payload) is bytes
    assert reader.take_transfer() is None
    assert reader.next() == Frame(0, 3, b"\x00\x53\x13\x45")
    hot = reader.take_transfer()
    assert hot is not None and (hot[0], hot[2]) == (2, b"two")
    reader.untake()  # given back: next() hands out the same frame
    again = reader.next()
    assert isinstance(again, Frame) and again.channel == 2
    assert parse_transfer(again.body)[1] == b"two"  # type: ignore[index]
    assert reader.take_transfer() is None  # cut short: kept for the next read
    assert reader.next() is NEED_DATA
    reader.feed(t3[9:])
    assert reader.take_transfer() is None  # in two reads: next() joins it
    last = reader.next()
    assert isinstance(last, Frame) and parse_transfer(last.body)[1] == b"three"  # type: ignore[index]


def test_a_transfer_read_from_a_view_never_hashes_the_read() -> None:
    """Hashing a view hashes the whole object under it first (the 64 KiB
    read, once per read): the tail looked up must be bytes of its own."""

    class Unhashable(bytes):
        def __hash__(self) -> int:
            raise AssertionError("the read was hashed")

    body = transfer_body(Transfer(handle=0, delivery_id=9, delivery_tag=b"v", settled=True),
                         b"p")
    read = memoryview(Unhashable(b"\x00" * 5 + body))
    hot = parse_transfer_at(read, 5, 5 + len(body))
    assert hot is not None and hot[0].delivery_id == 9


def test_take_transfer_leaves_a_bad_frame_header_to_next() -> None:
    reader = FrameReader(max_frame_size=512)
    reader._want_header = False
    reader.feed(raw_header(600) + b"\x00" * 592)
    assert reader.take_transfer() is None
    with pytest.raises(FramingError, match="exceeds the max-frame-size"):
        reader.next()


@pytest.mark.parametrize("body", [
    # a list32 whose size runs past the body, or is cut short
    b"\x00\x53\x14\xd0\x00\x00\x00\x09\x00\x00\x00\x01\x43",
    b"\x00\x53\x14\xd0\x00\x00",
    # a list32 with no fields, or a field the hot path does not read (a state)
    b"\x00\x53\x14\xd0\x00\x00\x00\x04\x00\x00\x00\x00",
    as_list32(transfer_body(Transfer(handle=1, state=Accepted()))),
    # more fields than a transfer has, however they look
    b"\x00\x53\x14\xd0\x00\x00\x00\x10\x00\x00\x00\x0c\x43" + b"\x40" * 11,
])
def test_parse_transfer_leaves_other_shapes_to_the_decoder(body: bytes) -> None:
    assert parse_transfer(body) is None


def test_parse_transfer_remembers_a_bounded_number_of_tails() -> None:
    """What follows the tag is remembered per distinct bytes, at most
    _TAILS_MAX of them: a peer writing a new message-format every time fills
    the table, and is still read right once it is full."""
    for message_format in range(framing._TAILS_MAX + 50):
        body = transfer_body(Transfer(handle=1, delivery_id=9, delivery_tag=b"t",
                                      message_format=message_format * 1009, settled=False))
        parsed = parse_transfer(body)
        assert parsed is not None
        assert parsed[0].message_format == message_format * 1009
        assert parsed[0].settled is False
    assert len(framing._TAILS) <= framing._TAILS_MAX


def test_a_full_table_of_tails_starts_over() -> None:
    """Once a peer has filled the table with message-formats of its own, the
    usual tail is remembered again, not shut out for good."""
    framing._TAILS.clear()
    for message_format in range(framing._TAILS_MAX):
        assert parse_transfer(transfer_body(Transfer(
            handle=1, delivery_id=9, delivery_tag=b"t", message_format=message_format + 7,
            settled=False))) is not None
    usual = transfer_body(Transfer(handle=1, delivery_id=9, delivery_tag=b"t",
                                   message_format=0, settled=False))
    assert parse_transfer(usual) is not None
    assert b"\x43\x42" in framing._TAILS


def test_what_the_hot_path_leaves_to_the_decoder_is_not_remembered() -> None:
    """A tail with a state, or longer than any the hot path reads (a peer's
    junk of any size), is never kept."""
    framing._TAILS.clear()
    with_state = transfer_body(Transfer(handle=1, delivery_id=9, delivery_tag=b"t",
                                        message_format=0, settled=False, more=False,
                                        rcv_settle_mode=None, state=Accepted()))
    assert parse_transfer(with_state) is None
    junk = b"\x40" * 4096
    long_tail = b"\x00\x53\x14\xd0" + struct.pack(">II", 4 + 3 + len(junk), 11) + \
        b"\x43\x43\x40" + junk
    assert parse_transfer(long_tail) is None
    assert framing._TAILS == {}


@pytest.mark.parametrize("field", ["rcv-settle-mode", "state"])
def test_a_boolean_where_the_decoder_refuses_one_is_the_decoders(field: str) -> None:
    """rcv-settle-mode is a ubyte and state a delivery-state: false is no
    value of either, so the hot path leaves it to the decoder, which says so."""
    fields = b"\x52\x01\x52\x09\xa0\x01t\x43\x42\x42\x40\x40"  # ... rcv, state
    body = b"\x00\x53\x14\xc0" + bytes((len(fields) + 1, 8)) + fields + b"PAY"
    assert parse_transfer(body) is not None  # nulls there: the hot path's
    at = 6 + len(fields) - (2 if field == "rcv-settle-mode" else 1)
    bad = body[:at] + b"\x42" + body[at + 1:]
    assert parse_transfer(bad) is None
    with pytest.raises(DecodeError):
        decode_frame_body(bad)


def test_a_remembered_tail_stands_for_its_own_field_count_only() -> None:
    """The same bytes after the tag, under a list that claims more fields
    than they hold, are not the hot path's: the decoder judges them."""
    usual = transfer_body(Transfer(handle=1, delivery_id=9, delivery_tag=b"t", message_format=0,
                                   settled=False))
    assert parse_transfer(usual) is not None  # its tail (format 0, unsettled) remembered
    assert usual[5] == 5
    claims_seven = usual[:5] + b"\x07" + usual[6:]  # same bytes, two fields more claimed
    assert parse_transfer(claims_seven) is None


@given(
    handle=st.integers(0, 2**32 - 1),
    delivery_id=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    tag=st.one_of(st.none(), st.binary(max_size=32)),
    message_format=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    settled=st.one_of(st.none(), st.booleans()),
    more=st.booleans(),
    trailing=st.one_of(st.none(), st.tuples(st.booleans(), st.booleans(), st.booleans())),
    list32=st.booleans(),
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 60), st.integers(0, 255))),
)
def test_parse_transfer_never_disagrees_with_the_decoder(
        handle: int, delivery_id: int | None, tag: bytes | None, message_format: int | None,
        settled: bool | None, more: bool, trailing: tuple[bool, bool, bool] | None,
        list32: bool, flip: tuple[int, int] | None) -> None:
    """Whatever the hot path takes (a byte changed anywhere in the head
    included, any message-format, the last fields written or not), the
    generic decoder reads the same; what it refuses is the decoder's to judge."""
    resume, aborted, batchable = trailing or (None, None, None)
    body = transfer_body(Transfer(handle=handle, delivery_id=delivery_id, delivery_tag=tag,
                                  message_format=message_format, settled=settled, more=more,
                                  resume=resume, aborted=aborted, batchable=batchable))
    if list32:
        body = as_list32(body)
    if flip is not None and flip[0] < len(body):
        at, value = flip
        body = body[:at] + bytes((value,)) + body[at + 1:]
    parsed = parse_transfer(body)
    # where it lies in a read, between bytes that would read as more fields
    # (a small uint, a tag): the same answer, the payload's offset in the read
    for filler in (b"\x52", b"\xa0", b"\x40", b"\x43"):
        read = filler * 7 + body + filler * 40
        at = parse_transfer_at(read, 7, 7 + len(body))
        assert vars_of(parse_transfer_at(memoryview(read), 7, 7 + len(body))) == vars_of(at)
        if parsed is None:
            assert at is None
        else:
            assert at is not None and vars_of(at) == vars_of((parsed[0], 7 + len(body) -
                                                              len(parsed[1])))
    if parsed is None:
        return
    fields, rest = parsed
    decoded, payload = decode_frame_body(body)
    assert isinstance(decoded, Transfer)
    assert rest == payload
    for name in ("handle", "delivery_id", "delivery_tag", "message_format", "settled", "more"):
        assert getattr(fields, name) == getattr(decoded, name), name
