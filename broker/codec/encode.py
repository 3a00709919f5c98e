"""Python values → AMQP bytes, always in the most compact encoding (§1.6).

The encoder dispatches on the exact Python type of a value (a dict lookup, no
isinstance chain) because it runs for every field of every frame.  Composite
classes register themselves in `ENCODERS` when they are defined, so this module
knows nothing about performatives.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

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
from broker.errors import EncodeError

Encoder = Callable[[bytearray, object], None]

_B = struct.Struct(">B").pack
_b = struct.Struct(">b").pack
_H = struct.Struct(">H").pack
_h = struct.Struct(">h").pack
_I = struct.Struct(">I").pack
_i = struct.Struct(">i").pack
_Q = struct.Struct(">Q").pack
_q = struct.Struct(">q").pack
_f = struct.Struct(">f").pack
_d = struct.Struct(">d").pack
_BI = struct.Struct(">BI").pack
_BB = struct.Struct(">BB").pack
_BBB = struct.Struct(">BBB").pack
_BII = struct.Struct(">BII").pack

_TRUE = b"\x41"
_FALSE = b"\x42"


def _check(ok: bool, value: object, what: str) -> None:
    if not ok:
        raise EncodeError(f"{value!r} does not fit in AMQP {what}")


def enc_null(out: bytearray, value: object) -> None:
    out.append(0x40)


def enc_bool(out: bytearray, value: object) -> None:
    out += _TRUE if value else _FALSE


def enc_ubyte(out: bytearray, v: int) -> None:
    _check(0 <= v <= 0xFF, v, "ubyte")
    out += _BB(0x50, v)


def enc_ushort(out: bytearray, v: int) -> None:
    _check(0 <= v <= 0xFFFF, v, "ushort")
    out.append(0x60)
    out += _H(v)


def enc_uint(out: bytearray, v: int) -> None:
    if v == 0:
        out.append(0x43)
    elif 0 < v < 256:
        out += _BB(0x52, v)
    else:
        _check(0 <= v <= 0xFFFFFFFF, v, "uint")
        out += _BI(0x70, v)


def enc_ulong(out: bytearray, v: int) -> None:
    if v == 0:
        out.append(0x44)
    elif 0 < v < 256:
        out += _BB(0x53, v)
    else:
        _check(0 <= v <= 0xFFFFFFFFFFFFFFFF, v, "ulong")
        out.append(0x80)
        out += _Q(v)


def enc_byte(out: bytearray, v: int) -> None:
    _check(-128 <= v <= 127, v, "byte")
    out.append(0x51)
    out += _b(v)


def enc_short(out: bytearray, v: int) -> None:
    _check(-0x8000 <= v <= 0x7FFF, v, "short")
    out.append(0x61)
    out += _h(v)


def enc_int(out: bytearray, v: int) -> None:
    if -128 <= v <= 127:
        out.append(0x54)
        out += _b(v)
    else:
        _check(-0x80000000 <= v <= 0x7FFFFFFF, v, "int")
        out.append(0x71)
        out += _i(v)


def enc_long(out: bytearray, v: int) -> None:
    if -128 <= v <= 127:
        out.append(0x55)
        out += _b(v)
    else:
        _check(-0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF, v, "long")
        out.append(0x81)
        out += _q(v)


def enc_timestamp(out: bytearray, v: int) -> None:
    _check(-0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF, v, "timestamp")
    out.append(0x83)
    out += _q(v)


def enc_float(out: bytearray, v: float) -> None:
    try:
        packed = _f(v)
    except OverflowError:
        raise EncodeError(f"{v!r} does not fit in AMQP float") from None
    out.append(0x72)
    out += packed


def enc_double(out: bytearray, v: float) -> None:
    out.append(0x82)
    out += _d(v)


def enc_decimal32(out: bytearray, v: bytes) -> None:
    out.append(0x74)
    out += v


def enc_decimal64(out: bytearray, v: bytes) -> None:
    out.append(0x84)
    out += v


def enc_decimal128(out: bytearray, v: bytes) -> None:
    out.append(0x94)
    out += v


def enc_char(out: bytearray, v: str) -> None:
    _check(len(v) == 1 and not 0xD800 <= ord(v) <= 0xDFFF, v, "char")
    out.append(0x73)
    out += _I(ord(v))


def enc_uuid(out: bytearray, v: uuid.UUID) -> None:
    out.append(0x98)
    out += v.bytes


def _enc_var(out: bytearray, data: bytes, code8: int, code32: int) -> None:
    n = len(data)
    if n < 256:
        out += _BB(code8, n)
    else:
        _check(n <= 0xFFFFFFFF, "<data>", "variable-width value")
        out += _BI(code32, n)
    out += data


def enc_binary(out: bytearray, v: bytes) -> None:
    _enc_var(out, v, 0xA0, 0xB0)


def enc_string(out: bytearray, v: str) -> None:
    try:
        data = v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string is not valid Unicode: {exc}") from None
    _enc_var(out, data, 0xA1, 0xB1)


def enc_symbol(out: bytearray, v: str) -> None:
    try:
        data = v.encode("ascii")
    except UnicodeEncodeError:
        raise EncodeError(f"symbol {v!r} is not ASCII") from None
    _enc_var(out, data, 0xA3, 0xB3)


def _enc_compound(out: bytearray, body: bytes | bytearray, count: int, code8: int, code32: int) -> None:
    size = len(body) + 1
    if size < 256 and count < 256:
        out += _BBB(code8, size, count)
    else:
        out += _BII(code32, len(body) + 4, count)
    out += body


def enc_list(out: bytearray, v: list[object]) -> None:
    if not v:
        out.append(0x45)
        return
    body = bytearray()
    for item in v:
        ENCODERS.get(type(item), _enc_fallback)(body, item)
    _enc_compound(out, body, len(v), 0xC0, 0xD0)


def enc_map(out: bytearray, v: dict[object, object]) -> None:
    body = bytearray()
    get = ENCODERS.get
    for key, item in v.items():
        get(type(key), _enc_fallback)(body, key)
        get(type(item), _enc_fallback)(body, item)
    _enc_compound(out, body, 2 * len(v), 0xC1, 0xD1)


def enc_described(out: bytearray, v: Described) -> None:
    out.append(0x00)
    encode_into(out, v.descriptor)
    encode_into(out, v.value)


# --- arrays ------------------------------------------------------------------
# An array has one constructor for all its elements, so each element is written
# without its own format code, at a width that fits every element.

def _fits_small(items: tuple[object, ...], lo: int, hi: int) -> bool:
    return all(lo <= i <= hi for i in items)  # type: ignore[operator]


def _array_payload(
    element_type: AmqpType, items: tuple[object, ...]
) -> tuple[int, Callable[[bytearray, object], None]]:
    """Choose the element format code and a writer for one element's payload."""
    t = element_type
    if t is AmqpType.NULL:
        return 0x40, lambda out, v: None
    if t is AmqpType.BOOLEAN:
        return 0x56, lambda out, v: out.append(1 if v else 0)
    if t is AmqpType.UBYTE:
        return 0x50, lambda out, v: out.append(v)
    if t is AmqpType.USHORT:
        return 0x60, lambda out, v: out.extend(_H(v))
    if t is AmqpType.UINT:
        if _fits_small(items, 0, 255):
            return 0x52, lambda out, v: out.append(v)
        return 0x70, lambda out, v: out.extend(_I(v))
    if t is AmqpType.ULONG:
        if _fits_small(items, 0, 255):
            return 0x53, lambda out, v: out.append(v)
        return 0x80, lambda out, v: out.extend(_Q(v))
    if t is AmqpType.BYTE:
        return 0x51, lambda out, v: out.extend(_b(v))
    if t is AmqpType.SHORT:
        return 0x61, lambda out, v: out.extend(_h(v))
    if t is AmqpType.INT:
        if _fits_small(items, -128, 127):
            return 0x54, lambda out, v: out.extend(_b(v))
        return 0x71, lambda out, v: out.extend(_i(v))
    if t is AmqpType.LONG:
        if _fits_small(items, -128, 127):
            return 0x55, lambda out, v: out.extend(_b(v))
        return 0x81, lambda out, v: out.extend(_q(v))
    if t is AmqpType.FLOAT:
        return 0x72, lambda out, v: out.extend(_f(v))
    if t is AmqpType.DOUBLE:
        return 0x82, lambda out, v: out.extend(_d(v))
    if t is AmqpType.DECIMAL32:
        return 0x74, lambda out, v: out.extend(v)
    if t is AmqpType.DECIMAL64:
        return 0x84, lambda out, v: out.extend(v)
    if t is AmqpType.DECIMAL128:
        return 0x94, lambda out, v: out.extend(v)
    if t is AmqpType.CHAR:
        return 0x73, lambda out, v: out.extend(_I(ord(v)))
    if t is AmqpType.TIMESTAMP:
        return 0x83, lambda out, v: out.extend(_q(v))
    if t is AmqpType.UUID:
        return 0x98, lambda out, v: out.extend(v.bytes)
    if t in (AmqpType.BINARY, AmqpType.STRING, AmqpType.SYMBOL):
        codec = {AmqpType.BINARY: None, AmqpType.STRING: "utf-8", AmqpType.SYMBOL: "ascii"}[t]
        raw: list[bytes] = [
            i if codec is None else i.encode(codec)  # type: ignore[attr-defined,misc]
            for i in items
        ]
        small = all(len(r) < 256 for r in raw)
        base = {AmqpType.BINARY: 0xA0, AmqpType.STRING: 0xA1, AmqpType.SYMBOL: 0xA3}[t]
        if small:
            def w8(out: bytearray, v: Any) -> None:
                d = v if codec is None else v.encode(codec)
                out.append(len(d))
                out += d
            return base, w8

        def w32(out: bytearray, v: Any) -> None:
            d = v if codec is None else v.encode(codec)
            out += _I(len(d))
            out += d
        return base + 0x10, w32
    if t is AmqpType.LIST:
        def wlist(out: bytearray, v: object) -> None:
            body = bytearray()
            for item in v:  # type: ignore[attr-defined]
                encode_into(body, item)
            out += _I(len(body) + 4)
            out += _I(len(v))  # type: ignore[arg-type]
            out += body
        return 0xD0, wlist
    if t is AmqpType.MAP:
        def wmap(out: bytearray, v: object) -> None:
            body = bytearray()
            for key, item in v.items():  # type: ignore[attr-defined]
                encode_into(body, key)
                encode_into(body, item)
            out += _I(len(body) + 4)
            out += _I(2 * len(v))  # type: ignore[arg-type]
            out += body
        return 0xD1, wmap
    if t is AmqpType.ARRAY:
        def warr(out: bytearray, v: object) -> None:
            if not isinstance(v, Array):
                raise EncodeError(f"array element {v!r} is not an Array")
            tmp = bytearray()
            _array_body(tmp, v)
            out += _I(len(tmp))
            out += tmp
        return 0xF0, warr
    raise EncodeError(f"arrays of {t} are not supported")


