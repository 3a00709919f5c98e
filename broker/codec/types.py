"""Python representations of the AMQP 1.0 primitive types (§1.6).

Plain Python values stand for the AMQP types they map to without ambiguity:
`None` null, `bool` boolean, `int` long, `float` double, `str` string,
`bytes` binary, `uuid.UUID` uuid, `list` list, `dict` map.  Where AMQP needs a
distinction Python does not make, a small wrapper keeps it, so that decoding
and re-encoding never changes a value's AMQP type.  The integer wrappers are
`int` subclasses and compare equal to plain ints, which keeps engine code that
does arithmetic on them simple.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Self


class FormatCode(enum.IntEnum):
    """Primitive format codes (§1.6)."""

    DESCRIBED = 0x00
    NULL = 0x40
    BOOLEAN = 0x56
    TRUE = 0x41
    FALSE = 0x42
    UBYTE = 0x50
    USHORT = 0x60
    UINT = 0x70
    SMALLUINT = 0x52
    UINT0 = 0x43
    ULONG = 0x80
    SMALLULONG = 0x53
    ULONG0 = 0x44
    BYTE = 0x51
    SHORT = 0x61
    INT = 0x71
    SMALLINT = 0x54
    LONG = 0x81
    SMALLLONG = 0x55
    FLOAT = 0x72
    DOUBLE = 0x82
    DECIMAL32 = 0x74
    DECIMAL64 = 0x84
    DECIMAL128 = 0x94
    CHAR = 0x73
    TIMESTAMP = 0x83
    UUID = 0x98
    VBIN8 = 0xA0
    VBIN32 = 0xB0
    STR8 = 0xA1
    STR32 = 0xB1
    SYM8 = 0xA3
    SYM32 = 0xB3
    LIST0 = 0x45
    LIST8 = 0xC0
    LIST32 = 0xD0
    MAP8 = 0xC1
    MAP32 = 0xD1
    ARRAY8 = 0xE0
    ARRAY32 = 0xF0


class AmqpType(enum.Enum):
    """The AMQP types as named in §1.6, independent of their encoding width."""

    NULL = "null"
    BOOLEAN = "boolean"
    UBYTE = "ubyte"
    USHORT = "ushort"
    UINT = "uint"
    ULONG = "ulong"
    BYTE = "byte"
    SHORT = "short"
    INT = "int"
    LONG = "long"
    FLOAT = "float"
    DOUBLE = "double"
    DECIMAL32 = "decimal32"
    DECIMAL64 = "decimal64"
    DECIMAL128 = "decimal128"
    CHAR = "char"
    TIMESTAMP = "timestamp"
    UUID = "uuid"
    BINARY = "binary"
    STRING = "string"
    SYMBOL = "symbol"
    LIST = "list"
    MAP = "map"
    ARRAY = "array"


class _RangedInt(int):
    """An int that refuses values its AMQP type cannot hold."""

    __slots__ = ()
    MIN: ClassVar[int] = 0
    MAX: ClassVar[int] = 0

    def __new__(cls, value: int = 0) -> Self:
        v = int.__new__(cls, value)
        if not cls.MIN <= v <= cls.MAX:
            raise ValueError(f"{cls.__name__} out of range: {value}")
        return v

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class UByte(_RangedInt):
    __slots__ = ()
    MAX = 0xFF


class UShort(_RangedInt):
    __slots__ = ()
    MAX = 0xFFFF


class UInt(_RangedInt):
    __slots__ = ()
    MAX = 0xFFFFFFFF


class ULong(_RangedInt):
    __slots__ = ()
    MAX = 0xFFFFFFFFFFFFFFFF


class Byte(_RangedInt):
    __slots__ = ()
    MIN, MAX = -0x80, 0x7F


class Short(_RangedInt):
    __slots__ = ()
    MIN, MAX = -0x8000, 0x7FFF


class Int(_RangedInt):
    __slots__ = ()
    MIN, MAX = -0x80000000, 0x7FFFFFFF


class Long(_RangedInt):
    __slots__ = ()
    MIN, MAX = -0x8000000000000000, 0x7FFFFFFFFFFFFFFF


class Timestamp(_RangedInt):
    """Milliseconds since the Unix epoch (§1.6.17), signed 64-bit."""

    __slots__ = ()
    MIN, MAX = -0x8000000000000000, 0x7FFFFFFFFFFFFFFF


class Float(float):
    """IEEE 754 binary32; plain `float` is AMQP double."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Float({float(self)!r})"


class Char(str):
    """One UTF-32 code point (§1.6.16)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        if len(value) != 1:
            raise ValueError("Char holds exactly one code point")
        return str.__new__(cls, value)

    def __repr__(self) -> str:
        return f"Char({str(self)!r})"


class Symbol(str):
    """An ASCII symbolic name (§1.6.21)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str(self)!r})"


class _FixedBytes(bytes):
    """Opaque IEEE 754 decimal; we carry the bytes, never the arithmetic."""

    SIZE: ClassVar[int] = 0

    def __new__(cls, value: bytes) -> Self:
        if len(value) != cls.SIZE:
            raise ValueError(f"{cls.__name__} needs {cls.SIZE} bytes")
        return bytes.__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({bytes(self)!r})"


class Decimal32(_FixedBytes):
    SIZE = 4


class Decimal64(_FixedBytes):
    SIZE = 8


class Decimal128(_FixedBytes):
    SIZE = 16


@dataclass(frozen=True, slots=True)
class Described:
    """A described value whose descriptor we have no composite class for (§1.2)."""

    descriptor: object
    value: object


@dataclass(frozen=True, slots=True)
class Array:
    """A homogeneous AMQP array (§1.6.24).

    `element_type` names the AMQP type every element has; when `descriptor` is
    set, every element is a described value with that descriptor and the items
    hold the undescribed values.  The encoder picks the element width.
    """

    element_type: AmqpType
    items: tuple[object, ...] = field(default_factory=tuple)
    descriptor: object = None

    def __init__(
        self, element_type: AmqpType, items: Iterable[object] = (), descriptor: object = None
    ) -> None:
        object.__setattr__(self, "element_type", element_type)
        object.__setattr__(self, "items", tuple(items))
        object.__setattr__(self, "descriptor", descriptor)
