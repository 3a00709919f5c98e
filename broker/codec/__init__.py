"""AMQP 1.0 type system (part 1 of the spec): pure, no I/O."""

from __future__ import annotations

# Every composite registered whichever codec module is imported first: a
# field's `requires` (attach's source, disposition's state) is resolved when
# its decoder is generated, and may name a type from another module.
import broker.codec.messaging  # noqa: F401  (imports the performatives too)
from broker.codec.decode import decode, decode_all, skip
from broker.codec.encode import encode, encode_into
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

__all__ = [
    "AmqpType",
    "Array",
    "Byte",
    "Char",
    "Decimal32",
    "Decimal64",
    "Decimal128",
    "Described",
    "Float",
    "FormatCode",
    "Int",
    "Long",
    "Short",
    "Symbol",
    "Timestamp",
    "UByte",
    "UInt",
    "ULong",
    "UShort",
    "decode",
    "decode_all",
    "encode",
    "encode_into",
    "skip",
]
