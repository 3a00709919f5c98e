"""Property tests: decode∘encode is the identity, type included, for every AMQP type."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec import decode, decode_all, encode, skip
from broker.codec.types import AmqpType, Array, Described

from .strategies import (
    STRATEGIES,
    arrays_of_arrays,
    assert_identical,
    descriptors,
    nested_arrays_of_arrays,
    values,
)

T = AmqpType


def check_round_trip(value: object) -> bytes:
    data = encode(value)
    decoded, end = decode(data)
    assert end == len(data), "decode must consume exactly the encoding"
    assert_identical(decoded, value)
    assert encode(decoded) == data, "re-encoding the decoded value must give the same bytes"
    assert skip(data, 0, len(data)) == len(data), "skip must land where decode ends"
    return data


@pytest.mark.parametrize("amqp_type", list(AmqpType), ids=lambda t: t.value)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_per_type(amqp_type: AmqpType, data: st.DataObject) -> None:
    check_round_trip(data.draw(STRATEGIES[amqp_type], label=amqp_type.value))


def test_every_amqp_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(AmqpType)


@settings(max_examples=150, deadline=None)
@given(descriptors, values)
def test_round_trip_described(descriptor: object, value: object) -> None:
    check_round_trip(Described(descriptor, value))


@settings(max_examples=100, deadline=None)
@given(st.one_of(arrays_of_arrays, nested_arrays_of_arrays))
def test_round_trip_arrays_of_arrays(value: Array) -> None:
    check_round_trip(value)


@settings(max_examples=150, deadline=None)
@given(values)
def test_round_trip_nested(value: object) -> None:
    check_round_trip(value)


@settings(max_examples=40, deadline=None)
@given(st.lists(values, max_size=4))
def test_decode_all_reads_a_sequence(seq: list[object]) -> None:
    data = b"".join(encode(v) for v in seq)
    decoded = decode_all(data)
    assert_identical(decoded, seq)


@settings(max_examples=50, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.binary(max_size=4), st.binary(max_size=4))
def test_decode_and_skip_at_offsets(seq: list[object], before: bytes, after: bytes) -> None:
    """decode/skip honour pos and end inside a larger buffer and walk value by value."""
    parts = [encode(v) for v in seq]
    buf = before + b"".join(parts) + after
    pos, end = len(before), len(buf) - len(after)
    for value, part in zip(seq, parts):
        stop = pos + len(part)
        assert skip(buf, pos, end) == stop
        decoded, new_pos = decode(buf, pos, end)
        assert new_pos == stop
        assert_identical(decoded, value)
        pos = stop
    assert pos == end


def test_plain_python_values_decode_to_their_amqp_type() -> None:
    """Plain int/float/str/... encode as long/double/string/...; decoding names the type."""
    import uuid

    from broker.codec.types import Long

    u = uuid.UUID(int=42)
    cases = [
        (7, Long(7)),
        (1.5, 1.5),
        ("s", "s"),
        (b"b", b"b"),
        (u, u),
        ([1, "x"], [Long(1), "x"]),
        ({"k": 2}, {"k": Long(2)}),
        ((1, 2), [Long(1), Long(2)]),  # a tuple is a list
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"ab"), b"ab"),
        (None, None),
        (True, True),
    ]
    for value, expected in cases:
        decoded, _ = decode(encode(value))
        assert_identical(decoded, expected)
