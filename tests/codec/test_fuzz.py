"""Malformed input: random bytes and mutated valid encodings.

The decoder faces whatever a peer sends.  Whatever the bytes, `decode`,
`decode_all`, `skip`, `Message.parse` (and its lazy sections),
`decode_frame_body` and `FrameReader` may only raise `DecodeError` (or
`FramingError` from the reader), never IndexError, struct.error,
UnicodeDecodeError, RecursionError, MemoryError, TypeError..., and every
call returns quickly.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.codec import decode, decode_all, encode, skip
from broker.codec.decode import _FIXED_WIDTH, DESCRIBED_TYPES, MAX_DEPTH, MAX_ZERO_WIDTH_ARRAY
from broker.codec.messaging import AmqpSequence, Data, Header, Message, Properties
from broker.codec.performatives import Attach, Open, Transfer
from broker.codec.types import AmqpType, Array, Described, Symbol, Timestamp, UInt, ULong
from broker.errors import DecodeError, FramingError
from broker.framing import (
    AMQP_HEADER,
    NEED_DATA,
    Frame,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
    encode_frame,
)

from .golden import VECTORS, g
from .strategies import assert_identical, values

T = AmqpType
TIME_LIMIT = 1.0  # seconds per call on inputs of a few KiB; a hang or a blow-up takes far longer
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- corpus of valid encodings ----------------------------------------------------


def _messages() -> list[bytes]:
    props = Properties(
        message_id=uuid.UUID(int=1),
        to="q",
        content_type=Symbol("text/plain"),
        creation_time=Timestamp(5),
        group_sequence=UInt(2),
    )
    return [
        Message.create(b"payload").payload,
        Message.create(
            {"k": [1, 2.5, None]},
            header=Header(durable=True, ttl=100, delivery_count=1),
            delivery_annotations={Symbol("x-opt-d"): 1},
            message_annotations={Symbol("x-opt-a"): "v", Symbol("x-opt-b"): Array(T.INT, [1, 2])},
            properties=props,
            application_properties={"a": 1, "b": "x", "c": True},
            footer={Symbol("f"): b"h"},
        ).payload,
        Message.create([Data(b"a"), Data(b"b")], properties=props).payload,
        Message.create(AmqpSequence([1, "two"])).payload,
    ]


_VALUES = [
    None,
    True,
    UInt(300),
    ULong(2**40),
    -5,
    2.5,
    "text",
    "x" * 300,
    b"\x00\xff",
    Symbol("sym"),
    ["caf\u00e9", {"\u00e9": "\u20ac" * 90}],
    [1, [2, [3, []]], {"k": None}],
    {Symbol("a"): [b"x" * 260], "b": {}},
    Array(T.UINT, [1, 70000]),
    Array(T.STRING, ["a", "b" * 256]),
    Array(T.NULL, [None] * 5),
    Array(T.ARRAY, [Array(T.SYMBOL, [Symbol("s")]), Array(T.LONG, [])]),
    Array(T.LIST, [[1], []], descriptor=ULong(0x99)),
    Array(T.BOOLEAN, [True, False]),
    Described(Symbol("d"), [Described(ULong(7), {"x": 1})]),
]


def _frames() -> list[bytes]:
    out = bytearray()
    encode_frame(out, 0, Open(container_id="c", max_frame_size=512))
    encode_frame(out, 1, Attach(name="l", handle=0, role=True))
    encode_frame(out, 1, Transfer(handle=0, delivery_id=0, delivery_tag=b"t"), _messages()[1])
    out += b"\x00\x00\x00\x08\x02\x00\x00\x00"  # heartbeat
    return [bytes(out)]


SEEDS = [g(hexes) for _, _, hexes in VECTORS] + [encode(v) for v in _VALUES] + _messages()
MESSAGE_SEEDS = _messages() + [
    g(hexes)
    for name, _, hexes in VECTORS
    if name
    in (
        "header",
        "properties",
        "delivery-annotations",
        "message-annotations",
        "application-properties",
        "data",
        "amqp-sequence",
        "amqp-value",
        "footer",
    )
]
FRAME_SEEDS = _frames()

_SIZE32_CODES = (0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0)
# Constructors that can stand in for each other without changing the layout
# much: swapping them confuses types (a string read as a symbol, a list as a map).
_RECODE_GROUPS = [
    (0xA0, 0xA1, 0xA3),
    (0xB0, 0xB1, 0xB3),
    (0xC0, 0xC1, 0xE0),
    (0xD0, 0xD1, 0xF0),
    (0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56),
    (0x60, 0x61),
    (0x70, 0x71, 0x72, 0x73, 0x74),
    (0x80, 0x81, 0x82, 0x83, 0x84),
    (0x94, 0x98),
    (0x40, 0x41, 0x42, 0x43, 0x44, 0x45),
]
_RECODE = {code: group for group in _RECODE_GROUPS for code in group}
_SIZE8_CODES = (0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes] | st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few mutations: the bugs live near valid input."""
    data = bytearray(draw(st.sampled_from(seeds) if isinstance(seeds, list) else seeds))
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        kind = draw(
            st.sampled_from(
                [
                    "flip",
                    "byte",
                    "truncate",
                    "insert",
                    "delete",
                    "size32",
                    "size8",
                    "duplicate",
                    "recode",
                ]
            )
        )
        if kind in ("flip", "byte") and n:
            i = draw(st.integers(0, n - 1))
            data[i] = (
                data[i] ^ (1 << draw(st.integers(0, 7)))
                if kind == "flip"
                else draw(st.integers(0, 255))
            )
        elif kind == "truncate":
            data = data[: draw(st.integers(0, n))]
        elif kind == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif kind == "duplicate" and n:
            i = draw(st.integers(0, n - 1))
            data[i:i] = data[i : i + draw(st.integers(1, 16))]
        elif kind == "size32":
            spots = [i for i in range(n - 4) if data[i] in _SIZE32_CODES]
            if spots:
                i = draw(st.sampled_from(spots)) + draw(st.sampled_from([1, 5]))
                value = draw(
                    st.one_of(
                        st.sampled_from(
                            [0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x10000, 0, 1, 3, 4, 5]
                        ),
                        st.integers(0, 0xFFFFFFFF),
                    )
                )
                data[i : i + 4] = struct.pack(">I", value)
        elif kind == "recode":
            spots = [i for i in range(n) if data[i] in _RECODE]
            if spots:
                i = draw(st.sampled_from(spots))
                data[i] = draw(st.sampled_from(_RECODE[data[i]]))
        elif kind == "size8":
            spots = [i for i in range(n - 2) if data[i] in _SIZE8_CODES]
            if spots:
                data[draw(st.sampled_from(spots)) + draw(st.sampled_from([1, 2]))] = draw(
                    st.integers(0, 255)
                )
    return bytes(data)


