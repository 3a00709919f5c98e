"""Hypothesis strategies for every AMQP 1.0 type (§1.6), and an exact comparison.

Each strategy yields values of the Python type the decoder produces for that
AMQP type (e.g. `Long`, never a plain `int`), so a round trip can demand the
identical type and not just an equal value.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable

from hypothesis import strategies as st

import broker.codec.performatives  # noqa: F401  (registers the performative descriptors)
from broker.codec.decode import DESCRIBED_TYPES
from broker.codec.messaging import _ValueSection
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

T = AmqpType


def _ranged(cls: type) -> st.SearchStrategy:
    # Bias towards the compact-encoding boundaries as well as the full range.
    edges = [
        v
        for v in (cls.MIN, cls.MAX, 0, 1, -1, 127, 128, -128, -129, 255, 256)
        if cls.MIN <= v <= cls.MAX
    ]
    return st.one_of(st.sampled_from(edges), st.integers(cls.MIN, cls.MAX)).map(cls)


def _sized(inner: st.SearchStrategy, build) -> st.SearchStrategy:
    """Short values mostly, sometimes values around the 8/32-bit size boundary."""
    return st.one_of(inner(max_size=12), inner(min_size=250, max_size=260)).map(build)


ascii_text = st.text(alphabet=st.characters(max_codepoint=127))

SCALARS: dict[AmqpType, st.SearchStrategy] = {
    T.NULL: st.none(),
    T.BOOLEAN: st.booleans(),
    T.UBYTE: _ranged(UByte),
    T.USHORT: _ranged(UShort),
    T.UINT: _ranged(UInt),
    T.ULONG: _ranged(ULong),
    T.BYTE: _ranged(Byte),
    T.SHORT: _ranged(Short),
    T.INT: _ranged(Int),
    T.LONG: _ranged(Long),
    T.FLOAT: st.floats(width=32).map(Float),
    T.DOUBLE: st.floats(),
    T.DECIMAL32: st.binary(min_size=4, max_size=4).map(Decimal32),
    T.DECIMAL64: st.binary(min_size=8, max_size=8).map(Decimal64),
    T.DECIMAL128: st.binary(min_size=16, max_size=16).map(Decimal128),
    T.CHAR: st.characters(exclude_categories=("Cs",)).map(Char),
    T.TIMESTAMP: _ranged(Timestamp),
    T.UUID: st.uuids(),
    T.BINARY: _sized(lambda **kw: st.binary(**kw), bytes),
    T.STRING: st.one_of(
        st.text(max_size=12),
        st.text(alphabet="a", min_size=250, max_size=260),
        st.text(alphabet="\u00e9", min_size=125, max_size=130),
    ),
    T.SYMBOL: _sized(lambda **kw: st.text(alphabet=st.characters(max_codepoint=127), **kw), Symbol),
}

FIXED_TYPES = [t for t in SCALARS if t is not T.NULL]


def _unregistered(d: object) -> bool:
    return not (type(d) in (ULong, Symbol) and d in DESCRIBED_TYPES)


# Descriptors the decoder does not turn into composite objects (§1.2: ulong or
# symbol in practice, any value allowed).
descriptors = st.one_of(
    _ranged(ULong), SCALARS[T.SYMBOL], SCALARS[T.STRING], SCALARS[T.LONG]
).filter(_unregistered)

scalars = st.one_of(*SCALARS.values())
# Keys must be hashable; AMQP allows any type, the decoder only hashable ones.
keys = st.one_of(scalars, st.builds(Described, descriptors, scalars))


def arrays_of(
    element_type: AmqpType, elements: st.SearchStrategy, max_size: int = 6
) -> st.SearchStrategy:
    """Arrays of one element type, undescribed or with a descriptor."""
    return st.builds(
        Array,
        st.just(element_type),
        st.lists(elements, max_size=max_size),
        st.one_of(st.none(), descriptors),
    )


def _described_not_twice(descriptor: object, value: object) -> Described:
    return Described(descriptor, [value] if type(value) is Described else value)


def _build(
    keys: st.SearchStrategy, described_in_described: bool = True,
    key_class: Callable[[object], object] | None = None,
) -> tuple[st.SearchStrategy, dict[AmqpType, st.SearchStrategy]]:
    """Recursive values and the per-type strategies, with map keys drawn from
    `keys`; with `key_class`, no two keys of a map fall in the same class."""

    def maps(children: st.SearchStrategy, max_size: int) -> st.SearchStrategy:
        if key_class is None:
            return st.dictionaries(keys, children, max_size=max_size)
        return st.lists(st.tuples(keys, children), max_size=max_size,
                        unique_by=lambda kv: key_class(kv[0])).map(dict)

    def compounds(children: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(
            st.lists(children, max_size=5),
            maps(children, 4),
            st.builds(
                Described if described_in_described else _described_not_twice, descriptors, children
            ),
            arrays_of(T.LIST, st.lists(children, max_size=3), 3),
            arrays_of(T.MAP, maps(children, 3), 3),
        )

    vals = st.recursive(
        st.one_of(scalars, simple_arrays, arrays_of_arrays), compounds, max_leaves=20
    )
    per_type = {
        **SCALARS,
        T.LIST: st.lists(vals, max_size=6),
        T.MAP: maps(vals, 5),
        T.ARRAY: st.one_of(
            simple_arrays,
            arrays_of_arrays,
            nested_arrays_of_arrays,
            arrays_of(T.LIST, st.lists(vals, max_size=3), 3),
            arrays_of(T.MAP, maps(vals, 3), 3),
        ),
    }
    return vals, per_type


simple_arrays = st.one_of(*(arrays_of(t, s) for t, s in SCALARS.items()))
arrays_of_arrays = arrays_of(T.ARRAY, simple_arrays, 4)
nested_arrays_of_arrays = arrays_of(T.ARRAY, arrays_of_arrays, 3)

values, STRATEGIES = _build(keys)
# For proton: its Python binding cannot hold described values as map keys
# (unhashable), and proton-c 0.40 miscounts the elements of a list or map that
# holds a described value whose value is itself described (it decodes its own
# encoding of [@0 @0 null, null] as a one-element list).
# Its Python dicts also merge keys that differ in AMQP but compare equal once
# converted (false, uint 0, a decimal32 of zero bytes, 0.0; a symbol and a
# string): keys of a proton map are drawn distinct by that looser equality.


def _proton_key_class(key: object) -> object:
    if isinstance(key, (Decimal32, Decimal64)):
        return ("number", float(int.from_bytes(bytes(key), "big")))  # proton: int subclasses
    if isinstance(key, (bool, int, float)):
        return ("number", float(key))
    if isinstance(key, str):
        return ("text", str(key))
    if isinstance(key, (bytes, bytearray)):
        return ("bytes", bytes(key))
    return ("other", repr(key))


proton_values, PROTON_STRATEGIES = _build(scalars, described_in_described=False,
                                          key_class=_proton_key_class)


def assert_identical(a: object, b: object, path: str = "value") -> None:
    """`a` and `b` are the same AMQP value with the same Python type, recursively.

    Floats compare by their bits (so NaN equals itself and -0.0 differs from
    0.0); dicts compare in order, since encoding preserves it.
    """
    assert type(a) is type(b), f"{path}: {type(a).__name__} {a!r} vs {type(b).__name__} {b!r}"
    if isinstance(a, float):
        fmt = ">f" if type(a) is Float else ">d"
        assert struct.pack(fmt, a) == struct.pack(fmt, b), f"{path}: {a!r} != {b!r}"  # type: ignore[arg-type]
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b)):  # type: ignore[call-overload]
            assert_identical(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        ai, bi = list(a.items()), list(b.items())  # type: ignore[attr-defined]
        assert len(ai) == len(bi), f"{path}: {len(ai)} entries != {len(bi)}"
        for i, ((ka, va), (kb, vb)) in enumerate(zip(ai, bi)):
            assert_identical(ka, kb, f"{path}.key{i}")
            assert_identical(va, vb, f"{path}[{ka!r}]")
    elif isinstance(a, Array):
        assert a.element_type is b.element_type, f"{path}: {a.element_type} != {b.element_type}"  # type: ignore[attr-defined]
        assert_identical(a.descriptor, b.descriptor, f"{path}.descriptor")  # type: ignore[attr-defined]
        assert_identical(a.items, b.items, f"{path}.items")  # type: ignore[attr-defined]
    elif isinstance(a, _ValueSection):
        assert_identical(a.value, b.value, f"{path}.value")  # type: ignore[attr-defined]
    elif dataclasses.is_dataclass(a):
        for fl in dataclasses.fields(a):
            assert_identical(getattr(a, fl.name), getattr(b, fl.name), f"{path}.{fl.name}")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


__all__ = [
    "FIXED_TYPES",
    "PROTON_STRATEGIES",
    "SCALARS",
    "STRATEGIES",
    "arrays_of",
    "arrays_of_arrays",
    "assert_identical",
    "descriptors",
    "keys",
    "nested_arrays_of_arrays",
    "proton_values",
    "scalars",
    "simple_arrays",
    "values",
]
