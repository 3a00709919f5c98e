"""Declarative composite types (§1.4): one class per type, fields in spec order.

A composite class is a frozen, slotted, keyword-only dataclass decorated with
`@composite(code, name)`.  Each field is declared with `f(type, ...)`, giving
its type, whether it is mandatory, its default and whether it is `multiple`,
as the spec's field tables do.  From that one declaration the decorator
builds the encoder (a described list, trailing nulls trimmed, defaults
written as null) and the decoder, and registers both by numeric and symbolic
descriptor, so generic `decode()` returns instances of these classes.

Typed fields at the boundary.  The decoder checks every field it decodes
against its declared type and raises `DecodeError` naming the composite and
the field ("close.error: expected error, got boolean") on a mismatch, so a
peer's wrongly typed field ends as `amqp:decode-error` and the engine never
meets a value of the wrong type.  The declared type is one of:

- a primitive type (§1.6), range-checked for integers and narrowed by
  `choices` for restricted types (sender-settle-mode, terminus-expiry-policy…);
  maps may constrain their keys (`fields`, §2.8.13: symbol keys) and values;
- a composite class (`error` is an `Error` or null);
- `ANY` (`*`) with `requires`: the value must be of a type that provides one
  of those archetypes (the spec's type notation), e.g. a terminus `source`
  or a `delivery-state`.
  Composites declare what they provide with `@composite(..., provides=...)`;
  `provide()` adds primitive providers (an address-string is a string) and
  the descriptors of spec types we know but do not decode (a transaction
  coordinator is a `target`), which stay `Described`.

Two coercions real clients need are kept: a string where a symbol belongs is
read as a symbol, and a symbol where a string belongs as a string.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, dataclass_transform

from broker.codec.decode import _DECODERS, DESCRIBED_TYPES, FAST_DESCRIBED
from broker.codec.encode import ENCODERS, TYPE_ENCODERS, enc_array, enc_ulong, encode_into
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
from broker.errors import DecodeError, EncodeError

ANY = None  # field type for "*": any AMQP value, encoded by its own type

_u32 = struct.Struct(">I").unpack_from
_u32u32 = struct.Struct(">II").unpack_from
_BI = struct.Struct(">BI").pack
_BBB = struct.Struct(">BBB").pack
_BII = struct.Struct(">BII").pack


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field's declaration; `amqp_type` is a composite class for composite-typed fields."""

    amqp_type: AmqpType | type | None
    mandatory: bool = False
    default: object = None
    multiple: bool = False
    requires: tuple[str, ...] = ()  # `*` fields: archetypes the value must provide
    choices: tuple[object, ...] = ()  # restricted types: the only values allowed
    keys: AmqpType | None = None  # maps: the type of every key
    values: tuple[str, ...] = ()  # maps: archetypes every non-null value must provide


def f(
    amqp_type: AmqpType | type | None,
    *,
    mandatory: bool = False,
    default: object = None,
    multiple: bool = False,
    requires: str | tuple[str, ...] = (),
    choices: tuple[object, ...] = (),
    keys: AmqpType | None = None,
    values: str | tuple[str, ...] = (),
) -> Any:
    """Declare one composite field (a dataclass field carrying its AMQP spec)."""
    spec = FieldSpec(
        amqp_type, mandatory, default, multiple,
        (requires,) if isinstance(requires, str) else requires,
        choices, keys, (values,) if isinstance(values, str) else values,
    )
    meta = {"amqp": spec}
    if mandatory:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# -- archetypes: a `*` field "requires" what a type "provides" (type notation, part 1) --

_PROVIDERS: dict[str, set[type]] = {}
_PROVIDER_DESCRIPTORS: dict[str, set[object]] = {}
# Archetypes whose providers are defined outside the spec (filters, §3.5.8):
# any described value is accepted.
_OPEN_ARCHETYPES = frozenset({"filter"})
# Python types a described value decodes to: composites and message sections
# register here, so "any described value" can be tested by type.
DESCRIBED_CLASSES: set[type] = {Described}