@st.composite
def _primitive(draw: st.DrawFn) -> bytes:
    """One primitive with a well-formed layout and random content (bad UTF-8,
    non-ASCII symbols, surrogate chars, booleans that are neither 0 nor 1...)."""
    code = draw(
        st.one_of(
            st.sampled_from(sorted(_FIXED_WIDTH)),
            st.sampled_from([0xA0, 0xA1, 0xA3, 0xB0, 0xB1, 0xB3]),
        )
    )
    if code in _FIXED_WIDTH:
        width = _FIXED_WIDTH[code]
        content = st.binary(min_size=width, max_size=width)
        if code == 0x56:
            content = st.one_of(st.sampled_from([b"\x00", b"\x01"]), content)
        elif code == 0x73:
            content = st.one_of(
                st.characters(codec=None).map(lambda c: ord(c).to_bytes(4, "big")), content
            )
        return bytes([code]) + draw(content)
    payload = draw(
        st.one_of(
            st.binary(max_size=12),
            st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.text(alphabet=st.characters(max_codepoint=127), max_size=8).map(str.encode),
        )
    )
    return bytes([code]) + len(payload).to_bytes(1 if code < 0xB0 else 4, "big") + payload


def _list8(items: list[bytes], code: int = 0xC0) -> bytes:
    body = b"".join(items)
    return bytes([code, (len(body) + 1) & 0xFF, len(items) & 0xFF]) + body


