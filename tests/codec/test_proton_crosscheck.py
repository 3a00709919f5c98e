"""Cross-checks against Qpid Proton (python-qpid-proton): an independent AMQP 1.0 codec.

Values of every type go both ways (proton encodes → we decode, we encode →
proton decodes) and are compared type for type; performatives and messages
are exchanged with proton's codec, and a whole SASL + link + transfer dialogue
is run against proton's protocol engine with frames we encode and decode.
"""

from __future__ import annotations

import uuid

import proton
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec import decode, encode
from broker.codec.messaging import (
    Accepted,
    AmqpSequence,
    AmqpValue,
    Data,
    Header,
    Message,
    Properties,
    Source,
    Target,
)
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    Role,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
)
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
from broker.framing import (
    AMQP_HEADER,
    HEARTBEAT,
    NEED_DATA,
    SASL_HEADER,
    Frame,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
    encode_frame,
)

from .strategies import (
    PROTON_STRATEGIES,
    _described_not_twice,
    assert_identical,
    descriptors,
    proton_values,
)

T = AmqpType
PD = proton.Data

_TYPE_CODES = {
    T.NULL: PD.NULL,
    T.BOOLEAN: PD.BOOL,
    T.UBYTE: PD.UBYTE,
    T.USHORT: PD.USHORT,
    T.UINT: PD.UINT,
    T.ULONG: PD.ULONG,
    T.BYTE: PD.BYTE,
    T.SHORT: PD.SHORT,
    T.INT: PD.INT,
    T.LONG: PD.LONG,
    T.FLOAT: PD.FLOAT,
    T.DOUBLE: PD.DOUBLE,
    T.DECIMAL32: PD.DECIMAL32,
    T.DECIMAL64: PD.DECIMAL64,
    T.DECIMAL128: PD.DECIMAL128,
    T.CHAR: PD.CHAR,
    T.TIMESTAMP: PD.TIMESTAMP,
    T.UUID: PD.UUID,
    T.BINARY: PD.BINARY,
    T.STRING: PD.STRING,
    T.SYMBOL: PD.SYMBOL,
    T.LIST: PD.LIST,
    T.MAP: PD.MAP,
    T.ARRAY: PD.ARRAY,
}
_FROM_CODE = {v: k for k, v in _TYPE_CODES.items()}


def to_proton(v: object) -> object:
    """Our value → the proton Python object for the same AMQP value."""
    t = type(v)
    simple = {
        UByte: proton.ubyte,
        UShort: proton.ushort,
        UInt: proton.uint,
        ULong: proton.ulong,
        Byte: proton.byte,
        Short: proton.short,
        Int: proton.int32,
        Float: proton.float32,
        Char: proton.char,
        Timestamp: proton.timestamp,
        Symbol: proton.symbol,
    }
    if t in simple:
        return simple[t](v)  # type: ignore[operator]
    if t is Long:
        return int(v)  # type: ignore[call-overload]
    if t is Decimal32:
        return proton.decimal32(int.from_bytes(v, "big"))  # type: ignore[arg-type]
    if t is Decimal64:
        return proton.decimal64(int.from_bytes(v, "big"))  # type: ignore[arg-type]
    if t is Decimal128:
        return proton.decimal128(bytes(v))  # type: ignore[arg-type]
    if t is list:
        return [to_proton(x) for x in v]  # type: ignore[attr-defined]
    if t is dict:
        return {to_proton(k): to_proton(x) for k, x in v.items()}  # type: ignore[attr-defined]
    if t is Described:
        return proton.Described(to_proton(v.descriptor), to_proton(v.value))  # type: ignore[attr-defined]
    if t is Array:
        d = proton.UNDESCRIBED if v.descriptor is None else to_proton(v.descriptor)  # type: ignore[attr-defined]
        return proton.Array(d, _TYPE_CODES[v.element_type], *(to_proton(x) for x in v.items))  # type: ignore[attr-defined]
    assert t in (type(None), bool, float, str, bytes, uuid.UUID), t
    return v