# Element checks the writers above cannot make themselves without writing
# malformed bytes (a 3-byte decimal32) or silently dropping values (nulls).
_ARRAY_ITEM_CHECKS: dict[AmqpType, Callable[[object], bool]] = {
    AmqpType.NULL: lambda v: v is None,
    AmqpType.DECIMAL32: lambda v: len(v) == 4,  # type: ignore[arg-type]
    AmqpType.DECIMAL64: lambda v: len(v) == 8,  # type: ignore[arg-type]
    AmqpType.DECIMAL128: lambda v: len(v) == 16,  # type: ignore[arg-type]
    AmqpType.CHAR: lambda v: len(v) == 1 and not 0xD800 <= ord(v) <= 0xDFFF,  # type: ignore[arg-type]
}


def _array_elements(out: bytearray, v: Array) -> None:
    """Descriptor, element constructor and elements; EncodeError if an element does not fit."""
    try:
        code, write = _array_payload(v.element_type, v.items)
        if v.descriptor is not None:
            out.append(0x00)
            encode_into(out, v.descriptor)
        out.append(code)
        check = _ARRAY_ITEM_CHECKS.get(v.element_type)
        for item in v.items:
            if check is not None and not check(item):
                raise EncodeError(f"{item!r} is not an AMQP {v.element_type.value}")
            write(out, item)
    except EncodeError:
        raise
    except (struct.error, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise EncodeError(f"array of {v.element_type.value}: {exc}") from None


def _array_body(out: bytearray, v: Array) -> None:
    """count + constructor + elements, i.e. an array32 payload after its size."""
    out += _I(len(v.items))
    _array_elements(out, v)


def enc_array(out: bytearray, v: Array) -> None:
    body = bytearray()
    _array_elements(body, v)
    count = len(v.items)
    if len(body) + 1 < 256 and count < 256:
        out += _BBB(0xE0, len(body) + 1, count)
    else:
        out += _BII(0xF0, len(body) + 4, count)
    out += body


def _enc_fallback(out: bytearray, value: object) -> None:
    for base, encoder in _BASE_ENCODERS:
        if isinstance(value, base):
            encoder(out, value)
            return
    raise EncodeError(f"cannot encode {type(value).__name__} as AMQP: {value!r}")


ENCODERS: dict[type, Encoder] = {
    type(None): enc_null,
    bool: enc_bool,
    UByte: enc_ubyte,  # type: ignore[dict-item]
    UShort: enc_ushort,  # type: ignore[dict-item]
    UInt: enc_uint,  # type: ignore[dict-item]
    ULong: enc_ulong,  # type: ignore[dict-item]
    Byte: enc_byte,  # type: ignore[dict-item]
    Short: enc_short,  # type: ignore[dict-item]
    Int: enc_int,  # type: ignore[dict-item]
    Long: enc_long,  # type: ignore[dict-item]
    int: enc_long,  # type: ignore[dict-item]
    Timestamp: enc_timestamp,  # type: ignore[dict-item]
    Float: enc_float,  # type: ignore[dict-item]
    float: enc_double,  # type: ignore[dict-item]
    Decimal32: enc_decimal32,  # type: ignore[dict-item]
    Decimal64: enc_decimal64,  # type: ignore[dict-item]
    Decimal128: enc_decimal128,  # type: ignore[dict-item]
    Char: enc_char,  # type: ignore[dict-item]
    uuid.UUID: enc_uuid,  # type: ignore[dict-item]
    bytes: enc_binary,  # type: ignore[dict-item]
    bytearray: enc_binary,  # type: ignore[dict-item]
    memoryview: lambda out, v: enc_binary(out, bytes(v)),  # type: ignore[call-overload]
    str: enc_string,  # type: ignore[dict-item]
    Symbol: enc_symbol,  # type: ignore[dict-item]
    list: enc_list,  # type: ignore[dict-item]
    tuple: lambda out, v: enc_list(out, list(v)),  # type: ignore[call-overload]
    dict: enc_map,  # type: ignore[dict-item]
    Described: enc_described,  # type: ignore[dict-item]
    Array: enc_array,  # type: ignore[dict-item]
}

# Subclasses of the plain types (e.g. an IntEnum) encode as their base type.
_BASE_ENCODERS: list[tuple[type, Encoder]] = [
    (bool, enc_bool),
    (Symbol, enc_symbol),  # type: ignore[list-item]
    (str, enc_string),  # type: ignore[list-item]
    (int, enc_long),  # type: ignore[list-item]
    (float, enc_double),  # type: ignore[list-item]
    (bytes, enc_binary),  # type: ignore[list-item]
    (dict, enc_map),  # type: ignore[list-item]
    (list, enc_list),  # type: ignore[list-item]
]

# Encoders by AMQP type, for composite fields whose declared type wins over the
# Python type of the value (a handle given as plain int is still a uint).
TYPE_ENCODERS: dict[AmqpType, Encoder] = {
    AmqpType.NULL: enc_null,
    AmqpType.BOOLEAN: enc_bool,
    AmqpType.UBYTE: enc_ubyte,  # type: ignore[dict-item]
    AmqpType.USHORT: enc_ushort,  # type: ignore[dict-item]
    AmqpType.UINT: enc_uint,  # type: ignore[dict-item]
    AmqpType.ULONG: enc_ulong,  # type: ignore[dict-item]
    AmqpType.BYTE: enc_byte,  # type: ignore[dict-item]
    AmqpType.SHORT: enc_short,  # type: ignore[dict-item]
    AmqpType.INT: enc_int,  # type: ignore[dict-item]
    AmqpType.LONG: enc_long,  # type: ignore[dict-item]
    AmqpType.FLOAT: enc_float,  # type: ignore[dict-item]
    AmqpType.DOUBLE: enc_double,  # type: ignore[dict-item]
    AmqpType.DECIMAL32: enc_decimal32,  # type: ignore[dict-item]
    AmqpType.DECIMAL64: enc_decimal64,  # type: ignore[dict-item]
    AmqpType.DECIMAL128: enc_decimal128,  # type: ignore[dict-item]
    AmqpType.CHAR: enc_char,  # type: ignore[dict-item]
    AmqpType.TIMESTAMP: enc_timestamp,  # type: ignore[dict-item]
    AmqpType.UUID: enc_uuid,  # type: ignore[dict-item]
    AmqpType.BINARY: enc_binary,  # type: ignore[dict-item]
    AmqpType.STRING: enc_string,  # type: ignore[dict-item]
    AmqpType.SYMBOL: enc_symbol,  # type: ignore[dict-item]
    AmqpType.LIST: enc_list,  # type: ignore[dict-item]
    AmqpType.MAP: enc_map,  # type: ignore[dict-item]
    AmqpType.ARRAY: enc_array,  # type: ignore[dict-item]
}


def encode_into(out: bytearray, value: object) -> None:
    """Append the AMQP encoding of `value` to `out`."""
    ENCODERS.get(type(value), _enc_fallback)(out, value)


def encode(value: object) -> bytes:
    """The AMQP encoding of `value`."""
    out = bytearray()
    ENCODERS.get(type(value), _enc_fallback)(out, value)
    return bytes(out)