def _described(descriptor: int, body: bytes) -> bytes:
    return b"\x00\x53" + bytes([descriptor]) + body


_REGISTERED_CODES = sorted(c for c in DESCRIBED_TYPES if type(c) is int and c < 256)

# Well-formed structure, random content: lists, maps and registered composites
# (performatives, sections, outcomes...) whose fields are random primitives.
structured = st.recursive(
    _primitive(),
    lambda kids: st.one_of(
        st.lists(kids, max_size=6).map(_list8),
        st.lists(kids, max_size=3).map(lambda kv: _list8(kv + kv, 0xC1)),
        st.builds(
            _described,
            st.sampled_from(_REGISTERED_CODES),
            st.one_of(st.lists(kids, max_size=12).map(_list8), kids),
        ),
    ),
    max_leaves=16,
)

_CODES = sorted({b for b in range(256)} - {0x01, 0x02})
random_values = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda c, rest: bytes([c]) + rest, st.sampled_from(_CODES), st.binary(max_size=40)),
)
values_input = st.one_of(
    random_values, structured, mutated(SEEDS), mutated(st.one_of(structured, values.map(encode)))
)


# --- the property ---------------------------------------------------------------------


def only_decode_errors(fn: Callable[[], object], allowed: type[Exception] = DecodeError) -> object:
    """Run fn; it may return or raise `allowed`, quickly.  Returns the result or the error."""
    start = time.perf_counter()
    try:
        result: object = fn()
    except allowed as exc:
        result = exc
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT, f"took {elapsed:.2f}s"
    return result


def check_re_encodes(value: object) -> None:
    """Whatever we decoded, we can encode again, and that encoding is stable."""
    data = encode(value)
    again, end = decode(data)
    assert end == len(data)
    assert encode(again) == data
    assert_identical(decode(data)[0], again)


@FUZZ
@given(values_input)
def test_decode_raises_only_decode_error(data: bytes) -> None:
    result = only_decode_errors(lambda: decode(data))
    if not isinstance(result, DecodeError):
        value, end = result  # type: ignore[misc]
        assert 0 < end <= len(data)
        check_re_encodes(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structured)
def test_decode_structured_random_content(data: bytes) -> None:
    """Well-formed layout, random content: whatever decodes must re-encode."""
    result = only_decode_errors(lambda: decode(data))
    if not isinstance(result, DecodeError):
        value, end = result  # type: ignore[misc]
        assert end == len(data)
        check_re_encodes(value)


@FUZZ
@given(values_input)
def test_decode_all_raises_only_decode_error(data: bytes) -> None:
    result = only_decode_errors(lambda: decode_all(data))
    if not isinstance(result, DecodeError):
        assert isinstance(result, list)
        assert (len(result) == 0) == (len(data) == 0)


@FUZZ
@given(values_input, st.data())
def test_skip_raises_only_decode_error(data: bytes, more: st.DataObject) -> None:
    pos = more.draw(st.integers(0, len(data)))
    result = only_decode_errors(lambda: skip(data, pos, len(data)))
    if not isinstance(result, DecodeError):
        assert pos < result <= len(data)  # type: ignore[operator]
    # where decode succeeds, skip lands on the same offset
    decoded = only_decode_errors(lambda: decode(data, pos))
    if not isinstance(decoded, DecodeError):
        assert result == decoded[1]  # type: ignore[index]


def _parse_and_read(data: bytes) -> Message:
    msg = Message.parse(data)
    for name in (
        "header",
        "delivery_annotations",
        "message_annotations",
        "properties",
        "application_properties",
        "footer",
        "body",
    ):
        try:
            getattr(msg, name)
        except DecodeError:
            pass
    msg.bare  # noqa: B018
    assert msg.encode() == data
    changed = msg.with_changes(
        header=Header(delivery_count=1), message_annotations={Symbol("x"): 1}
    )
    assert changed.bare == msg.bare
    try:
        reparsed = Message.parse(changed.encode())
    except DecodeError as exc:
        raise AssertionError(f"a rewritten message does not parse: {exc}") from None
    assert reparsed.bare == msg.bare
    return msg


