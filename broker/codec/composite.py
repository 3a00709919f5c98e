"""Declarative composite types (§1.4): one class per type, fields in spec order.

A composite class is a frozen, slotted, keyword-only dataclass decorated with
`@composite(code, name)`.  Each field is declared with `f(type, ...)`, giving
its AMQP type, whether it is mandatory, its default and whether it is
`multiple`.  From that one declaration the decorator builds the encoder (a
described list, trailing nulls trimmed, defaults written as null) and the
decoder (null → default, mandatory checks, light type checks with the
coercions real clients need), and registers both by numeric and symbolic
descriptor, so generic `decode()` returns instances of these classes.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from broker.errors import DecodeError, EncodeError
from broker.codec.decode import DESCRIBED_TYPES
from broker.codec.encode import ENCODERS, TYPE_ENCODERS, enc_array, enc_ulong, encode_into
from broker.codec.types import (
    AmqpType,
    Array,
    Symbol,
)

ANY = None  # field type for "*": any AMQP value, encoded by its own type

_BI = struct.Struct(">BI").pack
_BBB = struct.Struct(">BBB").pack
_BII = struct.Struct(">BII").pack


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    amqp_type: AmqpType | None
    mandatory: bool = False
    default: object = None
    multiple: bool = False


def f(
    amqp_type: AmqpType | None,
    *,
    mandatory: bool = False,
    default: object = None,
    multiple: bool = False,
) -> Any:
    """Declare one composite field (a dataclass field carrying its AMQP spec)."""
    spec = FieldSpec(amqp_type, mandatory, default, multiple)
    meta = {"amqp": spec}
    if mandatory:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_INT_TYPES = {
    AmqpType.UBYTE: (0, 0xFF),
    AmqpType.USHORT: (0, 0xFFFF),
    AmqpType.UINT: (0, 0xFFFFFFFF),
    AmqpType.ULONG: (0, 0xFFFFFFFFFFFFFFFF),
    AmqpType.BYTE: (-0x80, 0x7F),
    AmqpType.SHORT: (-0x8000, 0x7FFF),
    AmqpType.INT: (-0x80000000, 0x7FFFFFFF),
    AmqpType.LONG: (-(2**63), 2**63 - 1),
    AmqpType.TIMESTAMP: (-(2**63), 2**63 - 1),
}


def _make_checker(name: str, t: AmqpType | None) -> Callable[[object], object]:
    """Validate one decoded element of a field, coercing where clients are sloppy."""
    if t is None:
        return lambda v: v
    if t in _INT_TYPES:
        lo, hi = _INT_TYPES[t]

        def check_int(v: object) -> object:
            if type(v) is bool or not isinstance(v, int) or not lo <= v <= hi:
                raise DecodeError(f"field {name} must be {t.value}, got {v!r}")
            return v

        return check_int
    if t is AmqpType.BOOLEAN:

        def check_bool(v: object) -> object:
            if type(v) is not bool:
                raise DecodeError(f"field {name} must be boolean, got {v!r}")
            return v

        return check_bool
    if t is AmqpType.SYMBOL:

        def check_symbol(v: object) -> object:
            if type(v) is Symbol:
                return v
            if isinstance(v, str):  # some clients send strings where symbols belong
                return Symbol(v)
            raise DecodeError(f"field {name} must be symbol, got {v!r}")

        return check_symbol
    expected: tuple[type, ...] = {
        AmqpType.STRING: (str,),
        AmqpType.BINARY: (bytes,),
        AmqpType.MAP: (dict,),
        AmqpType.LIST: (list,),
    }.get(t, (object,))

    def check_other(v: object) -> object:
        if not isinstance(v, expected):
            raise DecodeError(f"field {name} must be {t.value}, got {v!r}")
        return v

    return check_other


T = TypeVar("T")


def composite(code: int, name: str) -> Callable[[type[T]], type[T]]:
    """Turn a class with `f()` fields into an AMQP composite type."""

    def wrap(cls: type[T]) -> type[T]:
        dc = dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)
        fields = dataclasses.fields(dc)  # type: ignore[arg-type]
        specs: list[FieldSpec] = [fl.metadata["amqp"] for fl in fields]
        names = [fl.name for fl in fields]
        count = len(fields)
        descriptor_bytes = bytearray(b"\x00")
        enc_ulong(descriptor_bytes, code)
        header = bytes(descriptor_bytes)

        # -- encoder ---------------------------------------------------------
        field_encoders: list[Callable[[bytearray, object], None]] = []
        for spec in specs:
            if spec.multiple:
                field_encoders.append(_multiple_encoder(spec.amqp_type))
            elif spec.amqp_type is None:
                field_encoders.append(encode_into)
            else:
                field_encoders.append(TYPE_ENCODERS[spec.amqp_type])
        defaults = [spec.default for spec in specs]
        plan = list(zip(names, field_encoders, defaults))

        def encode_composite(out: bytearray, obj: object) -> None:
            values = []
            last = -1
            for i, (fname, _, default) in enumerate(plan):
                v = getattr(obj, fname)
                if v is not None and default is not None and v == default:
                    v = None
                values.append(v)
                if v is not None:
                    last = i
            out += header
            if last < 0:
                out.append(0x45)
                return
            body = bytearray()
            for i in range(last + 1):
                v = values[i]
                if v is None:
                    body.append(0x40)
                else:
                    try:
                        plan[i][1](body, v)
                    except EncodeError as exc:
                        raise EncodeError(f"{cls.__name__}.{names[i]}: {exc}") from None
            n = len(body) + 1
            if n < 256:
                out += _BBB(0xC0, n, last + 1)
            else:
                out += _BII(0xD0, len(body) + 4, last + 1)
            out += body

        # -- decoder ---------------------------------------------------------
        checkers = [_make_checker(n, s.amqp_type) for n, s in zip(names, specs)]
        setters = [getattr(dc, n).__set__ for n in names]
        field_plan = list(zip(names, specs, checkers, setters))
        new = object.__new__

        def decode_composite(value: object) -> object:
            if type(value) is not list:
                raise DecodeError(f"{cls.__name__} must be a described list, got {type(value).__name__}")
            n = len(value)
            obj = new(dc)
            for i, (fname, spec, check, setter) in enumerate(field_plan):
                v = value[i] if i < n else None
                if v is None:
                    if spec.mandatory:
                        raise DecodeError(f"{cls.__name__}.{fname} is mandatory")
                    v = spec.default
                elif spec.multiple:
                    items = v.items if type(v) is Array else (v,)
                    v = tuple(check(x) for x in items)
                else:
                    v = check(v)
                setter(obj, v)
            return obj

        dc.DESCRIPTOR_CODE = code  # type: ignore[attr-defined]
        dc.DESCRIPTOR_NAME = Symbol(name)  # type: ignore[attr-defined]
        dc.encode_into = encode_composite  # type: ignore[attr-defined]
        dc.from_described_value = staticmethod(decode_composite)  # type: ignore[attr-defined]
        ENCODERS[dc] = encode_composite
        DESCRIBED_TYPES[code] = decode_composite
        DESCRIBED_TYPES[Symbol(name)] = decode_composite
        return dc  # type: ignore[return-value]

    return wrap


def _multiple_encoder(t: AmqpType | None) -> Callable[[bytearray, object], None]:
    """A `multiple` field is written as an array, or as the single value when it has one."""

    def enc(out: bytearray, v: object) -> None:
        if isinstance(v, (list, tuple)):
            if t is None:
                encode_into(out, list(v))
            elif len(v) == 1:
                TYPE_ENCODERS[t](out, v[0])
            else:
                enc_array(out, Array(t, v))
        elif t is None:
            encode_into(out, v)
        else:
            TYPE_ENCODERS[t](out, v)

    return enc


class Composite:
    """Typing aid: what `@composite` adds to a class."""

    DESCRIPTOR_CODE: ClassVar[int]
    DESCRIPTOR_NAME: ClassVar[Symbol]