def provide(archetype: str, *types: type, descriptors: Iterable[object] = ()) -> None:
    """Declare that values of `types` provide `archetype`, and so do described
    values with one of `descriptors` (spec types we do not decode, which stay
    `Described`).  Read when a decoder is generated, i.e. on first use."""
    _PROVIDERS.setdefault(archetype, set()).update(types)
    _PROVIDER_DESCRIPTORS.setdefault(archetype, set()).update(descriptors)


# -- checking decoded values ------------------------------------------------------------

_INT_RANGES = {
    AmqpType.UBYTE: (0, 0xFF),
    AmqpType.USHORT: (0, 0xFFFF),
    AmqpType.UINT: (0, 0xFFFFFFFF),
    AmqpType.ULONG: (0, 0xFFFFFFFFFFFFFFFF),
    AmqpType.BYTE: (-0x80, 0x7F),
    AmqpType.SHORT: (-0x8000, 0x7FFF),
    AmqpType.INT: (-0x80000000, 0x7FFFFFFF),
    AmqpType.LONG: (-(2**63), 2**63 - 1),
}
# An integer field takes any AMQP integer in its range (the value matters, not
# the width the peer chose); plain int is what the fast decoder reads inline.
# Not bool, not timestamp: those are other types that happen to be ints here.
_INTEGERS = frozenset({int, UByte, UShort, UInt, ULong, Byte, Short, Int, Long})
_EXACT: dict[AmqpType, type] = {
    AmqpType.BOOLEAN: bool,
    AmqpType.FLOAT: Float,
    AmqpType.DOUBLE: float,
    AmqpType.DECIMAL32: Decimal32,
    AmqpType.DECIMAL64: Decimal64,
    AmqpType.DECIMAL128: Decimal128,
    AmqpType.CHAR: Char,
    AmqpType.TIMESTAMP: Timestamp,
    AmqpType.UUID: uuid.UUID,
    AmqpType.BINARY: bytes,
    AmqpType.STRING: str,
    AmqpType.SYMBOL: Symbol,
    AmqpType.LIST: list,
    AmqpType.MAP: dict,
    AmqpType.ARRAY: Array,
}
_TYPE_NAMES: dict[type, str] = {
    **{cls: t.value for t, cls in _EXACT.items()},
    type(None): "null", UByte: "ubyte", UShort: "ushort", UInt: "uint",
    ULong: "ulong", Byte: "byte", Short: "short", Int: "int", Long: "long",
}


class _Mismatch(Exception):  # an internal signal: never escapes the codec
    """A value is not of the expected type; the argument says what it was."""


def _spec_name(cls: type) -> str:
    """`amqp:close:list` → `close`: the name the spec's tables use."""
    name = str(getattr(cls, "DESCRIPTOR_NAME", cls.__name__))
    parts = name.split(":")
    return parts[1] if len(parts) == 3 else name


def _describe(v: object) -> str:
    """The AMQP type of a decoded value, for error messages (integers with their value)."""
    t = type(v)
    if t is Array:
        return f"array of {v.element_type.value}"  # type: ignore[attr-defined]
    if t is Described:
        d = v.descriptor  # type: ignore[attr-defined]
        return f"described 0x{d:x}" if type(d) is ULong else f"described {d!r:.40}"
    if t is int:  # read inline by a fast decoder, which keeps no wrapper: the value says it
        return str(v)
    name = _TYPE_NAMES.get(t)
    if name is None:
        return _spec_name(t)
    if t in _INTEGERS:
        return f"{name} {int(v)}"  # type: ignore[call-overload]
    return name


def _expected(spec: FieldSpec) -> str:
    t = spec.amqp_type
    if t is None:
        what = " or ".join(spec.requires) or "any value"
    elif isinstance(t, type):
        what = _spec_name(t)
    else:
        what = t.value
        if spec.choices:
            what += " (one of " + ", ".join(str(c) for c in spec.choices) + ")"
        if spec.keys is not None:
            what += f" with {spec.keys.value} keys"
        if spec.values:
            what += f" and {' or '.join(spec.values)} values"
    return f"{what} or array of {what}" if spec.multiple else what