def from_proton(v: object) -> object:
    """A proton Python object → our value, by exact proton type."""
    t = type(v)
    simple = {
        proton.ubyte: UByte,
        proton.ushort: UShort,
        proton.uint: UInt,
        proton.ulong: ULong,
        proton.byte: Byte,
        proton.short: Short,
        proton.int32: Int,
        proton.float32: Float,
        proton.char: Char,
        proton.timestamp: Timestamp,
        proton.symbol: Symbol,
        int: Long,
    }
    if t in simple:
        return simple[t](v)  # type: ignore[operator]
    if t is proton.decimal32:
        return Decimal32(int(v).to_bytes(4, "big"))  # type: ignore[call-overload]
    if t is proton.decimal64:
        return Decimal64(int(v).to_bytes(8, "big"))  # type: ignore[call-overload]
    if t is proton.decimal128:
        return Decimal128(bytes(v))  # type: ignore[call-overload]
    if t is list:
        return [from_proton(x) for x in v]  # type: ignore[attr-defined]
    if t is dict:
        return {from_proton(k): from_proton(x) for k, x in v.items()}  # type: ignore[attr-defined]
    if t is proton.Described:
        return Described(from_proton(v.descriptor), from_proton(v.value))  # type: ignore[attr-defined]
    if t is proton.Array:
        d = None if v.descriptor is proton.UNDESCRIBED else from_proton(v.descriptor)  # type: ignore[attr-defined]
        return Array(_FROM_CODE[v.type], [from_proton(x) for x in v.elements], d)  # type: ignore[attr-defined]
    assert t in (type(None), bool, float, str, bytes, uuid.UUID), t
    return v


def proton_encode(value: object) -> bytes:
    data = proton.Data()
    data.put_object(value)
    return data.encode()


def _owned(v: object) -> object:
    """Copy the memoryviews proton hands out for binaries: they point into the
    `Data` object's buffer and change once it is reused or freed."""
    t = type(v)
    if t is memoryview:
        return bytes(v)  # type: ignore[arg-type]
    if t is list:
        return [_owned(x) for x in v]  # type: ignore[attr-defined]
    if t is dict:
        return {_owned(k): _owned(x) for k, x in v.items()}  # type: ignore[attr-defined]
    if t is proton.Described:
        return proton.Described(_owned(v.descriptor), _owned(v.value))  # type: ignore[attr-defined]
    if t is proton.Array:
        return proton.Array(_owned(v.descriptor), v.type, *(_owned(x) for x in v.elements))  # type: ignore[attr-defined]
    return v


def proton_decode(raw: bytes) -> object:
    data = proton.Data()
    assert data.decode(raw) == len(raw)
    data.rewind()
    assert data.next() is not None
    value = _owned(_get(data))
    assert data.next() is None, "proton found more than one value"
    return value


