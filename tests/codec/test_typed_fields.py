"""Typed fields at the boundary: every composite field is checked against its declared type.

A peer can put any value in any field.  Each case here takes a valid
composite, swaps one field's value for a value of another type (encoded
generically, so the bytes say exactly what a hostile peer would send) and
expects a `DecodeError` naming the composite and the field, both through the
fast smallulong-descriptor decoder and the generic (symbolic descriptor) one.
The other direction: every valid type and encoding of a field still decodes,
and a property test checks, with its own rules rather than the codec's, that
whatever decodes has well-typed fields.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.codec import decode, encode
from broker.codec.composite import FieldSpec
from broker.codec.messaging import (
    Accepted,
    Header,
    Modified,
    Properties,
    Received,
    Rejected,
    Released,
    Source,
    Target,
)
from broker.codec.performatives import (
    PERFORMATIVES,
    SASL_FRAMES,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    SaslChallenge,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Transfer,
)
from broker.codec.types import (
    AmqpType,
    Array,
    Byte,
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

from .strategies import values

T = AmqpType

ERR = Error(condition=Symbol("amqp:internal-error"))
COORDINATOR = Described(ULong(0x30), [None])  # §4.5.1, not decoded: provides target
DECLARED = Described(ULong(0x33), [b"txn-1"])  # §4.5.5: delivery-state and outcome
TRANSACTIONAL = Described(Symbol("amqp:transactional-state:list"), [b"txn-1"])  # §4.5.6

# One valid instance of every composite with fields; the cases change one field.
BASES: list[object] = [
    Open(container_id="c"),
    Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1),
    Attach(name="l", handle=0, role=True),
    Flow(incoming_window=1, next_outgoing_id=0, outgoing_window=1),
    Transfer(handle=0),
    Disposition(role=True, first=0),
    Detach(handle=0),
    End(),
    Close(),
    SaslMechanisms(sasl_server_mechanisms=(Symbol("PLAIN"),)),
    SaslInit(mechanism=Symbol("PLAIN")),
    SaslChallenge(challenge=b""),
    SaslResponse(response=b""),
    SaslOutcome(code=0),
    ERR,
    Source(),
    Target(),
    Received(section_number=0, section_offset=0),
    Rejected(),
    Modified(),
    Header(),
    Properties(),
]
BY_NAME = {str(type(b).DESCRIPTOR_NAME).split(":")[1]: b for b in BASES}  # type: ignore[attr-defined]


def spec_name(cls: type) -> str:
    return str(cls.DESCRIPTOR_NAME).split(":")[1]  # type: ignore[attr-defined]


def field_specs(cls: type) -> list[tuple[str, FieldSpec]]:
    return [(fl.name, fl.metadata["amqp"]) for fl in dataclasses.fields(cls)]


def fields_of(obj: object) -> list[object]:
    """The values of a composite's fields as a generic decode reads them off the
    wire (wrapper types kept), padded with nulls to every field."""
    encoded = encode(obj)
    assert encoded[:2] == b"\x00\x53"
    items, _ = decode(encoded[3:])
    assert isinstance(items, list)
    return items + [None] * (len(dataclasses.fields(obj)) - len(items))  # type: ignore[arg-type]


def with_field(obj: object, name: str, value: object, symbolic: bool = False) -> bytes:
    """`obj` encoded with field `name` replaced by `value`, encoded by its own type."""
    cls = type(obj)
    items = fields_of(obj)
    items[[fl.name for fl in dataclasses.fields(cls)].index(name)] = value  # type: ignore[arg-type]
    descriptor = cls.DESCRIPTOR_NAME if symbolic else ULong(cls.DESCRIPTOR_CODE)  # type: ignore[attr-defined]
    return encode(Described(descriptor, items))


# --- every field with a value of the wrong type ----------------------------------------

# "composite.field" (spec names) → a value a hostile peer might put there.
WRONG: dict[str, object] = {
    "open.container-id": UInt(1),
    "open.hostname": b"h",
    "open.max-frame-size": "x",
    "open.channel-max": UInt(70000),
    "open.idle-time-out": Long(-1),
    "open.outgoing-locales": UInt(1),
    "open.incoming-locales": [Symbol("en")],
    "open.offered-capabilities": Array(T.UINT, [UInt(1)]),
    "open.desired-capabilities": True,
    "open.properties": {UInt(1): "x"},
    "begin.remote-channel": UInt(70000),
    "begin.next-outgoing-id": "1",
    "begin.incoming-window": True,
    "begin.outgoing-window": Long(-1),
    "begin.handle-max": ULong(2**32),
    "begin.offered-capabilities": Array(T.SYMBOL, [Symbol("x")], ULong(7)),
    "begin.desired-capabilities": [Symbol("x")],
    "begin.properties": [],
    "attach.name": UInt(0),
    "attach.handle": "h",
    "attach.role": UInt(1),
    "attach.snd-settle-mode": UByte(3),
    "attach.rcv-settle-mode": UByte(2),
    "attach.source": "q",
    "attach.target": Source(),
    "attach.unsettled": {b"t": UInt(1)},
    "attach.incomplete-unsettled": UInt(0),
    "attach.initial-delivery-count": Long(-1),
    "attach.max-message-size": Long(-1),
    "attach.offered-capabilities": UInt(1),
    "attach.desired-capabilities": Array(T.UINT, [UInt(1)]),
    "attach.properties": {Symbol("k"): None, UInt(2): None},
    "flow.next-incoming-id": "1",
    "flow.incoming-window": Long(-1),
    "flow.next-outgoing-id": True,
    "flow.outgoing-window": ULong(2**32),
    "flow.handle": Timestamp(0),
    "flow.delivery-count": "0",
    "flow.link-credit": "100",
    "flow.available": Float(1.0),
    "flow.drain": UInt(1),
    "flow.echo": "yes",
    "flow.properties": {UInt(1): None},
    "transfer.handle": "0",
    "transfer.delivery-id": True,
    "transfer.delivery-tag": "t",
    "transfer.message-format": Long(-1),
    "transfer.settled": UInt(0),
    "transfer.more": "no",
    "transfer.rcv-settle-mode": UByte(2),
    "transfer.state": Int(5),
    "transfer.resume": UInt(1),
    "transfer.aborted": "x",
    "transfer.batchable": [],
    "disposition.role": "r",
    "disposition.first": True,
    "disposition.last": Long(-1),
    "disposition.settled": UInt(1),
    "disposition.state": Source(),
    "disposition.batchable": UInt(0),
    "detach.handle": "h",
    "detach.closed": UInt(1),
    "detach.error": True,
    "end.error": UInt(0),
    "close.error": {},
    "sasl-mechanisms.sasl-server-mechanisms": UInt(1),
    "sasl-init.mechanism": UInt(1),
    "sasl-init.initial-response": "x",
    "sasl-init.hostname": b"h",
    "sasl-challenge.challenge": "c",
    "sasl-response.response": UInt(0),
    "sasl-outcome.code": UByte(5),
    "sasl-outcome.additional-data": "x",
    "error.condition": [],
    "error.description": UInt(1),
    "error.info": {UInt(1): "x"},
    "source.address": UInt(1),
    "source.durable": UInt(3),
    "source.expiry-policy": Symbol("forever"),
    "source.timeout": "1",
    "source.dynamic": UInt(0),
    "source.dynamic-node-properties": {UInt(1): None},
    "source.distribution-mode": UInt(1),
    "source.filter": {Symbol("f"): "not a described filter"},
    "source.default-outcome": Received(section_number=0, section_offset=0),  # not an outcome
    "source.outcomes": [Symbol("amqp:accepted:list")],
    "source.capabilities": True,
    "target.address": b"q",
    "target.durable": Long(-1),
    "target.expiry-policy": Symbol("later"),
    "target.timeout": True,
    "target.dynamic": "yes",
    "target.dynamic-node-properties": [],
    "target.capabilities": {},
    "received.section-number": Int(-1),
    "received.section-offset": "0",
    "rejected.error": Symbol("amqp:internal-error"),
    "modified.delivery-failed": UInt(1),
    "modified.undeliverable-here": "no",
    "modified.message-annotations": {UInt(1): "x"},
    "header.durable": UInt(1),
    "header.priority": UInt(300),
    "header.ttl": "1000",
    "header.first-acquirer": UInt(0),
    "header.delivery-count": Long(-1),
    "properties.message-id": [],
    "properties.user-id": "u",
    "properties.to": UInt(1),
    "properties.subject": b"s",
    "properties.reply-to": b"r",
    "properties.correlation-id": {},
    "properties.content-type": b"t",
    "properties.content-encoding": UInt(1),
    "properties.absolute-expiry-time": ULong(1),
    "properties.creation-time": Long(1),
    "properties.group-id": UInt(1),
    "properties.group-sequence": "1",
    "properties.reply-to-group-id": True,
}

# The cases the issue reported, and their relatives: a bad error in the three
# performatives that carry one, bad delivery states, bad termini.
WRONG_MORE: list[tuple[str, object]] = [
    *((f"{p}.error", v) for p in ("close", "end", "detach") for v in (
        True, False, UInt(0), {}, {Symbol("condition"): Symbol("amqp:x")}, Symbol("amqp:x"),
        "amqp:x", [Symbol("amqp:x")], Described(ULong(0x99), [Symbol("amqp:x")]), Accepted(),
    )),
    *((f"{p}.state", v) for p in ("transfer", "disposition") for v in (
        Int(1), UInt(0), True, Symbol("amqp:accepted:list"), {}, [], ERR, Target(),
        Described(ULong(0x99), []), Described(Symbol("x:unknown"), []),
    )),
    *(("attach.source", v) for v in (Target(), COORDINATOR, Symbol("q"), {}, UInt(1), Accepted())),
    *(("attach.target", v) for v in ("q", Accepted(), Described(ULong(0x31), []))),
    ("source.default-outcome", TRANSACTIONAL),  # a delivery-state, not an outcome
    ("source.filter", {"ok": None, Symbol("f"): UInt(1)}),
    ("attach.unsettled", {"t": None}),
    ("attach.unsettled", {b"t": ERR}),
]


def _wrong_cases() -> list[tuple[str, object]]:
    return sorted(WRONG.items()) + WRONG_MORE


def test_the_table_covers_every_field_of_every_composite() -> None:
    classes = {type(b) for b in BASES}
    assert set(PERFORMATIVES) | set(SASL_FRAMES) <= classes
    expected = {
        f"{spec_name(c)}.{name.replace('_', '-')}" for c in classes for name, _ in field_specs(c)
    }
    assert set(WRONG) == expected


@pytest.mark.parametrize("symbolic", [False, True], ids=["fast", "generic"])
@pytest.mark.parametrize(("field", "value"), _wrong_cases(),
                         ids=[f"{k}={v!r:.30}" for k, v in _wrong_cases()])
def test_wrongly_typed_field_is_a_decode_error_naming_it(
    field: str, value: object, symbolic: bool
) -> None:
    composite, name = field.split(".")
    data = with_field(BY_NAME[composite], name.replace("-", "_"), value, symbolic)
    with pytest.raises(DecodeError, match=rf"^{field}: expected "):
        decode(data)


def test_a_wrong_type_inside_a_nested_composite_names_the_inner_field() -> None:
    data = with_field(BY_NAME["close"], "error", Described(ULong(0x1D), [UInt(1)]))
    with pytest.raises(DecodeError, match="^error.condition: expected symbol"):
        decode(data)
    rejected = Described(ULong(0x25), [Described(ULong(0x1D), [Symbol("x"), b"not a string"])])
    with pytest.raises(DecodeError, match="^error.description: expected string"):
        decode(with_field(BY_NAME["disposition"], "state", rejected))


def test_messages_say_what_was_expected_and_what_came() -> None:
    cases = {
        with_field(Close(), "error", True): "close.error: expected error, got boolean",
        with_field(Close(), "error", UInt(0)): "close.error: expected error, got uint 0",
        with_field(Close(), "error", {}): "close.error: expected error, got map",
        with_field(BY_NAME["flow"], "link_credit", "100"):
            "flow.link-credit: expected uint, got string",
        with_field(BY_NAME["disposition"], "state", Int(5)):
            "disposition.state: expected delivery-state, got int 5",
        with_field(BY_NAME["attach"], "source", "q"): "attach.source: expected source, got string",
        with_field(BY_NAME["open"], "offered_capabilities", Array(T.UINT, [UInt(1)])):
            "open.offered-capabilities: expected symbol or array of symbol, got array of uint",
        with_field(BY_NAME["open"], "properties", {UInt(1): "x"}):
            "open.properties: expected map with symbol keys, got a map with a uint 1 key",
        with_field(BY_NAME["attach"], "snd_settle_mode", UByte(3)):
            "attach.snd-settle-mode: expected ubyte (one of 0, 1, 2), got 3",
    }
    for data, message in cases.items():
        with pytest.raises(DecodeError) as info:
            decode(data)
        assert info.value.description.startswith(message + " (at offset"), info.value.description


def test_missing_mandatory_fields_still_raise() -> None:
    with pytest.raises(DecodeError, match=r"^flow.incoming-window is mandatory"):
        decode(with_field(BY_NAME["flow"], "incoming_window", None))
    with pytest.raises(DecodeError, match=r"^error.condition is mandatory"):
        decode(with_field(BY_NAME["error"], "condition", None, symbolic=True))


# --- every valid type and encoding still decodes ---------------------------------------------

INTEGERS = (UByte, UShort, UInt, ULong, Byte, Short, Int, Long)

# "composite.field" → (value as sent, value expected after decoding)
VALID: list[tuple[str, object, object]] = [
    # integers of any AMQP integer type in the field's range: the value counts, not the width
    *(("flow.link-credit", w(5), 5) for w in INTEGERS),
    ("flow.link-credit", UInt(0xFFFFFFFF), 0xFFFFFFFF),
    ("flow.link-credit", ULong(0xFFFFFFFF), 0xFFFFFFFF),
    ("open.channel-max", UShort(0), 0),
    ("open.channel-max", UInt(0xFFFF), 0xFFFF),
    ("attach.max-message-size", ULong(2**64 - 1), 2**64 - 1),
    ("attach.snd-settle-mode", UByte(2), 2),
    ("attach.rcv-settle-mode", UInt(1), 1),
    ("source.durable", UInt(2), 2),
    ("sasl-outcome.code", UByte(4), 4),
    ("flow.drain", True, True),
    ("flow.echo", False, False),
    ("transfer.delivery-tag", b"", b""),
    ("transfer.delivery-tag", b"\x00" * 32, b"\x00" * 32),
    ("open.container-id", "", ""),
    ("open.container-id", "é" * 200, "é" * 200),
    ("open.hostname", Symbol("h"), "h"),  # a symbol where a string belongs
    ("error.condition", "amqp:x", Symbol("amqp:x")),  # and the other way round
    ("error.description", "d", "d"),
    ("error.info", {}, {}),
    ("error.info", {Symbol("k"): [1, {"x": None}]}, {Symbol("k"): [1, {"x": None}]}),
    ("error.info", {"k": UInt(1)}, {Symbol("k"): 1}),  # string keys read as symbols
    ("open.properties", {Symbol("product"): "x", Symbol("n"): None},
     {Symbol("product"): "x", Symbol("n"): None}),
    # multiple: a single value, an array (also empty), strings as symbols
    ("open.offered-capabilities", Symbol("a"), (Symbol("a"),)),
    ("open.offered-capabilities", Array(T.SYMBOL, []), ()),
    ("open.offered-capabilities", Array(T.SYMBOL, [Symbol("a"), Symbol("b")]),
     (Symbol("a"), Symbol("b"))),
    ("open.offered-capabilities", "a", (Symbol("a"),)),
    ("open.offered-capabilities", Array(T.STRING, ["a", "b"]), (Symbol("a"), Symbol("b"))),
    ("sasl-mechanisms.sasl-server-mechanisms", Array(T.SYMBOL, [Symbol("PLAIN")]),
     (Symbol("PLAIN"),)),
    # composite-typed and `*` fields with requires
    ("close.error", ERR, ERR),
    ("close.error", None, None),
    ("detach.error", Error(condition=Symbol("x"), info={Symbol("k"): "v"}),
     Error(condition=Symbol("x"), info={Symbol("k"): "v"})),
    ("rejected.error", ERR, ERR),
    ("attach.source", Source(address="q"), Source(address="q")),
    ("attach.source", None, None),
    ("attach.target", Target(address="q"), Target(address="q")),
    ("attach.target", COORDINATOR, COORDINATOR),
    ("attach.target", Described(Symbol("amqp:coordinator:list"), [None]),
     Described(Symbol("amqp:coordinator:list"), [None])),
    *((f"{p}.state", s, s) for p in ("transfer", "disposition") for s in (
        Received(section_number=1, section_offset=2), Accepted(), Rejected(error=ERR), Released(),
        Modified(delivery_failed=True, message_annotations={Symbol("x-opt-a"): 1}),
        DECLARED, TRANSACTIONAL,
    )),
    *(("source.default-outcome", s, s) for s in (Accepted(), Rejected(), Released(), Modified(),
                                                   DECLARED)),
    ("source.address", "/queues/q", "/queues/q"),
    ("source.address", Symbol("q"), "q"),
    ("target.address", "", ""),
    ("source.expiry-policy", Symbol("never"), Symbol("never")),
    ("source.expiry-policy", "link-detach", Symbol("link-detach")),
    ("source.distribution-mode", Symbol("copy"), Symbol("copy")),
    ("source.filter", {Symbol("f"): Described(Symbol("s"), "x"), Symbol("n"): None},
     {Symbol("f"): Described(Symbol("s"), "x"), Symbol("n"): None}),
    ("source.filter", {Symbol("f"): Described(ULong(0x468C00000004), "a = 1")},
     {Symbol("f"): Described(ULong(0x468C00000004), "a = 1")}),
    ("source.outcomes", Array(T.SYMBOL, [Symbol("amqp:accepted:list")]),
     (Symbol("amqp:accepted:list"),)),
    ("attach.unsettled", {b"t": Accepted(), b"u": None}, {b"t": Accepted(), b"u": None}),
    *(("properties.message-id", m, m) for m in (ULong(7), uuid.UUID(int=7), b"id", "id")),
    ("properties.correlation-id", Symbol("id"), "id"),
    ("properties.to", "/queues/q", "/queues/q"),
    ("properties.reply-to", "r", "r"),
    ("properties.absolute-expiry-time", Timestamp(-1), -1),
    ("properties.creation-time", Timestamp(2**63 - 1), 2**63 - 1),
    ("header.priority", UByte(9), 9),
    ("modified.message-annotations", {Symbol("x-opt-a"): "b"}, {Symbol("x-opt-a"): "b"}),
]


@pytest.mark.parametrize("symbolic", [False, True], ids=["fast", "generic"])
@pytest.mark.parametrize(("field", "sent", "expected"), VALID,
                         ids=[f"{k}={v!r:.30}" for k, v, _ in VALID])
def test_valid_values_of_every_type_decode(
    field: str, sent: object, expected: object, symbolic: bool
) -> None:
    composite, name = field.split(".")
    attr = name.replace("-", "_")
    value, _ = decode(with_field(BY_NAME[composite], attr, sent, symbolic))
    got = getattr(value, attr)
    assert got == expected
    if isinstance(expected, str):
        assert type(got) is type(expected), "the coerced type, not the type sent"
    if isinstance(expected, dict):
        assert [type(k) for k in got] == [type(k) for k in expected]


def test_valid_wide_and_compact_encodings_of_uint_fields() -> None:
    """A uint field read from each of its encodings (uint0, smalluint, uint) and
    from wider or signed integer encodings holding a value in range."""
    for hexes in ("43", "52 05", "70 00 00 00 05", "53 05", "44", "80 00 00 00 00 00 00 00 05",
                  "50 05", "60 00 05", "54 05", "55 05", "71 00 00 00 05"):
        field = bytes.fromhex(hexes)
        # flow: next-incoming-id null, then incoming-window as given, then two uint0s
        body = b"\x40" + field + b"\x43\x43"
        data = b"\x00\x53\x13\xc0" + bytes([len(body) + 1, 4]) + body
        flow, _ = decode(data)
        assert flow.incoming_window in (0, 5), hexes  # type: ignore[attr-defined]


# --- property: whatever decodes is well typed ---------------------------------------------------

# The rules again, written independently of the codec's: what a decoded field may hold.
_NAMED = {T.BOOLEAN: (bool,), T.STRING: (str,), T.SYMBOL: (Symbol,), T.BINARY: (bytes,),
          T.TIMESTAMP: (Timestamp,), T.MAP: (dict,), T.LIST: (list,)}
_RANGES = {T.UBYTE: 2**8, T.USHORT: 2**16, T.UINT: 2**32, T.ULONG: 2**64}
_PROVIDERS: dict[str, tuple[type, ...]] = {
    "source": (Source,),
    "target": (Target, Described),
    "delivery-state": (Received, Accepted, Rejected, Released, Modified, Described),
    "outcome": (Accepted, Rejected, Released, Modified, Described),
    "address": (str,),
    "message-id": (ULong, uuid.UUID, bytes, str),
}


def _well_typed(spec: FieldSpec, v: object) -> bool:
    if v is None or v == spec.default:
        return not spec.mandatory or v is not None
    if spec.multiple:
        return isinstance(v, tuple) and all(
            _well_typed(dataclasses.replace(spec, multiple=False, mandatory=True), x) for x in v)
    t = spec.amqp_type
    if t is None:
        return isinstance(v, tuple(c for r in spec.requires for c in _PROVIDERS[r]))
    if isinstance(t, type):
        return type(v) is t
    if t in _RANGES:
        ok = isinstance(v, int) and not isinstance(v, (bool, Timestamp)) and 0 <= v < _RANGES[t]
        return ok and (not spec.choices or v in spec.choices)
    if not isinstance(v, _NAMED[t]):
        return False
    if t is T.STRING and type(v) is not str:
        return False
    if spec.choices and v not in spec.choices:
        return False
    if isinstance(v, dict) and spec.keys is T.SYMBOL:
        return all(type(k) is Symbol for k in v)
    if isinstance(v, dict) and spec.keys is T.BINARY:
        return all(type(k) is bytes for k in v)
    return True


def _replace_field(base: object, index: int, value: object, symbolic: bool) -> bytes:
    items = fields_of(base)
    items[index] = value
    cls = type(base)
    descriptor = cls.DESCRIPTOR_NAME if symbolic else ULong(cls.DESCRIPTOR_CODE)  # type: ignore[attr-defined]
    return encode(Described(descriptor, items))


_any_value = st.one_of(
    values,
    st.sampled_from([ERR, Source(), Target(), Accepted(), Rejected(error=ERR), Modified(),
                     Received(section_number=0, section_offset=0), COORDINATOR, DECLARED,
                     Symbol("never"), UByte(1), UInt(3), True, {Symbol("k"): None}]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), st.data(), st.booleans())
def test_whatever_decodes_has_well_typed_fields(
    base: object, data: st.DataObject, symbolic: bool
) -> None:
    specs = field_specs(type(base))
    index = data.draw(st.integers(0, len(specs) - 1), label="field")
    value = data.draw(_any_value, label="value")
    encoded = _replace_field(base, index, value, symbolic)
    try:
        decoded, _ = decode(encoded)
    except DecodeError as exc:
        # the sampled values nest only valid composites: the error is the field's
        where = f"{spec_name(type(base))}.{specs[index][0].replace('_', '-')}"
        assert exc.description.startswith(where), exc.description
        return
    for name, spec in specs:
        assert _well_typed(spec, getattr(decoded, name)), (name, getattr(decoded, name))