def _archetype_converter(requires: tuple[str, ...]) -> Callable[[object], object]:
    unknown = [a for a in requires if a not in _PROVIDERS and a not in _OPEN_ARCHETYPES]
    if unknown:  # a typo in a declaration would otherwise refuse every value
        raise TypeError(f"no type provides {unknown}")
    ok: set[type] = set()
    descriptors: set[object] = set()
    for archetype in requires:
        ok |= _PROVIDERS.get(archetype, set())
        descriptors |= _PROVIDER_DESCRIPTORS.get(archetype, set())
    if _OPEN_ARCHETYPES.intersection(requires):
        ok |= DESCRIBED_CLASSES
    coerce_symbol = str in ok

    def conv(v: object) -> object:
        t = type(v)
        if t in ok:
            return v
        if t is Symbol and coerce_symbol:
            return str(v)
        if t is Described:
            d = v.descriptor  # type: ignore[attr-defined]
            if (type(d) is ULong or type(d) is Symbol) and d in descriptors:
                return v
        raise _Mismatch(_describe(v))

    return conv


def _converter(spec: FieldSpec) -> Callable[[object], object]:
    """Check (and where clients are sloppy, coerce) one element of a field."""
    t = spec.amqp_type
    if t is None:
        if not spec.requires:
            return lambda v: v
        return _archetype_converter(spec.requires)
    if isinstance(t, type):  # a composite

        def conv_composite(v: object) -> object:
            if type(v) is t:
                return v
            raise _Mismatch(_describe(v))

        return conv_composite
    if t in _INT_RANGES:
        lo, hi = _int_bounds(spec)

        def conv_int(v: object) -> object:
            if type(v) in _INTEGERS and lo <= v <= hi:  # type: ignore[operator]
                return v
            raise _Mismatch(_describe(v))

        return conv_int
    if t is AmqpType.SYMBOL:
        choices = frozenset(spec.choices)

        def conv_symbol(v: object) -> object:
            if type(v) is str and v.isascii():  # clients send strings where symbols belong
                v = Symbol(v)
            elif type(v) is not Symbol:
                raise _Mismatch(_describe(v))
            if choices and v not in choices:
                raise _Mismatch(f"symbol {v!r:.40}")
            return v

        return conv_symbol
    if t is AmqpType.STRING:

        def conv_string(v: object) -> object:
            if type(v) is str:
                return v
            if type(v) is Symbol:  # and symbols where strings belong
                return str(v)
            raise _Mismatch(_describe(v))

        return conv_string
    if t is AmqpType.MAP and (spec.keys is not None or spec.values):
        return _map_converter(spec)
    expected = _EXACT[t]

    def conv_exact(v: object) -> object:
        if type(v) is expected:
            return v
        raise _Mismatch(_describe(v))

    return conv_exact


def _map_converter(spec: FieldSpec) -> Callable[[object], object]:
    key_conv = _converter(FieldSpec(spec.keys)) if spec.keys is not None else None
    value_conv = _archetype_converter(spec.values) if spec.values else None

    def conv_map(v: object) -> object:
        if type(v) is not dict:
            raise _Mismatch(_describe(v))
        changed = False
        items = []
        for k, x in v.items():
            k2, x2 = k, x
            if key_conv is not None:
                try:
                    k2 = key_conv(k)
                except _Mismatch as exc:
                    raise _Mismatch(f"a map with a {exc.args[0]} key") from None
            if value_conv is not None and x is not None:
                try:
                    x2 = value_conv(x)
                except _Mismatch as exc:
                    raise _Mismatch(f"a map with a {exc.args[0]} value") from None
            changed = changed or k2 is not k or x2 is not x
            items.append((k2, x2))
        return dict(items) if changed else v

    return conv_map


def _int_bounds(spec: FieldSpec) -> tuple[int, int]:
    lo, hi = _INT_RANGES[spec.amqp_type]  # type: ignore[index]
    if spec.choices:  # the restricted integer types all have a contiguous range of choices
        ints = sorted(int(c) for c in spec.choices)  # type: ignore[call-overload]
        if ints != list(range(ints[0], ints[-1] + 1)):
            raise TypeError(f"choices {spec.choices} are not a contiguous range")
        lo, hi = ints[0], ints[-1]
    return lo, hi