def _get(data: proton.Data) -> object:
    """data.get_object(), copying binaries as it goes (a memoryview key is unhashable)."""
    if data.type() == PD.DESCRIBED:
        data.enter()
        data.next()
        descriptor = _get(data)
        data.next()
        value = _get(data)
        data.exit()
        return proton.Described(descriptor, value)
    if data.type() == PD.ARRAY:
        count, described, element_type = data.get_array()
        data.enter()
        descriptor: object = proton.UNDESCRIBED
        if described:
            data.next()
            descriptor = _get(data)
        elements = []
        for _ in range(count):
            data.next()
            elements.append(_get(data))
        data.exit()
        return proton.Array(descriptor, element_type, *elements)
    if data.type() == PD.MAP:
        count = data.get_map()
        data.enter()
        items = []
        for _ in range(count // 2):
            data.next()
            k = _owned(_get(data))
            data.next()
            items.append((k, _owned(_get(data))))
        data.exit()
        return dict(items)
    if data.type() == PD.LIST:
        count = data.get_list()
        data.enter()
        out = []
        for _ in range(count):
            data.next()
            out.append(_owned(_get(data)))
        data.exit()
        return out
    return _owned(data.get_object())


def check_both_ways(value: object) -> None:
    # proton encodes, we decode
    theirs = proton_encode(to_proton(value))
    decoded, end = decode(theirs)
    assert end == len(theirs)
    assert_identical(decoded, value)
    # we encode, proton decodes
    ours = encode(value)
    assert_identical(from_proton(proton_decode(ours)), value)


@pytest.mark.parametrize("amqp_type", list(AmqpType), ids=lambda t: t.value)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_type_both_ways(amqp_type: AmqpType, data: st.DataObject) -> None:
    check_both_ways(data.draw(PROTON_STRATEGIES[amqp_type], label=amqp_type.value))


@settings(max_examples=100, deadline=None)
@given(st.one_of(proton_values, st.builds(_described_not_twice, descriptors, proton_values)))
def test_nested_values_both_ways(value: object) -> None:
    check_both_ways(value)


def test_proton_uses_the_same_compact_encodings() -> None:
    """Where the spec leaves a choice, proton picks the same bytes as we do."""
    for value in [
        UInt(0),
        UInt(5),
        UInt(70000),
        ULong(0),
        ULong(7),
        ULong(2**40),
        Int(5),
        Long(5),
        Long(2**40),
        True,
        None,
        "ab",
        Symbol("ab"),
        b"ab",
        "x" * 300,
        [],
        Char("x"),
    ]:
        assert encode(value) == proton_encode(to_proton(value)), value


def test_proton_wide_encodings_decode() -> None:
    """proton writes lists, maps and arrays with 32-bit sizes and full-width elements."""
    raw = proton_encode([1, "a"])
    assert raw[0] == 0xD0
    assert decode(raw)[0] == [Long(1), "a"]
    raw = proton_encode(proton.Array(proton.UNDESCRIBED, PD.UINT, proton.uint(1), proton.uint(2)))
    assert raw[0] == 0xF0 and raw[9] == 0x70
    assert_identical(decode(raw)[0], Array(T.UINT, [UInt(1), UInt(2)]))


# --- performatives via proton.Data described lists -------------------------------------

PERFORMATIVE_SAMPLES = [
    Open(
        container_id="c",
        hostname="h",
        max_frame_size=512,
        channel_max=7,
        idle_time_out=30000,
        offered_capabilities=(Symbol("a"), Symbol("b")),
        properties={Symbol("p"): "v"},
    ),
    Begin(remote_channel=1, next_outgoing_id=0, incoming_window=2048, outgoing_window=2048),
    Attach(
        name="l",
        handle=0,
        role=Role.RECEIVER,
        source=Source(address="q", outcomes=(Symbol("amqp:accepted:list"),)),
        target=Target(address="t"),
        initial_delivery_count=0,
        max_message_size=2**40,
    ),
    Flow(
        next_incoming_id=1,
        incoming_window=2048,
        next_outgoing_id=1,
        outgoing_window=2048,
        handle=0,
        delivery_count=0,
        link_credit=100,
        drain=True,
    ),
    Transfer(handle=0, delivery_id=5, delivery_tag=b"\x00\x01", message_format=0, settled=False),
    Disposition(role=Role.RECEIVER, first=0, last=3, settled=True, state=Accepted()),
    Detach(
        handle=2,
        closed=True,
        error=Error(condition=Symbol("amqp:link:detach-forced"), description="d"),
    ),
    End(),
    Close(error=Error(condition=Symbol("amqp:internal-error"), info={Symbol("k"): UInt(1)})),
]


@pytest.mark.parametrize("performative", PERFORMATIVE_SAMPLES, ids=lambda p: type(p).__name__)
def test_performatives_both_ways(performative: object) -> None:
    ours = encode(performative)
    theirs = proton_decode(ours)
    assert type(theirs) is proton.Described
    assert theirs.descriptor == performative.DESCRIPTOR_CODE  # type: ignore[attr-defined]
    assert type(theirs.descriptor) is proton.ulong
    # proton re-encodes the described list it read; we read back the same performative
    again, _ = decode(proton_encode(theirs))
    assert again == performative


def test_performatives_built_with_proton_described_lists() -> None:
    u, sym = proton.ulong, proton.symbol
    cases = [
        (
            proton.Described(u(0x10), ["c", None, proton.uint(512)]),
            Open(container_id="c", max_frame_size=512),
        ),
        (proton.Described(sym("amqp:open:list"), ["c"]), Open(container_id="c")),
        (
            proton.Described(u(0x11), [None, proton.uint(0), proton.uint(10), proton.uint(10)]),
            Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10),
        ),
        (
            proton.Described(
                u(0x12),
                [
                    "n",
                    proton.uint(3),
                    True,
                    proton.ubyte(1),
                    None,
                    proton.Described(u(0x28), ["q"]),
                    None,
                ],
            ),
            Attach(name="n", handle=3, role=True, snd_settle_mode=1, source=Source(address="q")),
        ),
        (
            proton.Described(u(0x14), [proton.uint(0), proton.uint(1), b"t", proton.uint(0), True]),
            Transfer(handle=0, delivery_id=1, delivery_tag=b"t", message_format=0, settled=True),
        ),
        (
            proton.Described(
                u(0x15), [True, proton.uint(4), None, True, proton.Described(u(0x24), [])]
            ),
            Disposition(role=True, first=4, settled=True, state=Accepted()),
        ),
        (
            proton.Described(
                u(0x40),
                [proton.Array(proton.UNDESCRIBED, PD.SYMBOL, sym("PLAIN"), sym("ANONYMOUS"))],
            ),
            SaslMechanisms(sasl_server_mechanisms=(Symbol("PLAIN"), Symbol("ANONYMOUS"))),
        ),
        (proton.Described(u(0x44), [proton.ubyte(0)]), SaslOutcome(code=0)),
    ]
    for theirs, expected in cases:
        value, _ = decode(proton_encode(theirs))
        assert value == expected


