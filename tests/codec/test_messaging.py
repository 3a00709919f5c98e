"""Message (§3.2): locating sections, lazy decoding, the bare message, rewriting."""

from __future__ import annotations

import pytest

from broker.codec import encode
from broker.codec.messaging import (
    AmqpSequence,
    AmqpValue,
    ApplicationProperties,
    Data,
    DeliveryAnnotations,
    Footer,
    Header,
    Message,
    MessageAnnotations,
    Properties,
)
from broker.codec.types import Long, Symbol, ULong
from broker.errors import DecodeError

from .golden import g
from .strategies import assert_identical

HEADER = Header(durable=True, delivery_count=2)
PROPS = Properties(message_id="m1", to="q", subject="s")


def sections(*objs: object) -> bytes:
    return b"".join(encode(o) for o in objs)


def full_message() -> tuple[Message, dict[str, bytes]]:
    parts = {
        "header": encode(HEADER),
        "da": encode(DeliveryAnnotations({Symbol("x-opt-d"): 1})),
        "ma": encode(MessageAnnotations({Symbol("x-opt-a"): "v"})),
        "props": encode(PROPS),
        "app": encode(ApplicationProperties({"k": 7})),
        "body": encode(Data(b"one")) + encode(Data(b"two")),
        "footer": encode(Footer({Symbol("f"): b"h"})),
    }
    return Message.parse(b"".join(parts.values())), parts


def test_parse_locates_every_section() -> None:
    msg, parts = full_message()
    assert msg.header == HEADER
    assert_identical(msg.delivery_annotations, {Symbol("x-opt-d"): Long(1)})
    assert msg.message_annotations == {Symbol("x-opt-a"): "v"}
    assert msg.properties == PROPS
    assert_identical(msg.application_properties, {"k": Long(7)})
    assert msg.body == [Data(b"one"), Data(b"two")]
    assert msg.footer == {Symbol("f"): b"h"}
    assert msg.bare == parts["props"] + parts["app"] + parts["body"]
    assert msg.has_header and msg.has_section(0x72) and not Message.parse(parts["body"]).has_header
    assert len(msg) == len(msg.payload) and "bytes" in repr(msg)


def test_empty_sections_as_rhea_writes_them() -> None:
    """rhea writes an empty header and properties as list0 (0x45)."""
    payload = b"\x00\x53\x70\x45" + b"\x00\x53\x73\x45" + b"\x00\x53\x77\xa1\x02hi"
    msg = Message.parse(payload)
    assert msg.header == Header() and msg.properties == Properties()
    assert msg.body == [AmqpValue("hi")]
    assert msg.bare == payload[4:]


def test_missing_sections_are_none() -> None:
    msg = Message.parse(encode(AmqpValue("x")))
    assert (
        msg.header,
        msg.delivery_annotations,
        msg.message_annotations,
        msg.properties,
        msg.application_properties,
        msg.footer,
    ) == (None,) * 6
    assert msg.body == [AmqpValue("x")]
    assert msg.bare == encode(AmqpValue("x"))


def test_empty_message() -> None:
    msg = Message.parse(b"")
    assert msg.body == [] and msg.bare == b"" and msg.header is None


def test_bare_message_without_body() -> None:
    data = sections(HEADER, PROPS)
    msg = Message.parse(data)
    assert msg.body == []
    assert msg.bare == encode(PROPS)


def test_parse_does_not_decode_sections() -> None:
    """Sections are located by size only; a malformed one fails when read."""
    bad_value = b"\x00\x53\x77" + g("c0 06 01 73 ff ff ff ff")  # list8 holding a bad char
    bad_props = b"\x00\x53\x73" + g("c0 03 01 56 07")  # boolean 7
    msg = Message.parse(encode(HEADER) + bad_props + bad_value)
    assert msg.header == HEADER
    with pytest.raises(DecodeError):
        msg.properties  # noqa: B018
    with pytest.raises(DecodeError):
        msg.body  # noqa: B018
    assert msg.encode() == msg.payload


def test_sections_decode_once() -> None:
    msg, _ = full_message()
    assert msg.properties is msg.properties
    assert msg.message_annotations is msg.message_annotations


@pytest.mark.parametrize(
    ("descriptor", "value"),
    [
        (g("80 00 00 00 00 00 00 00 77"), g("a1 01 78")),
        (g('a3 11 "amqp:amqp-value:*"'), g("a1 01 78")),
        (g("53 77"), g("b1 00 00 00 01 78")),
    ],
    ids=["ulong", "symbol", "str32"],
)
def test_section_descriptor_forms(descriptor: bytes, value: bytes) -> None:
    msg = Message.parse(b"\x00" + descriptor + value)
    assert msg.body == [AmqpValue("x")]