@FUZZ
@given(st.one_of(random_values, mutated(MESSAGE_SEEDS)))
def test_message_parse_raises_only_decode_error(data: bytes) -> None:
    only_decode_errors(lambda: _parse_and_read(data))


@FUZZ
@given(st.one_of(random_values, mutated(SEEDS)))
def test_decode_frame_body_raises_only_decode_error(data: bytes) -> None:
    result = only_decode_errors(lambda: decode_frame_body(data))
    if not isinstance(result, DecodeError):
        _, payload = result  # type: ignore[misc]
        assert data.endswith(payload)


def _read_all(chunks: list[bytes], max_frame_size: int) -> list[object]:
    """Feed chunks; collect headers/frames and the FramingError, if any, as the last item."""
    reader = FrameReader(max_frame_size)
    got: list[object] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (item := reader.next()) is not NEED_DATA:
                got.append(item)
                assert len(got) < 10_000
    except FramingError as exc:
        got.append(("FramingError", str(exc)))
    return got


@FUZZ
@given(
    st.one_of(st.binary(max_size=64), mutated(FRAME_SEEDS)),
    st.sampled_from([512, 4096, 0xFFFFFFFF]),
    st.data(),
)
def test_frame_reader_raises_only_framing_error(
    data: bytes, max_frame_size: int, more: st.DataObject
) -> None:
    stream = AMQP_HEADER + data
    whole = only_decode_errors(lambda: _read_all([stream], max_frame_size), FramingError)
    cuts = sorted(more.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert _read_all(chunks, max_frame_size) == whole, "chunking changed what the reader saw"
    for item in whole:  # type: ignore[union-attr]
        if isinstance(item, Frame):
            assert len(item.body) + 8 <= max_frame_size
            if item.body:
                only_decode_errors(lambda body=item.body: decode_frame_body(body))


# --- deliberate worst cases -----------------------------------------------------------


def _nested_list32(depth: int) -> bytes:
    data = b"\x45"
    for _ in range(depth):
        data = b"\xd0" + struct.pack(">II", len(data) + 4, 1) + data
    return data


def _nested_array32(depth: int) -> bytes:
    """array of array of ... of an empty ubyte array, all array32."""
    inner = struct.pack(">I", 0) + b"\x50"  # count 0, ubyte constructor
    payload = struct.pack(">I", len(inner)) + inner
    for _ in range(depth - 1):
        body = struct.pack(">I", 1) + b"\xf0" + payload
        payload = struct.pack(">I", len(body)) + body
    return b"\xf0" + payload


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("10000 list8 headers", b"\xc0\xff\x01" * 10_000),
        ("10000 consistent list32", _nested_list32(10_000)),
        ("10000 described constructors", b"\x00" * 10_000 + b"\x40\x40"),
        ("10000 described descriptors", b"\x00\x00" * 5_000 + b"\x40" * 5_001),
        ("10000 nested arrays", _nested_array32(10_000)),
        ("10000 map8 headers", b"\xc1\xff\x02\x40" * 10_000),
        ("array descriptors nested", (b"\xe0\xff\x01\x00") * 5_000),
    ],
)
def test_deep_nesting_is_refused(name: str, data: bytes) -> None:
    for fn in (lambda: decode(data), lambda: decode_all(data), lambda: decode_frame_body(data)):
        assert isinstance(only_decode_errors(fn), DecodeError)
    # skip reads sizes only, so it may succeed; parsing succeeds when skip does,
    # and reading the body then fails
    only_decode_errors(lambda: skip(data, 0, len(data)))
    only_decode_errors(lambda: _parse_and_read(b"\x00\x53\x77" + data))


def test_consistent_deep_nesting_reports_depth() -> None:
    for data in (_nested_list32(10_000), _nested_array32(10_000), b"\x00" * 10_000 + b"\x40\x40"):
        with pytest.raises(DecodeError, match="nested too deeply"):
            decode(data)
    with pytest.raises(DecodeError, match="nested too deeply"):
        skip(b"\x00" * 10_000 + b"\x40\x40", 0, 10_002)


