"""Type wrappers, compact encodings (§1.6) and decoding of every wider encoding."""

from __future__ import annotations

import enum
import uuid

import pytest

from broker.codec import decode, encode, skip
from broker.codec.types import (
    AmqpType,
    Array,
    Byte,
    Char,
    Decimal32,
    Decimal64,
    Decimal128,
    Described,
    Float,
    FormatCode,
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
from broker.errors import DecodeError, EncodeError

from .strategies import assert_identical

T = AmqpType
U = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")


def h(text: str) -> bytes:
    """Hex with spaces and `# comments` → bytes."""
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


# --- wrappers -----------------------------------------------------------------

RANGES = [
    (UByte, 0, 0xFF),
    (UShort, 0, 0xFFFF),
    (UInt, 0, 0xFFFFFFFF),
    (ULong, 0, 2**64 - 1),
    (Byte, -128, 127),
    (Short, -(2**15), 2**15 - 1),
    (Int, -(2**31), 2**31 - 1),
    (Long, -(2**63), 2**63 - 1),
    (Timestamp, -(2**63), 2**63 - 1),
]


@pytest.mark.parametrize(("cls", "lo", "hi"), RANGES, ids=lambda x: getattr(x, "__name__", ""))
def test_int_wrappers_hold_exactly_their_range(cls: type, lo: int, hi: int) -> None:
    assert cls(lo) == lo and cls(hi) == hi
    assert hash(cls(hi)) == hash(hi)
    assert repr(cls(lo)) == f"{cls.__name__}({lo})"
    with pytest.raises(ValueError):
        cls(lo - 1)
    with pytest.raises(ValueError):
        cls(hi + 1)


def test_fixed_size_wrappers_check_their_size() -> None:
    with pytest.raises(ValueError):
        Char("ab")
    with pytest.raises(ValueError):
        Char("")
    for cls, size in ((Decimal32, 4), (Decimal64, 8), (Decimal128, 16)):
        assert cls(bytes(size)) == bytes(size)
        with pytest.raises(ValueError):
            cls(bytes(size - 1))
        with pytest.raises(ValueError):
            cls(bytes(size + 1))


def test_array_keeps_items_as_a_tuple() -> None:
    a = Array(T.UINT, [1, 2])
    assert a.items == (1, 2)
    assert a == Array(T.UINT, (1, 2))
    assert a != Array(T.ULONG, (1, 2))
    assert a != Array(T.UINT, (1, 2), descriptor=Symbol("d"))


# --- most compact encoding -----------------------------------------------------

COMPACT = [
    (None, "40"),
    (True, "41"),
    (False, "42"),
    (UByte(0), "50 00"),
    (UByte(255), "50 ff"),
    (UShort(0), "60 00 00"),
    (UShort(0xABCD), "60 ab cd"),
    (UInt(0), "43"),
    (UInt(1), "52 01"),
    (UInt(255), "52 ff"),
    (UInt(256), "70 00 00 01 00"),
    (UInt(2**32 - 1), "70 ff ff ff ff"),
    (ULong(0), "44"),
    (ULong(255), "53 ff"),
    (ULong(256), "80 00 00 00 00 00 00 01 00"),
    (ULong(2**64 - 1), "80 ff ff ff ff ff ff ff ff"),
    (Byte(-1), "51 ff"),
    (Short(-2), "61 ff fe"),
    (Int(0), "54 00"),
    (Int(127), "54 7f"),
    (Int(-128), "54 80"),
    (Int(128), "71 00 00 00 80"),
    (Int(-129), "71 ff ff ff 7f"),
    (Long(127), "55 7f"),
    (Long(-128), "55 80"),
    (Long(128), "81 00 00 00 00 00 00 00 80"),
    (Long(-129), "81 ff ff ff ff ff ff ff 7f"),
    (5, "55 05"),  # plain int is long
    (2**40, "81 00 00 01 00 00 00 00 00"),
    (Float(1.5), "72 3f c0 00 00"),
    (1.5, "82 3f f8 00 00 00 00 00 00"),  # plain float is double
    (-0.0, "82 80 00 00 00 00 00 00 00"),
    (Decimal32(b"\x01\x02\x03\x04"), "74 01 02 03 04"),
    (Decimal64(bytes(range(8))), "84 00 01 02 03 04 05 06 07"),
    (Decimal128(bytes(range(16))), "94 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"),
    (Char("a"), "73 00 00 00 61"),
    (Char("\U0001f600"), "73 00 01 f6 00"),
    (Timestamp(0), "83 00 00 00 00 00 00 00 00"),  # timestamp has no compact form
    (Timestamp(-1), "83 ff ff ff ff ff ff ff ff"),
    (U, "98 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff"),
    (b"", "a0 00"),
    (b"ab", "a0 02 61 62"),
    ("", "a1 00"),
    ("\u00e9", "a1 02 c3 a9"),  # size counts UTF-8 bytes
    (Symbol(""), "a3 00"),
    (Symbol("ab"), "a3 02 61 62"),
    ([], "45"),
    ([None], "c0 02 01 40"),
    ([UInt(0), True], "c0 03 02 43 41"),
    ({}, "c1 01 00"),
    ({Symbol("k"): None}, "c1 05 02 a3 01 6b 40"),
    (Described(Symbol("d"), None), "00 a3 01 64 40"),
    (Described(ULong(0x1234), "x"), "00 80 00 00 00 00 00 00 12 34 a1 01 78"),
    (Array(T.UINT, []), "e0 02 00 52"),
    (Array(T.UINT, [UInt(1), UInt(2)]), "e0 04 02 52 01 02"),
    (Array(T.UINT, [UInt(1), UInt(256)]), "e0 0a 02 70 00 00 00 01 00 00 01 00"),
    (Array(T.ULONG, [ULong(0), ULong(255)]), "e0 04 02 53 00 ff"),
    (Array(T.INT, [Int(-1)]), "e0 03 01 54 ff"),
    (Array(T.INT, [Int(-129)]), "e0 06 01 71 ff ff ff 7f"),
    (
        Array(T.LONG, [Long(1), Long(200)]),
        "e0 12 02 81 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 c8",
    ),
    (Array(T.BOOLEAN, [True, False]), "e0 04 02 56 01 00"),
    (Array(T.NULL, [None, None, None]), "e0 02 03 40"),
    (Array(T.UBYTE, [UByte(7)]), "e0 03 01 50 07"),
    (Array(T.SYMBOL, [Symbol("a"), Symbol("bc")]), "e0 07 02 a3 01 61 02 62 63"),
    (Array(T.STRING, ["a"]), "e0 04 01 a1 01 61"),
    (Array(T.CHAR, [Char("a")]), "e0 06 01 73 00 00 00 61"),
    (Array(T.SYMBOL, [Symbol("a")], descriptor=Symbol("d")), "e0 08 01 00 a3 01 64 a3 01 61"),
    (
        Array(T.ARRAY, [Array(T.UBYTE, [UByte(1)])]),
        """e0 0c 01 f0         # array8 of one array, element constructor array32
           00 00 00 06 00 00 00 01 50 01  # size 6, count 1, ubyte constructor, 01""",
    ),
    (
        Array(T.LIST, [[UInt(1)]]),
        "e0 0c 01 d0  00 00 00 06 00 00 00 01 52 01",
    ),
    (
        Array(T.MAP, [{}]),
        "e0 0a 01 d1  00 00 00 04 00 00 00 00",
    ),
]


@pytest.mark.parametrize(("value", "expected"), COMPACT, ids=lambda x: repr(x)[:40])
def test_most_compact_encoding(value: object, expected: str) -> None:
    data = encode(value)
    assert data.hex(" ") == h(expected).hex(" ")
    decoded, end = decode(data)
    assert end == len(data)
    assert_identical(decoded, value if type(value) is not int else Long(value))


def _var(code: int, n: int) -> bytes:
    return bytes([code]) + n.to_bytes(1 if code < 0xB0 else 4, "big")


@pytest.mark.parametrize(
    ("value", "head"),
    [
        (b"x" * 255, _var(0xA0, 255)),
        (b"x" * 256, _var(0xB0, 256)),
        ("x" * 255, _var(0xA1, 255)),
        ("x" * 256, _var(0xB1, 256)),
        ("\u00e9" * 127 + "x", _var(0xA1, 255)),
        ("\u00e9" * 128, _var(0xB1, 256)),  # 128 characters, 256 bytes: str32
        (Symbol("x" * 255), _var(0xA3, 255)),
        (Symbol("x" * 256), _var(0xB3, 256)),
    ],
    ids=lambda x: repr(x)[:12] if not isinstance(x, bytes) else x[:1].hex(),
)
def test_variable_width_boundary(value: object, head: bytes) -> None:
    data = encode(value)
    assert data[: len(head)] == head
    assert len(data) == len(head) + (len(value.encode()) if isinstance(value, str) else len(value))  # type: ignore[attr-defined]


def test_list_size_boundary() -> None:
    # list8 holds size (count byte + body) up to 255.
    fits = [b"x" * 252]  # body a0 fc + 252 bytes = 254, size 255
    data = encode(fits)
    assert data[:5] == h("c0 ff 01 a0 fc")
    too_big = [b"x" * 253]  # body 255, size 256: list32, size = body + 4-byte count
    data = encode(too_big)
    assert data[:11] == h("d0 00 00 01 03 00 00 00 01 a0 fd")
    assert decode(data)[0] == too_big


def test_list_count_boundary() -> None:
    assert encode([None] * 254)[:3] == h("c0 ff fe")
    data = encode([None] * 255)  # size would be 256
    assert data[:9] == h("d0 00 00 01 03 00 00 00 ff")
    data = encode([None] * 300)
    assert data[:9] == h("d0 00 00 01 30 00 00 01 2c")
    assert decode(data)[0] == [None] * 300


def test_map_size_boundary() -> None:
    m = {Symbol("k"): b"x" * 249}  # a3 01 6b (3) + a0 f9 + 249 (251) = 254, size 255
    assert encode(m)[:3] == h("c1 ff 02")
    m = {Symbol("k"): b"x" * 250}
    data = encode(m)
    assert data[:9] == h("d1 00 00 01 03 00 00 00 02")
    assert decode(data)[0] == m


def test_array_size_boundary() -> None:
    data = encode(Array(T.UBYTE, [0] * 253))  # count + constructor + 253 = 255
    assert data[:4] == h("e0 ff fd 50")
    data = encode(Array(T.UBYTE, [0] * 254))
    assert data[:10] == h("f0 00 00 01 03 00 00 00 fe 50")
    assert decode(data)[0] == Array(T.UBYTE, [0] * 254)


def test_array_element_width_is_chosen_for_all_elements() -> None:
    data = encode(Array(T.STRING, ["a", "x" * 256]))
    assert data[:10] == h("f0 00 00 01 0e 00 00 00 02 b1")
    assert decode(data)[0] == Array(T.STRING, ["a", "x" * 256])


# --- wide and alternative encodings decode to the same value -------------------

WIDE = [
    ("70 00 00 00 05", UInt(5)),
    ("52 05", UInt(5)),
    ("43", UInt(0)),
    ("70 00 00 00 00", UInt(0)),
    ("80 00 00 00 00 00 00 00 05", ULong(5)),
    ("53 05", ULong(5)),
    ("44", ULong(0)),
    ("71 00 00 00 05", Int(5)),
    ("71 ff ff ff ff", Int(-1)),
    ("54 ff", Int(-1)),
    ("81 00 00 00 00 00 00 00 05", Long(5)),
    ("81 ff ff ff ff ff ff ff fe", Long(-2)),
    ("55 fe", Long(-2)),
    ("56 01", True),
    ("56 00", False),
    ("b0 00 00 00 01 61", b"a"),
    ("b1 00 00 00 01 61", "a"),
    ("b1 00 00 00 00", ""),
    ("b3 00 00 00 01 61", Symbol("a")),
    ("c0 01 00", []),
    ("d0 00 00 00 04 00 00 00 00", []),
    ("d0 00 00 00 05 00 00 00 01 40", [None]),
    ("d0 00 00 00 0a 00 00 00 02 70 00 00 00 07 41", [UInt(7), True]),
    ("d1 00 00 00 04 00 00 00 00", {}),
    ("d1 00 00 00 08 00 00 00 02 a1 01 61 40", {"a": None}),
    ("c1 07 02 b1 00 00 00 00 40", {"": None}),
    ("f0 00 00 00 06 00 00 00 01 52 05", Array(T.UINT, [UInt(5)])),
    ("f0 00 00 00 05 00 00 00 00 70", Array(T.UINT, [])),
    ("e0 06 01 70 00 00 00 05", Array(T.UINT, [UInt(5)])),
    ("e0 0a 01 80 00 00 00 00 00 00 00 05", Array(T.ULONG, [ULong(5)])),
    ("e0 02 03 43", Array(T.UINT, [UInt(0)] * 3)),  # zero-width element constructor
    ("e0 02 02 44", Array(T.ULONG, [ULong(0)] * 2)),
    ("e0 02 02 41", Array(T.BOOLEAN, [True, True])),
    ("e0 02 02 42", Array(T.BOOLEAN, [False, False])),
    ("e0 02 02 45", Array(T.LIST, [[], []])),
    ("e0 07 01 b3 00 00 00 01 61", Array(T.SYMBOL, [Symbol("a")])),
    ("e0 07 01 b1 00 00 00 01 61", Array(T.STRING, ["a"])),
    ("e0 07 01 b0 00 00 00 01 61", Array(T.BINARY, [b"a"])),
    ("e0 05 01 c0 02 01 40", Array(T.LIST, [[None]])),
    ("e0 04 01 c1 01 00", Array(T.MAP, [{}])),
    ("e0 05 01 e0 02 00 50", Array(T.ARRAY, [Array(T.UBYTE, [])])),
    ("e0 05 01 00 53 99 45", Array(T.LIST, [[]], descriptor=ULong(0x99))),
    # an array of registered composites keeps its elements undescribed
    ("e0 05 02 00 53 24 45", Array(T.LIST, [[], []], descriptor=ULong(0x24))),
    ("00 80 00 00 00 00 00 00 00 99 40", Described(ULong(0x99), None)),
    ("00 b3 00 00 00 01 78 40", Described(Symbol("x"), None)),
    ("00 00 a3 01 61 a3 01 62 40", Described(Described(Symbol("a"), Symbol("b")), None)),
]


@pytest.mark.parametrize(("data", "expected"), WIDE, ids=lambda x: x if isinstance(x, str) else "")
def test_decode_wide_encodings(data: str, expected: object) -> None:
    raw = h(data)
    value, end = decode(raw)
    assert end == len(raw)
    assert_identical(value, expected)
    assert skip(raw, 0, len(raw)) == len(raw)


@pytest.mark.parametrize(
    "data",
    [d for d, _ in WIDE] + [e for _, e in COMPACT if isinstance(e, str)],
    ids=lambda x: x[:30],
)
def test_every_truncation_is_a_decode_error(data: str) -> None:
    raw = h(data)
    for n in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:n])
        # and with more bytes present, but `end` cutting the value short
        with pytest.raises(DecodeError):
            decode(raw + b"\x40\x40", 0, n)