def _make_checker(where: str, spec: FieldSpec) -> Callable[..., object]:
    """The function a generated decoder calls when a field's quick test fails:
    returns the (coerced) value, or raises DecodeError naming the field."""
    conv = _converter(spec)
    expected = _expected(spec)
    if spec.multiple:
        elem = conv

        def conv_multiple(v: object) -> object:
            # §1.4: a multiple field holds one value of its type or an array of them
            if type(v) is Array:
                if v.descriptor is not None:
                    raise _Mismatch("described array")
                try:
                    return tuple(elem(x) for x in v.items)
                except _Mismatch:
                    raise _Mismatch(_describe(v)) from None
            return (elem(v),)

        conv = conv_multiple

    def check(v: object, offset: int = -1) -> object:
        try:
            return conv(v)
        except _Mismatch as exc:
            raise DecodeError(f"{where}: expected {expected}, got {exc.args[0]}", offset) from None

    return check


def _quick_test(i: int, spec: FieldSpec, env: dict[str, object]) -> str | None:
    """A Python expression true when the decoded `v` (not None) may be of the wrong
    type and must go through `check{i}`; None when any value is fine.

    It is what the generated decoders run for every field of every frame, so it
    is one exact-type test (or a range test for integers): values of the right
    type, the overwhelmingly common case, never call a function."""
    t = spec.amqp_type
    if spec.multiple or (t is AmqpType.MAP and (spec.keys is not None or spec.values)):
        return "True"
    if t is None:
        if not spec.requires:
            return None
        # what the checker accepts without coercion: its exact types
        ok: set[type] = set()
        for archetype in spec.requires:
            ok |= _PROVIDERS.get(archetype, set())
        env[f"ok{i}"] = frozenset(ok)
        return f"type(v) not in ok{i}"
    if isinstance(t, type):
        env[f"x{i}"] = t
        return f"type(v) is not x{i}"
    if t in _INT_RANGES:
        lo, hi = _int_bounds(spec)
        return f"type(v) is not int or v < {lo} or v > {hi}"
    env[f"x{i}"] = _EXACT[t]
    if spec.choices:
        env[f"choices{i}"] = frozenset(spec.choices)
        return f"type(v) is not x{i} or v not in choices{i}"
    return f"type(v) is not x{i}"


def _field_lines(
    i: int, type_name: str, fname: str, spec: FieldSpec, env: dict[str, object],
    indent: str, offset: str,
) -> list[str]:
    """The generated block that turns the decoded `v` of field `i` into its value:
    null → default (or DecodeError if mandatory), else the type check."""
    where = f"{type_name}.{fname.replace('_', '-')}"
    env[f"set{i}"] = getattr(env["cls"], fname).__set__
    env[f"check{i}"] = _make_checker(where, spec)
    env[f"default{i}"] = spec.default
    lines = [f"{indent}if v is None:"]
    if spec.mandatory:
        lines.append(f"{indent}    raise DecodeError('{where} is mandatory', {offset})")
    else:
        lines.append(f"{indent}    v = default{i}")
    test = _quick_test(i, spec, env)
    if test == "True":
        lines += [f"{indent}else:", f"{indent}    v = check{i}(v, {offset})"]
    elif test is not None:
        lines += [f"{indent}elif {test}:", f"{indent}    v = check{i}(v, {offset})"]
    lines.append(f"{indent}set{i}(obj, v)")
    return lines