@pytest.mark.parametrize(
    ("why", "data"),
    [
        ("not described", g("a1 01 78")),
        ("unknown section code", g("00 53 79 40")),
        ("unknown section symbol", g('00 a3 03 "x:y" 40')),
        ("descriptor of the wrong type", g("00 55 77 40")),
        ("truncated descriptor", g("00 53")),
        ("no descriptor", g("00")),
        ("truncated value", g("00 53 75 a0 05 61")),
        ("trailing garbage", encode(Data(b"x")) + b"\x40"),
    ],
)
def test_malformed_messages(why: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        Message.parse(data)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"raw", [Data(b"raw")]),
        (bytearray(b"raw"), [Data(b"raw")]),
        (Data(b"d"), [Data(b"d")]),
        (AmqpSequence([1]), [AmqpSequence([Long(1)])]),
        (AmqpValue(None), [AmqpValue(None)]),
        ([Data(b"a"), Data(b"b")], [Data(b"a"), Data(b"b")]),
        ([1, 2], [AmqpValue([Long(1), Long(2)])]),
        ([], [AmqpValue([])]),
        ({"k": "v"}, [AmqpValue({"k": "v"})]),
        (None, [AmqpValue(None)]),
        ("text", [AmqpValue("text")]),
    ],
    ids=repr,
)
def test_create_bodies(body: object, expected: list[object]) -> None:
    msg = Message.create(body)
    assert msg.body == expected
    assert msg.bare == msg.payload


def test_create_writes_sections_in_order() -> None:
    msg = Message.create(
        b"b",
        header=HEADER,
        delivery_annotations={Symbol("d"): 1},
        message_annotations={Symbol("a"): 2},
        properties=PROPS,
        application_properties={"p": 3},
        footer={Symbol("f"): 4},
    )
    assert msg.payload == sections(
        HEADER,
        DeliveryAnnotations({Symbol("d"): 1}),
        MessageAnnotations({Symbol("a"): 2}),
        PROPS,
        ApplicationProperties({"p": 3}),
        Data(b"b"),
        Footer({Symbol("f"): 4}),
    )


def test_unchanged_message_encodes_to_its_payload() -> None:
    msg, _ = full_message()
    assert msg.encode() is msg.payload


def test_with_changes_rewrites_header_and_annotations_only() -> None:
    msg, parts = full_message()
    new_header = Header(durable=True, delivery_count=3, first_acquirer=True)
    changed = msg.with_changes(header=new_header, message_annotations={Symbol("x-opt-b"): ULong(1)})
    assert changed.header == new_header
    assert changed.message_annotations == {Symbol("x-opt-b"): 1}
    assert changed.properties == PROPS  # shared, untouched
    assert changed.encode() == (
        encode(new_header)
        + parts["da"]
        + encode(MessageAnnotations({Symbol("x-opt-b"): ULong(1)}))
        + parts["props"]
        + parts["app"]
        + parts["body"]
        + parts["footer"]
    )
    # the original is unaffected
    assert msg.header == HEADER and msg.encode() == msg.payload
    reparsed = Message.parse(changed.encode())
    assert reparsed.bare == msg.bare and reparsed.header == new_header
    assert reparsed.footer == msg.footer


def test_with_changes_adds_sections_the_message_lacked() -> None:
    msg = Message.parse(encode(Data(b"x")))
    changed = msg.with_changes(header=HEADER)
    assert changed.encode() == encode(HEADER) + encode(Data(b"x"))
    changed = changed.with_changes(message_annotations={Symbol("a"): 1})
    assert changed.header == HEADER  # kept from the first change
    assert changed.encode() == sections(HEADER, MessageAnnotations({Symbol("a"): 1}), Data(b"x"))
    only_ma = msg.with_changes(message_annotations={})
    assert only_ma.encode() == sections(MessageAnnotations({}), Data(b"x"))


def test_with_changes_keeps_header_when_only_annotations_change() -> None:
    msg, parts = full_message()
    changed = msg.with_changes(message_annotations={})
    assert changed.encode().startswith(
        parts["header"] + parts["da"] + encode(MessageAnnotations({}))
    )


def test_out_of_order_sections_are_refused() -> None:
    with pytest.raises(DecodeError):
        Message.parse(sections(PROPS, HEADER, Data(b"x")))


def test_section_after_footer_is_refused() -> None:
    with pytest.raises(DecodeError):
        Message.parse(sections(Data(b"a"), Footer({}), Data(b"b")))


def test_duplicate_sections_and_mixed_bodies_are_refused() -> None:
    for data in (
        sections(HEADER, HEADER, Data(b"x")),
        sections(Data(b"x"), AmqpValue(1)),
        sections(AmqpValue(1), AmqpValue(2)),
    ):
        with pytest.raises(DecodeError):
            Message.parse(data)