def test_registered_descriptor_by_name_and_code_decode_alike() -> None:
    from broker.codec.messaging import Accepted

    by_code, _ = decode(h("00 53 24 45"))
    by_long_code, _ = decode(h("00 80 00 00 00 00 00 00 00 24 45"))
    name = b"amqp:accepted:list"
    by_name, _ = decode(b"\x00\xa3" + bytes([len(name)]) + name + b"\x45")
    assert by_code == by_long_code == by_name == Accepted()


# --- malformed input ------------------------------------------------------------

BAD = [
    ("56 02", 1, "boolean"),
    ("73 00 00 d8 00", 1, "surrogate char"),
    ("73 00 11 00 00", 1, "char above U+10FFFF"),
    ("a1 02 c3 28", 2, "invalid UTF-8"),
    ("a1 01 ff", 2, "invalid UTF-8 lead"),
    ("c0 02 01 01", 3, "invalid format code inside a list"),
    ("c0 03 01 40 40", 4, "list with a byte after its last element"),
    ("c0 03 02 40", 1, "count larger than the bytes of the list"),
    ("c0 00 00", 1, "list8 size 0 cannot hold its count"),
    ("d0 00 00 00 03 00 00 00 00", 1, "list32 size 3 cannot hold its count"),
    ("c1 02 01 40", 1, "odd map count"),
    ("c1 03 02 45 40", 1, "list as a map key"),
    ("e0 01 00", 3, "array without element constructor"),
    ("e0 02 01 ff", 3, "invalid array element constructor"),
    ("e0 03 01 56 02", 4, "bad boolean in array"),
    ("00", 1, "described without descriptor"),
    ("00 40", 2, "described without value"),
    # composite errors: offset not checked (see test_golden.py)
    ("00 53 10 a1 01 63", None, "performative that is not a list"),
    ("00 53 10 45", None, "open without container-id"),
]