T = TypeVar("T")


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=())
def composite(code: int, name: str, provides: tuple[str, ...] = ()) -> Callable[[type[T]], type[T]]:
    """Turn a class with `f()` fields into an AMQP composite type; `provides`
    lists the archetypes it satisfies (e.g. `delivery-state`)."""

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
            elif not isinstance(spec.amqp_type, AmqpType):  # `*` or a composite
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
        # composite at import time doubled the broker's start-up time.  That
        # also lets a field require archetypes provided by composites defined
        # in a module imported later.
        generated: dict[str, Callable[..., object]] = {}

        def decode_composite(value: object) -> object:
            finish = generated.get("finish")
            if finish is None:
                finish = generated["finish"] = _make_finisher(dc, names, specs)
            return finish(value)

        def fast_decode(buf: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
            fast = _make_fast_decoder(dc, names, specs, decode_composite)
            FAST_DESCRIBED[code] = fast  # replaces this stub
            return fast(buf, pos, end, depth)

        dc.DESCRIPTOR_CODE = code  # type: ignore[attr-defined]
        dc.DESCRIPTOR_NAME = Symbol(name)  # type: ignore[attr-defined]
        dc.encode_into = encode_composite  # type: ignore[attr-defined]
        ENCODERS[dc] = encode_composite
        DESCRIBED_TYPES[code] = decode_composite
        DESCRIBED_TYPES[Symbol(name)] = decode_composite
        DESCRIBED_CLASSES.add(dc)
        for archetype in provides:
            provide(archetype, dc)
        if code < 256:
            FAST_DESCRIBED[code] = fast_decode
        return dc

    return wrap


def _make_finisher(
    dc: type, names: list[str], specs: list[FieldSpec]
) -> Callable[[object], object]:
    """Build the function that turns a decoded field list into an instance.

    It is generated as straight-line source, one block per field (the way
    `dataclasses` builds `__init__`), because a loop over field descriptors
    costs several microseconds per frame.  Used for the descriptor forms the
    fast decoder does not take (ulong and symbolic descriptors).
    """
    type_name = _spec_name(dc)
    env: dict[str, object] = {"new": object.__new__, "cls": dc, "DecodeError": DecodeError}
    lines = [
        "def finish(values):",
        "    if type(values) is not list:",
        f"        raise DecodeError('{type_name} must be a described list')",
        f"    if len(values) < {len(names)}:",
        f"        values = values + [None] * ({len(names)} - len(values))",
        "    obj = new(cls)",
    ]
    for i, (fname, spec) in enumerate(zip(names, specs)):
        lines.append(f"    v = values[{i}]")
        lines += _field_lines(i, type_name, fname, spec, env, "    ", "-1")
    lines.append("    return obj")
    exec("\n".join(lines), env)  # noqa: S102 - source built above from our own field specs
    return env["finish"]  # type: ignore[return-value]


_UINT_LIKE = (AmqpType.UINT, AmqpType.ULONG, AmqpType.UBYTE, AmqpType.USHORT)


def _make_fast_decoder(
    dc: type, names: list[str], specs: list[FieldSpec], slow: Callable[[object], object],
) -> Callable[[bytes, int, int, int], tuple[object, int]]:
    """Decode a composite straight from the bytes, without an intermediate list.

    Generated like `_make_finisher`, with each field's block reading its own
    bytes: unsigned-integer and boolean fields take their common encodings
    inline (the hot path for transfer, flow and disposition), every other
    value goes through the generic table; then the same type check.  Indexing
    past the buffer and struct errors surface as DecodeError; a list whose
    fields do not end exactly at its declared size is rejected.
    """
    type_name = _spec_name(dc)
    env: dict[str, object] = {
        "new": object.__new__, "cls": dc, "DecodeError": DecodeError,
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
        ]
        lines += _field_lines(i, type_name, fname, spec, env, "        ", "start")
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


def _multiple_encoder(t: AmqpType | type | None) -> Callable[[bytearray, object], None]:
    """A `multiple` field is written as an array, or as the single value when it has one."""
    typed = t if isinstance(t, AmqpType) else None

    def enc(out: bytearray, v: object) -> None:
        if isinstance(v, (list, tuple)):
            if typed is None:
                encode_into(out, list(v))
            elif len(v) == 1:
                TYPE_ENCODERS[typed](out, v[0])
            else:
                enc_array(out, Array(typed, v))
        elif typed is None:
            encode_into(out, v)
        else:
            TYPE_ENCODERS[typed](out, v)

    return enc