# --- messages ------------------------------------------------------------------------


def _proton_message() -> proton.Message:
    m = proton.Message(
        body={"k": [1, 2]},
        id=uuid.UUID(int=7),
        user_id=b"u",
        address="q",
        subject="s",
        reply_to="r",
        correlation_id=proton.ulong(9),
        content_type="application/json",
        content_encoding="utf-8",
        expiry_time=1700000000.0,
        creation_time=1600000000.5,
        group_id="g",
        group_sequence=5,
        reply_to_group_id="rg",
        durable=True,
        priority=7,
        ttl=1.5,
        first_acquirer=True,
        delivery_count=3,
    )
    m.properties = {"a": 1, "b": "x", "c": proton.int32(-1)}
    m.annotations = {proton.symbol("x-opt-a"): "v", proton.symbol("x-opt-n"): proton.ulong(2)}
    m.instructions = {proton.symbol("x-opt-i"): 1}
    return m


def test_proton_message_parsed_by_us() -> None:
    msg = Message.parse(_proton_message().encode())
    assert msg.header == Header(
        durable=True, priority=7, ttl=1500, first_acquirer=True, delivery_count=3
    )
    assert msg.properties == Properties(
        message_id=uuid.UUID(int=7),
        user_id=b"u",
        to="q",
        subject="s",
        reply_to="r",
        correlation_id=ULong(9),
        content_type=Symbol("application/json"),
        content_encoding=Symbol("utf-8"),
        absolute_expiry_time=1700000000000,
        creation_time=1600000000500,
        group_id="g",
        group_sequence=5,
        reply_to_group_id="rg",
    )
    assert type(msg.properties.correlation_id) is ULong  # type: ignore[union-attr]
    assert_identical(msg.application_properties, {"a": Long(1), "b": "x", "c": Int(-1)})
    assert_identical(msg.message_annotations, {Symbol("x-opt-a"): "v", Symbol("x-opt-n"): ULong(2)})
    assert_identical(msg.delivery_annotations, {Symbol("x-opt-i"): Long(1)})
    assert msg.body == [AmqpValue({"k": [Long(1), Long(2)]})]
    assert msg.footer is None
    # the bare message is exactly proton's properties..body bytes
    raw = msg.payload
    assert msg.bare == raw[raw.index(b"\x00\x53\x73") :]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"raw", [Data(b"raw")]),
        ([1, "a"], [AmqpSequence([Long(1), "a"])]),
        ("text", [AmqpValue("text")]),
        (None, []),
    ],
    ids=["data", "sequence", "value", "none"],
)
def test_proton_message_bodies(body: object, expected: list[object]) -> None:
    m = proton.Message(body=body)
    m.inferred = body is not None and not isinstance(body, str)
    assert Message.parse(m.encode()).body == expected