def test_nesting_within_the_limit_decodes() -> None:
    depth = MAX_DEPTH - 2
    value, _ = decode(_nested_list32(depth))
    for _ in range(depth):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []
    assert decode(_nested_array32(depth))[1] > 0


@pytest.mark.parametrize(
    ("name", "hexes"),
    [
        ("list32 of 4 GiB", "d0 ff ff ff ff ff ff ff ff 40"),
        ("list32 count 4G in a small list", "d0 00 00 00 05 ff ff ff ff 40"),
        ("map32 of 4 GiB", "d1 ff ff ff ff 00 00 00 02 40 40"),
        ("array32 of 4 GiB", "f0 ff ff ff ff 00 00 00 01 40"),
        ("array32 of 4G nulls", "f0 00 00 00 05 ff ff ff ff 40"),
        ("array32 of 4G ulong", "f0 00 00 00 05 ff ff ff ff 80"),
        ("array8 of 255 uint in 1 byte", "e0 02 ff 70"),
        ("binary of 4 GiB", "b0 ff ff ff ff 00"),
        ("string of 4 GiB", "b1 ff ff ff ff 61"),
        ("symbol of 4 GiB", "b3 ff ff ff ff 61"),
        ("binary8 past the end", "a0 ff 00"),
    ],
)
def test_huge_sizes_are_refused_without_allocating(name: str, hexes: str) -> None:
    data = g(hexes)
    result = only_decode_errors(lambda: decode(data))
    assert isinstance(result, DecodeError)
    result = only_decode_errors(lambda: skip(data, 0, len(data)))
    assert isinstance(result, DecodeError) or result <= len(data)  # type: ignore[operator]
    msg = only_decode_errors(lambda: Message.parse(b"\x00\x53\x77" + data))
    if isinstance(msg, Message):  # located by its size alone; reading it fails
        with pytest.raises(DecodeError):
            msg.body  # noqa: B018


def _arrays_of_nulls(arrays: int, count: int) -> bytes:
    one = b"\xf0" + struct.pack(">II", 5, count) + b"\x40"  # 10 bytes: array32 of `count` nulls
    body = one * arrays
    return b"\xd0" + struct.pack(">II", len(body) + 4, arrays) + body


def test_zero_width_array_amplification_is_bounded() -> None:
    """10-byte arrays of 65536 nulls each: 60 KB must not become 400 million elements."""
    data = _arrays_of_nulls(6000, MAX_ZERO_WIDTH_ARRAY)
    result = only_decode_errors(lambda: decode(data))
    assert isinstance(result, DecodeError)
    # the budget is per decode() call and covers all arrays together
    with pytest.raises(DecodeError):
        decode(_arrays_of_nulls(2, MAX_ZERO_WIDTH_ARRAY // 2 + 1))
    value, _ = decode(_arrays_of_nulls(2, MAX_ZERO_WIDTH_ARRAY // 2))
    assert [len(a.items) for a in value] == [MAX_ZERO_WIDTH_ARRAY // 2] * 2  # type: ignore[attr-defined]
    # and is fresh for the next call
    value, _ = decode(_arrays_of_nulls(1, MAX_ZERO_WIDTH_ARRAY))
    assert len(value[0].items) == MAX_ZERO_WIDTH_ARRAY  # type: ignore[index]
    assert decode(g("e0 02 03 40"))[0] == Array(T.NULL, [None] * 3)


def test_fuzz_corpus_is_valid() -> None:
    """The seeds really are valid encodings, so mutations start from valid input."""
    for seed in SEEDS:
        assert decode_all(seed)  # one value, or the sections of a message
    for seed in MESSAGE_SEEDS:
        msg = _parse_and_read(seed)
        assert msg.payload == seed
    assert all(Message.parse(m).body for m in _messages())
    items = _read_all([AMQP_HEADER, *FRAME_SEEDS], 4096)
    assert [type(i) for i in items] == [ProtocolHeader] + [Frame] * 4
    assert type(decode_frame_body(items[1].body)[0]) is Open  # type: ignore[union-attr]