@pytest.mark.parametrize(("data", "offset", "why"), BAD, ids=[b[2] for b in BAD])
def test_malformed_values_raise_decode_error(data: str, offset: int | None, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(h(data))
    if offset is not None:
        assert info.value.offset == offset, str(info.value)


@pytest.mark.xfail(
    reason="AMQP map keys may be any type (§1.6.23); unhashable keys (list, map) are refused",
    strict=True,
)
def test_map_with_list_key_decodes() -> None:
    value, _ = decode(h("c1 03 02 45 40"))
    assert value is not None


def test_non_ascii_symbol_is_a_decode_error() -> None:
    """§1.6.21: symbols are ASCII; accepting others would yield values we cannot re-encode."""
    with pytest.raises(DecodeError):
        decode(h("a3 02 c3 a9"))
    with pytest.raises(DecodeError):
        decode(h("b3 00 00 00 01 80"))
    with pytest.raises(DecodeError):
        decode(h("e0 05 01 a3 02 c3 a9"))


@pytest.mark.parametrize("code", [c for c in range(256) if c not in set(FormatCode)])
def test_undefined_format_codes_are_refused(code: int) -> None:
    with pytest.raises(DecodeError, match="format code") as info:
        decode(bytes([code]) + bytes(40))
    assert info.value.offset == 0
    with pytest.raises(DecodeError):
        skip(bytes([code]) + bytes(40), 0, 41)


def test_decode_of_nothing_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(b"")
    with pytest.raises(DecodeError):
        decode(b"\x40", 1)
    with pytest.raises(DecodeError):
        skip(b"", 0, 0)


# --- values the encoder must refuse ----------------------------------------------


class Colour(enum.IntEnum):
    RED = 3


def test_subclasses_of_plain_types_encode_as_the_base_type() -> None:
    assert encode(Colour.RED) == h("55 03")

    class S(str):
        pass

    assert encode(S("a")) == h("a1 01 61")


@pytest.mark.parametrize(
    "value",
    [
        object(),
        2**63,
        -(2**63) - 1,
        "\ud800",
        Float(1e300),
        Char("\ud800"),
        Array(T.UBYTE, [256]),
        Array(T.UBYTE, [-1]),
        Array(T.BYTE, [128]),
        Array(T.SHORT, [2**15]),
        Array(T.USHORT, [-1]),
        Array(T.INT, [2**31]),
        Array(T.UINT, [-1]),
        Array(T.ULONG, [2**64]),
        Array(T.LONG, [2**63]),
        Array(T.TIMESTAMP, [2**63]),
        Array(T.FLOAT, [1e300]),
        Array(T.DOUBLE, ["x"]),
        Array(T.CHAR, ["ab"]),
        Array(T.CHAR, ["\ud800"]),
        Array(T.UUID, [5]),
        Array(T.DECIMAL32, [b"abc"]),
        Array(T.DECIMAL64, [b"abc"]),
        Array(T.DECIMAL128, [b"abc"]),
        Array(T.NULL, [1]),
        Array(T.STRING, [1]),
        Array(T.STRING, ["\ud800"]),
        Array(T.SYMBOL, ["\u00e9"]),
        Array(T.BINARY, ["not bytes"]),
        Array(T.LIST, [5]),
        Array(T.MAP, [5]),
        Array(T.ARRAY, [5]),
        [object()],
        {"k": object()},
        Described(Symbol("d"), object()),
    ],
    ids=repr,
)
def test_unencodable_values_raise_encode_error(value: object) -> None:
    with pytest.raises(EncodeError):
        encode(value)
