"""AMQP bytes → Python values (§1.6).

A 256-slot table maps each format code to a function that decodes the value
that follows the constructor byte.  Every declared size and count is checked
against the bytes actually present before anything is allocated, nesting is
bounded, and any malformed input ends in `DecodeError` carrying the offset,
never in `IndexError`, `struct.error`, `UnicodeDecodeError` or recursion.

Described values whose descriptor belongs to a registered composite type are
handed to that type's constructor (see `composite.py`); unknown descriptors
decode to a plain `Described`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable

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
from broker.errors import DecodeError

MAX_DEPTH = 64
# Zero-width elements (null, true, uint0, ...) cost no bytes, so an array of
# them cannot be bounded by its size; cap the count instead.  The cap is for
# all such arrays in one `decode()` call together: a per-array cap would let
# a list of 10-byte arrays of 65536 nulls each turn a 1 MiB frame into
# billions of elements.
MAX_ZERO_WIDTH_ARRAY = 65536
_zero_width_left = [MAX_ZERO_WIDTH_ARRAY]  # reset by decode()

# (buf, pos, end, depth) -> (value, new_pos); pos is just after the format code.
Decoder = Callable[[bytes, int, int, int], tuple[object, int]]

# Descriptor (ulong code or symbol name) -> constructor from the described value.
DESCRIBED_TYPES: dict[object, Callable[[object], object]] = {}
# Small-ulong descriptor code -> decoder reading the described value straight from
# the bytes (composites register one; it skips building an intermediate list).
FAST_DESCRIBED: list[Decoder | None] = [None] * 256

_new_int = int.__new__
_u16 = struct.Struct(">H").unpack_from
_i16 = struct.Struct(">h").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_i64 = struct.Struct(">q").unpack_from
_f32 = struct.Struct(">f").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u32u32 = struct.Struct(">II").unpack_from


def _need(pos: int, n: int, end: int) -> None:
    if pos + n > end:
        raise DecodeError(f"need {n} bytes, {end - pos} left", pos)


def _bad_code(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    raise DecodeError(f"invalid format code 0x{buf[pos - 1]:02x}", pos - 1)


def _null(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return None, pos


def _true(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return True, pos


def _false(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return False, pos


def _boolean(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated boolean", pos)
    b = buf[pos]
    if b > 1:
        raise DecodeError(f"boolean byte must be 0 or 1, got {b}", pos)
    return b == 1, pos + 1


def _ubyte(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated ubyte", pos)
    return _new_int(UByte, buf[pos]), pos + 1


def _ushort(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 2, end)
    return _new_int(UShort, _u16(buf, pos)[0]), pos + 2


def _uint(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    return _new_int(UInt, _u32(buf, pos)[0]), pos + 4


def _smalluint(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated smalluint", pos)
    return _new_int(UInt, buf[pos]), pos + 1


def _uint0(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return _new_int(UInt, 0), pos


def _ulong(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 8, end)
    return _new_int(ULong, _u64(buf, pos)[0]), pos + 8


def _smallulong(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated smallulong", pos)
    return _new_int(ULong, buf[pos]), pos + 1


def _ulong0(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return _new_int(ULong, 0), pos


def _byte(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated byte", pos)
    b = buf[pos]
    return _new_int(Byte, b - 256 if b > 127 else b), pos + 1


def _short(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 2, end)
    return _new_int(Short, _i16(buf, pos)[0]), pos + 2


def _int(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    return _new_int(Int, _i32(buf, pos)[0]), pos + 4


def _smallint(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated smallint", pos)
    b = buf[pos]
    return _new_int(Int, b - 256 if b > 127 else b), pos + 1


def _long(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 8, end)
    return _new_int(Long, _i64(buf, pos)[0]), pos + 8


def _smalllong(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated smalllong", pos)
    b = buf[pos]
    return _new_int(Long, b - 256 if b > 127 else b), pos + 1


def _float(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    return Float(_f32(buf, pos)[0]), pos + 4


def _double(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 8, end)
    return _f64(buf, pos)[0], pos + 8


def _decimal32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    return Decimal32(buf[pos : pos + 4]), pos + 4


def _decimal64(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 8, end)
    return Decimal64(buf[pos : pos + 8]), pos + 8


def _decimal128(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 16, end)
    return Decimal128(buf[pos : pos + 16]), pos + 16


def _char(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    cp = _u32(buf, pos)[0]
    if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
        raise DecodeError(f"char code point 0x{cp:x} is not a Unicode scalar value", pos)
    return Char(chr(cp)), pos + 4


def _timestamp(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 8, end)
    return _new_int(Timestamp, _i64(buf, pos)[0]), pos + 8


def _uuid(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 16, end)
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def _vbin8(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated binary size", pos)
    n = buf[pos]
    pos += 1
    if pos + n > end:
        raise DecodeError(f"binary of {n} bytes, {end - pos} left", pos)
    return bytes(buf[pos : pos + n]), pos + n


def _vbin32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    n = _u32(buf, pos)[0]
    pos += 4
    if pos + n > end:
        raise DecodeError(f"binary of {n} bytes, {end - pos} left", pos)
    return bytes(buf[pos : pos + n]), pos + n


def _text(buf: bytes, pos: int, n: int, end: int, what: str, encoding: str = "utf-8") -> str:
    if pos + n > end:
        raise DecodeError(f"{what} of {n} bytes, {end - pos} left", pos)
    try:
        return str(buf[pos : pos + n], encoding)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not valid {encoding}: {exc.reason}", pos + exc.start) from None


def _str8(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated string size", pos)
    n = buf[pos]
    return _text(buf, pos + 1, n, end, "string"), pos + 1 + n


def _str32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    n = _u32(buf, pos)[0]
    return _text(buf, pos + 4, n, end, "string"), pos + 4 + n


def _sym8(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if pos >= end:
        raise DecodeError("truncated symbol size", pos)
    n = buf[pos]
    return Symbol(_text(buf, pos + 1, n, end, "symbol", "ascii")), pos + 1 + n


def _sym32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 4, end)
    n = _u32(buf, pos)[0]
    return Symbol(_text(buf, pos + 4, n, end, "symbol", "ascii")), pos + 4 + n


def _items(buf: bytes, pos: int, end: int, count: int, depth: int) -> list[object]:
    """Decode `count` self-describing values that must fill [pos, end) exactly."""
    if depth > MAX_DEPTH:
        raise DecodeError("values nested too deeply", pos)
    if count > end - pos:
        raise DecodeError(f"count {count} exceeds the {end - pos} bytes of the compound", pos)
    out = []
    table = _DECODERS
    for _ in range(count):
        if pos >= end:
            raise DecodeError("compound ends before its last element", pos)
        value, pos = table[buf[pos]](buf, pos + 1, end, depth + 1)
        out.append(value)
    if pos != end:
        raise DecodeError(f"compound has {end - pos} bytes after its last element", pos)
    return out


def _compound8(buf: bytes, pos: int, end: int, depth: int) -> tuple[list[object], int]:
    _need(pos, 2, end)
    size = buf[pos]
    count = buf[pos + 1]
    stop = pos + 1 + size
    if size < 1 or stop > end:
        raise DecodeError(f"compound size {size} does not fit the {end - pos - 1} bytes left", pos)
    return _items(buf, pos + 2, stop, count, depth), stop


def _compound32(buf: bytes, pos: int, end: int, depth: int) -> tuple[list[object], int]:
    _need(pos, 8, end)
    size, count = _u32u32(buf, pos)
    stop = pos + 4 + size
    if size < 4 or stop > end:
        raise DecodeError(f"compound size {size} does not fit the {end - pos - 4} bytes left", pos)
    return _items(buf, pos + 8, stop, count, depth), stop


def _list0(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return [], pos


def _list8(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return _compound8(buf, pos, end, depth)


def _list32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    return _compound32(buf, pos, end, depth)


def _to_map(items: list[object], pos: int) -> dict[object, object]:
    if len(items) % 2:
        raise DecodeError("map has an odd number of elements", pos)
    it = iter(items)
    try:
        return dict(zip(it, it))
    except TypeError:
        raise DecodeError("map key is not a valid key type", pos) from None


def _map8(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    items, stop = _compound8(buf, pos, end, depth)
    return _to_map(items, pos), stop


def _map32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    items, stop = _compound32(buf, pos, end, depth)
    return _to_map(items, pos), stop


_CODE_TO_TYPE: dict[int, AmqpType] = {
    0x40: AmqpType.NULL, 0x56: AmqpType.BOOLEAN, 0x41: AmqpType.BOOLEAN, 0x42: AmqpType.BOOLEAN,
    0x50: AmqpType.UBYTE, 0x60: AmqpType.USHORT,
    0x70: AmqpType.UINT, 0x52: AmqpType.UINT, 0x43: AmqpType.UINT,
    0x80: AmqpType.ULONG, 0x53: AmqpType.ULONG, 0x44: AmqpType.ULONG,
    0x51: AmqpType.BYTE, 0x61: AmqpType.SHORT,
    0x71: AmqpType.INT, 0x54: AmqpType.INT, 0x81: AmqpType.LONG, 0x55: AmqpType.LONG,
    0x72: AmqpType.FLOAT, 0x82: AmqpType.DOUBLE,
    0x74: AmqpType.DECIMAL32, 0x84: AmqpType.DECIMAL64, 0x94: AmqpType.DECIMAL128,
    0x73: AmqpType.CHAR, 0x83: AmqpType.TIMESTAMP, 0x98: AmqpType.UUID,
    0xA0: AmqpType.BINARY, 0xB0: AmqpType.BINARY, 0xA1: AmqpType.STRING, 0xB1: AmqpType.STRING,
    0xA3: AmqpType.SYMBOL, 0xB3: AmqpType.SYMBOL,
    0x45: AmqpType.LIST, 0xC0: AmqpType.LIST, 0xD0: AmqpType.LIST,
    0xC1: AmqpType.MAP, 0xD1: AmqpType.MAP, 0xE0: AmqpType.ARRAY, 0xF0: AmqpType.ARRAY,
}
_ZERO_WIDTH = frozenset({0x40, 0x41, 0x42, 0x43, 0x44, 0x45})


def _array_elements(buf: bytes, pos: int, end: int, count: int, depth: int) -> Array:
    if depth > MAX_DEPTH:
        raise DecodeError("values nested too deeply", pos)
    if pos >= end:
        raise DecodeError("array has no element constructor", pos)
    descriptor = None
    if buf[pos] == 0x00:
        if pos + 1 >= end:
            raise DecodeError("array descriptor missing", pos)
        descriptor, pos = _DECODERS[buf[pos + 1]](buf, pos + 2, end, depth + 1)
        if pos >= end:
            raise DecodeError("array has no element constructor", pos)
    code = buf[pos]
    pos += 1
    element_type = _CODE_TO_TYPE.get(code)
    if element_type is None:
        raise DecodeError(f"invalid array element format code 0x{code:02x}", pos - 1)
    if code in _ZERO_WIDTH:
        left = _zero_width_left[0] - count
        if left < 0:
            raise DecodeError(f"too many zero-width array elements ({count} more)", pos)
        _zero_width_left[0] = left
    elif count > end - pos:
        raise DecodeError(f"array count {count} exceeds its {end - pos} bytes", pos)
    decoder = _DECODERS[code]
    items = []
    for _ in range(count):
        value, pos = decoder(buf, pos, end, depth + 1)
        items.append(value)
    if pos != end:
        raise DecodeError(f"array has {end - pos} bytes after its last element", pos)
    return Array(element_type, items, descriptor)


def _array8(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 2, end)
    size = buf[pos]
    stop = pos + 1 + size
    if size < 1 or stop > end:
        raise DecodeError(f"array size {size} does not fit the {end - pos - 1} bytes left", pos)
    return _array_elements(buf, pos + 2, stop, buf[pos + 1], depth), stop


def _array32(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    _need(pos, 8, end)
    size, count = _u32u32(buf, pos)
    stop = pos + 4 + size
    if size < 4 or stop > end:
        raise DecodeError(f"array size {size} does not fit the {end - pos - 4} bytes left", pos)
    return _array_elements(buf, pos + 8, stop, count, depth), stop


def _described(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise DecodeError("values nested too deeply", pos)
    if pos >= end:
        raise DecodeError("described type has no descriptor", pos)
    start = pos
    if buf[pos] == 0x53 and pos + 1 < end:
        fast = FAST_DESCRIBED[buf[pos + 1]]
        if fast is not None:
            return fast(buf, pos + 2, end, depth + 1)
    descriptor, pos = _DECODERS[buf[pos]](buf, pos + 1, end, depth + 1)
    if pos >= end:
        raise DecodeError("described type has no value", pos)
    value, pos = _DECODERS[buf[pos]](buf, pos + 1, end, depth + 1)
    if type(descriptor) is ULong or type(descriptor) is Symbol:
        make = DESCRIBED_TYPES.get(descriptor)
        if make is not None:
            try:
                return make(value), pos
            except DecodeError as exc:
                raise DecodeError(f"{exc.description}", start) from None
            except (TypeError, ValueError) as exc:
                raise DecodeError(f"invalid {descriptor!r}: {exc}", start) from None
    return Described(descriptor, value), pos


_DECODERS: list[Decoder] = [_bad_code] * 256
for _code, _fn in {
    0x00: _described,
    0x40: _null, 0x41: _true, 0x42: _false, 0x56: _boolean,
    0x50: _ubyte, 0x60: _ushort, 0x70: _uint, 0x52: _smalluint, 0x43: _uint0,
    0x80: _ulong, 0x53: _smallulong, 0x44: _ulong0,
    0x51: _byte, 0x61: _short, 0x71: _int, 0x54: _smallint, 0x81: _long, 0x55: _smalllong,
    0x72: _float, 0x82: _double, 0x74: _decimal32, 0x84: _decimal64, 0x94: _decimal128,
    0x73: _char, 0x83: _timestamp, 0x98: _uuid,
    0xA0: _vbin8, 0xB0: _vbin32, 0xA1: _str8, 0xB1: _str32, 0xA3: _sym8, 0xB3: _sym32,
    0x45: _list0, 0xC0: _list8, 0xD0: _list32, 0xC1: _map8, 0xD1: _map32,
    0xE0: _array8, 0xF0: _array32,
}.items():
    _DECODERS[_code] = _fn


def decode(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[object, int]:
    """Decode one value starting at `pos`; return it and the offset after it."""
    if end is None:
        end = len(buf)
    if pos >= end:
        raise DecodeError("no bytes to decode", pos)
    _zero_width_left[0] = MAX_ZERO_WIDTH_ARRAY
    try:
        return _DECODERS[buf[pos]](buf, pos + 1, end, 0)
    except RecursionError:
        raise DecodeError("values nested too deeply", pos) from None


def decode_all(buf: bytes) -> list[object]:
    """Decode a buffer that holds a sequence of values and nothing else."""
    values = []
    pos, end = 0, len(buf)
    while pos < end:
        value, pos = decode(buf, pos, end)
        values.append(value)
    return values


# --- skipping ----------------------------------------------------------------
# Locating message sections must not decode their bodies; `skip` walks over one
# encoded value using only the size information of the encoding.

_FIXED_WIDTH: dict[int, int] = {
    0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0,
    0x50: 1, 0x51: 1, 0x52: 1, 0x53: 1, 0x54: 1, 0x55: 1, 0x56: 1,
    0x60: 2, 0x61: 2,
    0x70: 4, 0x71: 4, 0x72: 4, 0x73: 4, 0x74: 4,
    0x80: 8, 0x81: 8, 0x82: 8, 0x83: 8, 0x84: 8,
    0x94: 16, 0x98: 16,
}


def skip(buf: bytes, pos: int, end: int, depth: int = 0) -> int:
    """Offset just after the encoded value starting at `pos`."""
    if pos >= end:
        raise DecodeError("no value to skip", pos)
    if depth > MAX_DEPTH:
        raise DecodeError("values nested too deeply", pos)
    code = buf[pos]
    pos += 1
    if code == 0x00:
        pos = skip(buf, pos, end, depth + 1)
        return skip(buf, pos, end, depth + 1)
    width = _FIXED_WIDTH.get(code)
    if width is not None:
        stop = pos + width
    elif code & 0xF0 in (0xA0, 0xC0, 0xE0) and code in _CODE_TO_TYPE:
        _need(pos, 1, end)
        stop = pos + 1 + buf[pos]
    elif code & 0xF0 in (0xB0, 0xD0, 0xF0) and code in _CODE_TO_TYPE:
        _need(pos, 4, end)
        stop = pos + 4 + _u32(buf, pos)[0]
    else:
        raise DecodeError(f"invalid format code 0x{code:02x}", pos - 1)
    if stop > end:
        raise DecodeError(f"value of {stop - pos} bytes, {end - pos} left", pos)
    return stop