def test_our_message_decoded_by_proton() -> None:
    ours = Message.create(
        {"k": [1, 2]},
        header=Header(durable=True, priority=6, ttl=2500, delivery_count=1),
        delivery_annotations={Symbol("x-opt-i"): 1},
        message_annotations={Symbol("x-opt-a"): "v"},
        properties=Properties(
            message_id="id-1",
            user_id=b"u",
            to="q",
            subject="s",
            reply_to="r",
            correlation_id=ULong(4),
            content_type=Symbol("text/plain"),
            absolute_expiry_time=Timestamp(1700000000000),
            creation_time=Timestamp(1600000000500),
            group_id="g",
            group_sequence=5,
            reply_to_group_id="rg",
        ),
        application_properties={"a": 1, "b": Symbol("s"), "c": Float(0.5)},
    )
    m = proton.Message()
    m.decode(ours.encode())
    assert (m.durable, m.priority, m.ttl, m.first_acquirer, m.delivery_count) == (
        True,
        6,
        2.5,
        False,
        1,
    )
    assert m.instructions == {proton.symbol("x-opt-i"): 1}
    assert m.annotations == {proton.symbol("x-opt-a"): "v"}
    assert (m.id, m.user_id, m.address, m.subject, m.reply_to) == ("id-1", b"u", "q", "s", "r")
    assert m.correlation_id == 4
    assert m.content_type == "text/plain"
    assert (m.expiry_time, m.creation_time) == (1700000000.0, 1600000000.5)
    assert (m.group_id, m.group_sequence, m.reply_to_group_id) == ("g", 5, "rg")
    assert m.properties == {"a": 1, "b": proton.symbol("s"), "c": 0.5}
    assert type(m.properties["b"]) is proton.symbol and type(m.properties["c"]) is proton.float32
    assert m.body == {"k": [1, 2]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"raw", b"raw"), (AmqpSequence([Long(1)]), [1]), ("text", "text")],
    ids=["data", "sequence", "value"],
)
def test_our_message_bodies_decoded_by_proton(body: object, expected: object) -> None:
    m = proton.Message()
    m.decode(Message.create(body).encode())
    assert m.body == expected


def test_with_changes_decoded_by_proton() -> None:
    """A rewritten header/annotations followed by the untouched bare message."""
    original = Message.parse(_proton_message().encode())
    changed = original.with_changes(
        header=Header(durable=True, priority=7, ttl=1500, first_acquirer=False, delivery_count=4),
        message_annotations={Symbol("x-opt-a"): "w"},
    )
    m = proton.Message()
    m.decode(changed.encode())
    assert (m.delivery_count, m.first_acquirer) == (4, False)
    assert m.annotations == {proton.symbol("x-opt-a"): "w"}
    assert m.properties == {"a": 1, "b": "x", "c": -1}
    assert m.body == {"k": [1, 2]} and m.id == uuid.UUID(int=7)


# --- a dialogue with proton's protocol engine -------------------------------------------


class ProtonClient:
    """Proton's client-side engine; we play the server with our frames."""

    def __init__(self) -> None:
        self.conn = proton.Connection()
        self.conn.container = "proton-client"
        self.conn.hostname = "broker"
        self.transport = proton.Transport()
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.transport.bind(self.conn)
        self.reader = FrameReader()

    def push(
        self, *frames: tuple[int, object], header: bytes = b"", ftype: int = 0, payload: bytes = b""
    ) -> None:
        out = bytearray(header)
        for channel, performative in frames:
            encode_frame(
                out,
                channel,
                performative,
                payload if isinstance(performative, Transfer) else b"",
                ftype,
            )
        self.transport.push(bytes(out))

    def received(self) -> list[object]:
        """What proton sent since last time: headers, and (performative, payload) per frame."""
        n = self.transport.pending()
        if n > 0:
            self.reader.feed(self.transport.peek(n))
            self.transport.pop(n)
        got: list[object] = []
        while (item := self.reader.next()) is not NEED_DATA:
            if isinstance(item, ProtocolHeader):
                got.append(item.raw)
            else:
                assert isinstance(item, Frame)
                got.append(decode_frame_body(item.body) if item.body else HEARTBEAT)
        return got


