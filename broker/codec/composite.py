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
from typing import Any, TypeVar, dataclass_transform

from broker.codec.decode import _DECODERS, DESCRIBED_TYPES, FAST_DESCRIBED
from broker.codec.encode import ENCODERS, TYPE_ENCODERS, enc_array, enc_ulong, encode_into
from broker.codec.types import (
    AmqpType,
    Array,
    Symbol,
)
from broker.errors import DecodeError, EncodeError

ANY = None  # field type for "*": any AMQP value, encoded by its own type

_u32 = struct.Struct(">I").unpack_from
_u32u32 = struct.Struct(">II").unpack_from
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
            if isinstance(v, str) and v.isascii():  # clients send strings where symbols belong
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


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=())
def composite(code: int, name: str) -> Callable[[type[T]], type[T]]:
    """Turn a class with `f()` fields into an AMQP composite type."""

    def wrap(cls: type[T]) -> type[T]:
        dc = dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)
        fields = dataclasses.fields(dc)  # type: ignore[arg-type]
        specs: list[FieldSpec] = [fl.metadata["amqp"] for fl in fields]
        names = [fl.name for fl in fields]
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
        # The decoders are generated on first use: compiling them for every
        # composite at import time doubled the broker's start-up time.
        generated: dict[str, Callable[..., object]] = {}

        def decode_composite(value: object) -> object:
            finish = generated.get("finish")
            if finish is None:
                finish = generated["finish"] = _make_finisher(dc, cls.__name__, names, specs)
            return finish(value)

        def fast_decode(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
            fast = _make_fast_decoder(dc, cls.__name__, names, specs, decode_composite)
            FAST_DESCRIBED[code] = fast  # replaces this stub
            return fast(buf, pos, end, depth)

        dc.DESCRIPTOR_CODE = code  # type: ignore[attr-defined]
        dc.DESCRIPTOR_NAME = Symbol(name)  # type: ignore[attr-defined]
        dc.encode_into = encode_composite  # type: ignore[attr-defined]
        ENCODERS[dc] = encode_composite
        DESCRIBED_TYPES[code] = decode_composite
        DESCRIBED_TYPES[Symbol(name)] = decode_composite
        if code < 256:
            FAST_DESCRIBED[code] = fast_decode
        return dc

    return wrap


def _make_finisher(
    dc: type, type_name: str, names: list[str], specs: list[FieldSpec]
) -> Callable[[object], object]:
    """Build the function that turns a decoded field list into an instance.

    It is generated as straight-line source, one block per field (the way
    `dataclasses` builds `__init__`), because a loop over field descriptors
    costs several microseconds per transfer frame and this runs for every
    frame.  Each block: null → default (or DecodeError if mandatory), a quick
    exact-type test for the common case, the full checker otherwise.
    """
    env: dict[str, object] = {"new": object.__new__, "cls": dc, "DecodeError": DecodeError,
                              "Array": Array}
    lines = [
        "def finish(values):",
        "    if type(values) is not list:",
        f"        raise DecodeError('{type_name} must be a described list')",
        f"    if len(values) < {len(names)}:",
        f"        values = values + [None] * ({len(names)} - len(values))",
        "    obj = new(cls)",
    ]
    for i, (fname, spec) in enumerate(zip(names, specs)):
        env[f"set{i}"] = getattr(dc, fname).__set__
        env[f"check{i}"] = _make_checker(fname, spec.amqp_type)
        env[f"default{i}"] = spec.default
        lines.append(f"    v = values[{i}]")
        lines.append("    if v is None:")
        if spec.mandatory:
            lines.append(f"        raise DecodeError('{type_name}.{fname} is mandatory')")
        else:
            lines.append(f"        v = default{i}")
        if spec.multiple:
            lines.append("    else:")
            lines.append(f"        v = tuple(check{i}(x) for x in (v.items if type(v) is Array else (v,)))")
        elif spec.amqp_type in _INT_TYPES:
            lo, hi = _INT_TYPES[spec.amqp_type]
            lines.append(f"    elif type(v) is not int or v < {lo} or v > {hi}:")
            lines.append(f"        v = check{i}(v)")
        elif spec.amqp_type is AmqpType.BOOLEAN:
            lines.append("    elif type(v) is not bool:")
            lines.append(f"        v = check{i}(v)")
        elif spec.amqp_type is not None:
            lines.append("    else:")
            lines.append(f"        v = check{i}(v)")
        lines.append(f"    set{i}(obj, v)")
    lines.append("    return obj")
    exec("\n".join(lines), env)  # noqa: S102 - source built above from our own field specs
    return env["finish"]  # type: ignore[return-value]


_UINT_LIKE = (AmqpType.UINT, AmqpType.ULONG, AmqpType.UBYTE, AmqpType.USHORT)


def _make_fast_decoder(
    dc: type, type_name: str, names: list[str], specs: list[FieldSpec],
    slow: Callable[[object], object],
) -> Callable[[bytes, int, int, int], tuple[object, int]]:
    """Decode a composite straight from the bytes, without an intermediate list.

    Generated like `_make_finisher`, with each field's block reading its own
    bytes: unsigned-integer and boolean fields take their common encodings
    inline (the hot path for transfer, flow and disposition), every other
    value goes through the generic table.  Indexing past the buffer and
    struct errors surface as DecodeError; a list whose fields do not end
    exactly at its declared size is rejected.
    """
    env: dict[str, object] = {
        "new": object.__new__, "cls": dc, "DecodeError": DecodeError, "Array": Array,
        "table": _DECODERS, "u32": _u32, "u32u32": _u32u32, "struct_error": struct.error,
        "slow": slow,
    }
    nf = len(names)
    lines = [
        "def fast(buf, pos, end, depth):",
        "    start = pos",
        "    try:",
        "        c = buf[pos]",
        "        if c == 0xC0:",
        "            stop = pos + 2 + buf[pos + 1]",
        "            count = buf[pos + 2]",
        "            pos += 3",
        "        elif c == 0x45:",
        "            stop = pos = pos + 1",
        "            count = 0",
        "        elif c == 0xD0:",
        "            size, count = u32u32(buf, pos + 1)",
        "            stop = pos + 5 + size",
        "            pos += 9",
        "        else:",
        "            value, after = table[c](buf, pos + 1, end, depth)",
        "            return slow(value), after",
        "        if stop > end or count > stop - pos:",
        f"            raise DecodeError('{type_name} list does not fit its bytes', start)",
        "        obj = new(cls)",
    ]
    for i, (fname, spec) in enumerate(zip(names, specs)):
        env[f"set{i}"] = getattr(dc, fname).__set__
        env[f"check{i}"] = _make_checker(fname, spec.amqp_type)
        env[f"default{i}"] = spec.default
        t = spec.amqp_type
        lines.append(f"        if count > {i}:")
        lines.append("            c = buf[pos]")
        lines.append("            if c == 0x40:")
        lines.append("                v = None")
        lines.append("                pos += 1")
        if t in _UINT_LIKE and not spec.multiple:
            lines += [
                "            elif c == 0x52 or c == 0x53 or c == 0x50:",
                "                v = buf[pos + 1]",
                "                pos += 2",
                "            elif c == 0x43 or c == 0x44:",
                "                v = 0",
                "                pos += 1",
                "            elif c == 0x70:",
                "                v = u32(buf, pos + 1)[0]",
                "                pos += 5",
            ]
        elif t is AmqpType.BOOLEAN:
            lines += [
                "            elif c == 0x41:",
                "                v = True",
                "                pos += 1",
                "            elif c == 0x42:",
                "                v = False",
                "                pos += 1",
            ]
        lines += [
            "            else:",
            "                v, pos = table[c](buf, pos + 1, stop, depth + 1)",
            "        else:",
            "            v = None",
            "        if v is None:",
        ]
        if spec.mandatory:
            lines.append(f"            raise DecodeError('{type_name}.{fname} is mandatory', start)")
        else:
            lines.append(f"            v = default{i}")
        if spec.multiple:
            lines.append("        else:")
            lines.append(f"            v = tuple(check{i}(x) for x in (v.items if type(v) is Array else (v,)))")
        elif t in _INT_TYPES:
            lo, hi = _INT_TYPES[t]
            lines.append(f"        elif type(v) is not int or v < {lo} or v > {hi}:")
            lines.append(f"            v = check{i}(v)")
        elif t is AmqpType.BOOLEAN:
            lines.append("        elif type(v) is not bool:")
            lines.append(f"            v = check{i}(v)")
        elif t is not None:
            lines.append("        else:")
            lines.append(f"            v = check{i}(v)")
        lines.append(f"        set{i}(obj, v)")
    lines += [
        f"        for _ in range(count - {nf}):",  # fields of a later spec version: ignored
        "            v, pos = table[buf[pos]](buf, pos + 1, stop, depth + 1)",
        "        if pos != stop:",
        f"            raise DecodeError('{type_name} fields do not fill its list', start)",
        "    except (IndexError, struct_error):",
        f"        raise DecodeError('truncated {type_name}', start) from None",
        "    return obj, stop",
    ]
    exec("\n".join(lines), env)  # noqa: S102 - source built above from our own field specs
    return env["fast"]  # type: ignore[return-value]


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
