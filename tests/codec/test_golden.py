"""Golden byte vectors for every performative, SASL frame and message section."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from broker.codec import decode, encode
from broker.codec.messaging import Received, Source, Target, _ValueSection
from broker.codec.performatives import (
    PERFORMATIVES,
    SASL_FRAMES,
    Attach,
    Begin,
    Error,
    Flow,
    Open,
    Transfer,
)
from broker.codec.types import Described, Symbol, ULong
from broker.errors import DecodeError

from .golden import VECTORS, g

IDS = [v[0] for v in VECTORS]


def _equal(a: object, b: object) -> None:
    assert type(a) is type(b)
    assert a == b


@pytest.mark.parametrize(("name", "obj", "hexes"), VECTORS, ids=IDS)
def test_encode_matches_golden(name: str, obj: object, hexes: str) -> None:
    assert encode(obj).hex(" ") == g(hexes).hex(" ")


@pytest.mark.parametrize(("name", "obj", "hexes"), VECTORS, ids=IDS)
def test_decode_golden(name: str, obj: object, hexes: str) -> None:
    data = g(hexes)
    value, end = decode(data)
    assert end == len(data)
    _equal(value, obj)


def test_every_performative_and_sasl_frame_has_a_vector() -> None:
    covered = {type(obj) for _, obj, _ in VECTORS}
    missing = [c.__name__ for c in (*PERFORMATIVES, *SASL_FRAMES) if c not in covered]
    assert not missing


def _split(data: bytes) -> tuple[int, bytes]:
    """(descriptor code, encoded value) of a golden `00 53 <code> <value>`."""
    assert data[:2] == b"\x00\x53"
    return data[2], data[3:]


def _long_descriptor(code: int) -> bytes:
    return b"\x00\x80" + struct.pack(">Q", code)


def _symbolic_descriptor(obj: object) -> bytes:
    name = (
        obj.DESCRIPTOR_NAME if not isinstance(obj, _ValueSection) else _SECTION_NAMES[type(obj)]
    ).encode()  # type: ignore[attr-defined]
    return b"\x00\xa3" + bytes([len(name)]) + name


_SECTION_NAMES = {
    cls: name for cls, name in ((c, getattr(c, "NAME", "")) for c in _ValueSection.__subclasses__())
}


def _as_list32(value: bytes) -> bytes:
    """Re-encode a list0/list8 as the equivalent list32."""
    if value[0] == 0x45:
        return b"\xd0" + struct.pack(">II", 4, 0)
    assert value[0] == 0xC0
    size, count = value[1], value[2]
    body = value[3 : 2 + size]
    return b"\xd0" + struct.pack(">II", len(body) + 4, count) + body


@pytest.mark.parametrize(("name", "obj", "hexes"), VECTORS, ids=IDS)
def test_descriptor_and_list_forms_decode_alike(name: str, obj: object, hexes: str) -> None:
    """Peers may use ulong or symbolic descriptors and list32; all decode the same."""
    code, value = _split(g(hexes))
    forms = [_long_descriptor(code) + value, _symbolic_descriptor(obj) + value]
    if value[0] in (0x45, 0xC0):
        forms += [
            b"\x00\x53" + bytes([code]) + _as_list32(value),
            _long_descriptor(code) + _as_list32(value),
        ]
    for data in forms:
        decoded, end = decode(data)
        assert end == len(data)
        _equal(decoded, obj)


def _mandatory_cases() -> list[tuple[str, bytes]]:
    cases = {}
    for _, obj, _ in VECTORS:
        if not dataclasses.is_dataclass(obj):
            continue
        for fl in dataclasses.fields(obj):
            if fl.metadata["amqp"].mandatory:
                broken = dataclasses.replace(obj, **{fl.name: None})  # type: ignore[type-var]
                cases[f"{type(obj).__name__}.{fl.name}"] = encode(broken)
    return sorted(cases.items())


MANDATORY = _mandatory_cases()


def test_mandatory_cases_cover_every_class_with_mandatory_fields() -> None:
    expected = {
        f"{c.__name__}.{f.name}"
        for c in (*PERFORMATIVES, *SASL_FRAMES, Error, Received)
        for f in dataclasses.fields(c)
        if f.metadata["amqp"].mandatory
    }
    assert expected == {case for case, _ in MANDATORY}


@pytest.mark.parametrize(("case", "data"), MANDATORY, ids=[c for c, _ in MANDATORY])
def test_missing_mandatory_field_is_a_decode_error(case: str, data: bytes) -> None:
    with pytest.raises(DecodeError, match="mandatory"):
        decode(data)
    # the same through the generic (non-smallulong) descriptor path
    with pytest.raises(DecodeError, match="mandatory"):
        decode(_long_descriptor(data[2]) + data[3:])


@pytest.mark.parametrize(
    ("why", "hexes"),
    [
        ("open as empty list", "00 53 10 45"),
        ("open with null container-id", "00 53 10 c0 02 01 40"),
        ("begin missing its windows", "00 53 11 c0 03 02 40 43"),
        ("attach missing role", "00 53 12 c0 05 02 a1 01 6c 43"),
        ("flow with only next-incoming-id", "00 53 13 c0 03 01 52 01"),
        ("transfer without handle", "00 53 14 45"),
        ("disposition without first", "00 53 15 c0 02 01 41"),
        ("detach without handle", "00 53 16 45"),
        ("sasl-mechanisms empty", "00 53 40 45"),
        ("sasl-init without mechanism", "00 53 41 45"),
        ("sasl-challenge without challenge", "00 53 42 45"),
        ("sasl-response without response", "00 53 43 45"),
        ("sasl-outcome without code", "00 53 44 45"),
        ("error without condition", "00 53 1d 45"),
    ],
)
def test_hand_written_missing_mandatory(why: str, hexes: str) -> None:
    with pytest.raises(DecodeError):
        decode(g(hexes))


@pytest.mark.parametrize(
    ("why", "hexes", "match"),
    [
        ("open container-id as uint", "00 53 10 c0 02 01 43", "open.container-id"),
        ("open max-frame-size as string", '00 53 10 c0 07 03 a1 01 "c" 40 a1 00', "open.max-frame-size"),
        ("open max-frame-size negative", '00 53 10 c0 07 03 a1 01 "c" 40 54 ff', "open.max-frame-size"),
        ("begin window as boolean", "00 53 11 c0 05 04 40 43 41 43", "begin.incoming-window"),
        ("attach role as uint", '00 53 12 c0 06 03 a1 01 "l" 43 43', "attach.role"),
        (
            "attach snd-settle-mode above ubyte",
            '00 53 12 c0 0b 04 a1 01 "l" 43 41 70 00 00 01 00',
            "attach.snd-settle-mode",
        ),
        ("transfer delivery-tag as string", "00 53 14 c0 05 03 43 43 a1 00", "transfer.delivery-tag"),
        (
            "flow handle above uint",
            "00 53 13 c0 0e 05 40 43 43 43 80 00 00 00 01 00 00 00 00",
            "flow.handle",
        ),
        ("performative as a map", "00 53 10 c1 01 00", "open must be a described list"),
        ("performative as a string", '00 53 10 a1 01 "c"', "open must be a described list"),
        ("sasl-outcome code as string", "00 53 44 c0 03 01 a1 00", "sasl-outcome.code"),
        ("error condition as list", "00 53 1d c0 02 01 45", "error.condition"),
        (
            "capabilities as uint",
            '00 53 10 c0 0b 08 a1 01 "c" 40 40 40 40 40 40 43',
            "open.offered-capabilities",
        ),
        ("data section holding a string", '00 53 75 a1 01 "x"', "Data"),
        ("message annotations as a list", "00 53 72 45", "MessageAnnotations"),
        ("list count beyond its size", '00 53 10 c0 04 02 a1 01 "c"', None),
        ("list field running past the list", '00 53 10 c0 02 01 a1 01 "c"', None),
    ],
)
def test_wrongly_typed_fields_are_decode_errors(why: str, hexes: str, match: str | None) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(g(hexes))


def test_symbol_fields_accept_strings() -> None:
    """Some clients send strings where the spec has symbols; they are read as symbols."""
    value, _ = decode(g('00 53 1d c0 0d 01 a1 0a "amqp:x:y:z"'))
    assert value == Error(condition=Symbol("amqp:x:y:z"))
    assert type(value.condition) is Symbol  # type: ignore[attr-defined]
    value, _ = decode(g('00 53 10 c0 10 08 a1 01 "c" 40 40 40 40 40 40 e0 04 01 a1 01 "x"'))
    assert value.offered_capabilities == (Symbol("x"),)  # type: ignore[attr-defined]
    assert type(value.offered_capabilities[0]) is Symbol  # type: ignore[attr-defined]


def test_non_ascii_string_in_symbol_field_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(g("00 53 1d c0 05 01 a1 02 c3 a9"))


def test_decoded_performatives_re_encode_to_the_golden_bytes() -> None:
    """Whatever field types the decoder produced, re-encoding gives the canonical bytes."""
    for name, obj, hexes in VECTORS:
        data = g(hexes)
        code, value = _split(data)
        for form in (data, _long_descriptor(code) + value):
            assert encode(decode(form)[0]) == data, name


def test_unknown_descriptor_stays_described() -> None:
    value, _ = decode(g("00 53 ff c0 02 01 40"))
    assert value == Described(ULong(0xFF), [None])
    value, _ = decode(g('00 a3 03 "x:y" 45'))
    assert value == Described(Symbol("x:y"), [])


def test_composites_compare_and_repr_like_dataclasses() -> None:
    assert Open(container_id="a") == Open(container_id="a")
    assert Open(container_id="a") != Open(container_id="b")
    assert "container_id='a'" in repr(Open(container_id="a"))
    assert Flow(incoming_window=1, next_outgoing_id=2, outgoing_window=3).drain is False
    assert Attach(name="x", handle=0, role=False).snd_settle_mode == 2
    assert Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1).handle_max == 0xFFFFFFFF
    assert Transfer(handle=0).more is False
    assert Source().expiry_policy == "session-end" and Target().durable == 0