def test_dialogue_with_proton_engine() -> None:
    client = ProtonClient()
    c = client.conn
    c.open()
    session = c.session()
    session.open()
    sender = session.sender("link-1")
    sender.target.address = "queue-a"
    sender.open()

    # SASL: proton offers its header, we offer ANONYMOUS, proton picks it, we accept.
    assert client.received() == [SASL_HEADER]
    client.push(
        (0, SaslMechanisms(sasl_server_mechanisms=(Symbol("PLAIN"), Symbol("ANONYMOUS")))),
        header=SASL_HEADER,
        ftype=1,
    )
    [(init, _)] = client.received()  # type: ignore[misc]
    assert init.mechanism == "ANONYMOUS"
    client.push((0, SaslOutcome(code=0)), ftype=1)
    client.reader.expect_header()

    got = client.received()
    assert got[0] == AMQP_HEADER
    (op, _), (begin, _), (attach, _) = got[1:]  # type: ignore[misc]
    assert op.container_id == "proton-client" and op.hostname == "broker"
    assert begin.remote_channel is None and begin.next_outgoing_id == 0
    assert attach.name == "link-1" and attach.role is Role.SENDER and attach.handle == 0
    assert attach.target == Target(address="queue-a")

    # our open/begin/attach/flow, and a heartbeat; proton grants the sender credit
    client.push(
        (0, Open(container_id="broker", max_frame_size=65536, channel_max=9, idle_time_out=60000)),
        (0, Begin(remote_channel=0, next_outgoing_id=0, incoming_window=100, outgoing_window=100)),
        (
            0,
            Attach(
                name="link-1",
                handle=7,
                role=Role.RECEIVER,
                source=attach.source,
                target=Target(address="queue-a"),
                max_message_size=2**20,
            ),
        ),
        (
            0,
            Flow(
                next_incoming_id=0,
                incoming_window=100,
                next_outgoing_id=0,
                outgoing_window=100,
                handle=7,
                delivery_count=0,
                link_credit=10,
            ),
        ),
        header=AMQP_HEADER,
    )
    client.transport.push(HEARTBEAT)
    assert c.remote_container == "broker"
    assert client.transport.remote_max_frame_size == 65536
    assert sender.credit == 10
    assert sender.remote_target.address == "queue-a"

    # proton sends a message; we read the transfer and the message in it
    delivery = sender.delivery(b"tag-1")
    sender.send(_proton_message().encode())
    sender.advance()
    [(transfer, payload)] = client.received()  # type: ignore[misc]
    assert transfer == Transfer(handle=0, delivery_id=0, delivery_tag=b"tag-1", message_format=0)
    msg = Message.parse(payload)
    assert msg.properties.message_id == uuid.UUID(int=7)  # type: ignore[union-attr]
    assert msg.application_properties == {"a": 1, "b": "x", "c": -1}

    # our disposition settles it as accepted
    client.push((0, Disposition(role=Role.RECEIVER, first=0, settled=True, state=Accepted())))
    assert delivery.remote_state == proton.Delivery.ACCEPTED
    assert delivery.settled

    # we close everything with errors; proton reports them and answers in kind
    client.push(
        (
            0,
            Detach(
                handle=7,
                closed=True,
                error=Error(condition=Symbol("amqp:link:detach-forced"), description="bye"),
            ),
        ),
        (0, End()),
        (0, Close(error=Error(condition=Symbol("amqp:connection:forced"), description="shutdown"))),
    )
    assert sender.remote_condition.name == "amqp:link:detach-forced"
    assert sender.remote_condition.description == "bye"
    assert c.remote_condition.name == "amqp:connection:forced"
    assert c.state & proton.Endpoint.REMOTE_CLOSED
    sender.close()
    session.close()
    c.close()
    got = client.received()
    assert [type(p) for p, _ in got] == [Detach, End, Close]  # type: ignore[misc]
    assert got[0][0] == Detach(handle=0, closed=True)  # type: ignore[index]
