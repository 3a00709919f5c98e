"""amqp:properties-filter and amqp:application-properties-filter."""

from __future__ import annotations

import uuid

import pytest

from broker.codec.messaging import Message, Properties
from broker.codec.types import AmqpType, Array, Described, Float, Symbol, Timestamp, UInt, ULong
from broker.filters import (
    FilterError,
    MessageFields,
    compile_application_properties_filter,
    compile_properties_filter,
)
from broker.filters.properties import MAX_ENTRIES, PROPERTY_FIELDS

NOW = 1_700_000_000.0
ID = uuid.UUID(int=42)
PROPS = Properties(
    message_id="order-17", user_id=b"John", to="/queues/q1", subject="Order.created",
    reply_to="/queues/replies", correlation_id=ID, content_type=Symbol("application/json"),
    content_encoding=Symbol("gzip"), absolute_expiry_time=Timestamp(2_000),
    creation_time=Timestamp(1_000), group_id="&group", group_sequence=UInt(7),
    reply_to_group_id="g2")


def fields(properties: Properties | None = PROPS,
           app: dict[object, object] | None = None) -> MessageFields:
    return MessageFields(Message.create(b"", properties=properties, application_properties=app))


def props(mapping: dict[object, object], f: MessageFields | None = None) -> bool:
    return compile_properties_filter(mapping).matches(f or fields(), NOW)


def app(mapping: dict[object, object], values: dict[object, object]) -> bool:
    return compile_application_properties_filter(mapping).matches(fields(None, values), NOW)


# --- properties-filter --------------------------------------------------------------


@pytest.mark.parametrize("mapping", [
    {Symbol("subject"): "Order.created"},
    {Symbol("subject"): "&p:Order"},
    {Symbol("subject"): "&s:created"},
    {Symbol("subject"): "&p:"},
    {Symbol("subject"): "&s:"},
    {Symbol("message-id"): "order-17"},
    {Symbol("message-id"): "&p:order-"},
    {Symbol("user-id"): b"John"},
    {Symbol("to"): "/queues/q1", Symbol("reply-to"): "&s:/replies"},
    {Symbol("correlation-id"): ID},
    {Symbol("content-type"): Symbol("application/json")},
    {Symbol("content-type"): "application/json"},  # a string matches a symbol field
    {Symbol("content-encoding"): Symbol("gzip")},
    {Symbol("absolute-expiry-time"): Timestamp(2_000)},
    {Symbol("creation-time"): 1_000},
    {Symbol("group-id"): "&&group"},  # '&&' is one literal '&'
    {Symbol("group-sequence"): UInt(7)},
    {Symbol("group-sequence"): 7},
    {Symbol("group-sequence"): 7.0},  # numbers across types
    {Symbol("group-sequence"): ULong(7), Symbol("reply-to-group-id"): "g2"},
    {Symbol("reply-to-group-id"): None},  # null matches anything
    {"subject": "Order.created"},  # a plain string key works too
])
def test_properties_filter_matches(mapping: dict[object, object]) -> None:
    assert props(mapping) is True


@pytest.mark.parametrize("mapping", [
    {Symbol("subject"): "Order.Created"},  # case-sensitive
    {Symbol("subject"): "&p:order"},
    {Symbol("subject"): "&s:Order"},
    {Symbol("subject"): "&p:Order.created.x"},
    {Symbol("message-id"): "order-18"},
    {Symbol("user-id"): "John"},  # a string is not a binary
    {Symbol("user-id"): b"john"},
    {Symbol("correlation-id"): uuid.UUID(int=43)},
    {Symbol("correlation-id"): "&p:"},  # a uuid is not a string
    {Symbol("content-type"): Symbol("text/plain")},
    {Symbol("group-id"): "&group"[1:]},
    {Symbol("group-sequence"): 8},
    {Symbol("group-sequence"): True},  # a boolean is not a number
    {Symbol("group-sequence"): "7"},
    {Symbol("subject"): "Order.created", Symbol("to"): "/queues/q2"},  # entries are ANDed
])
def test_properties_filter_does_not_match(mapping: dict[object, object]) -> None:
    assert props(mapping) is False


def test_absent_properties() -> None:
    none = fields(None)
    assert props({Symbol("subject"): "x"}, none) is False
    assert props({Symbol("subject"): "&p:"}, none) is False
    assert props({Symbol("subject"): None}, none) is True
    assert props({Symbol("subject"): "x"}, fields(Properties())) is False


@pytest.mark.parametrize("mapping, words", [
    ({Symbol("subjects"): "x"}, "unknown field"),
    ({Symbol("message_id"): "x"}, "unknown field"),  # the spec spells it message-id
    ({1: "x"}, "unknown field"),
    ({Symbol("subject"): "&x:Order"}, "starts with '&'"),
    ({Symbol("subject"): "&"}, "starts with '&'"),
    ({Symbol("subject"): ["a"]}, "simple type"),
    ({Symbol("subject"): {"a": 1}}, "simple type"),
    ({Symbol("subject"): Described(Symbol("x"), 1)}, "simple type"),
    ({Symbol("subject"): Array(AmqpType.INT, [1])}, "simple type"),
    ({}, "empty"),
])
def test_invalid_properties_filters(mapping: dict[object, object], words: str) -> None:
    with pytest.raises(FilterError, match=words):
        compile_properties_filter(mapping)


def test_entry_limit() -> None:
    every = {Symbol(name): None for name in PROPERTY_FIELDS}
    assert len(every) == 13 and props(every) is True
    with pytest.raises(FilterError, match="at most 16"):
        compile_properties_filter({Symbol(f"k{i}"): i for i in range(MAX_ENTRIES + 1)})
    ok = {f"k{i}": i for i in range(MAX_ENTRIES)}
    assert app(ok, ok) is True
    with pytest.raises(FilterError, match="at most 16"):
        compile_application_properties_filter({f"k{i}": i for i in range(MAX_ENTRIES + 1)})
    with pytest.raises(FilterError, match="needs a map"):
        compile_properties_filter("subject")  # type: ignore[arg-type]


# --- application-properties-filter ---------------------------------------------------


def test_application_properties_filter() -> None:
    values: dict[object, object] = {"region": "emea", "n": 5, "f": Float(2.5), "ok": True,
                                    "tag": Symbol("a&b"), "amp": "&x", "none": None,
                                    "bin": b"\x01"}
    assert app({"region": "emea"}, values) is True
    assert app({"region": "&p:em"}, values) is True
    assert app({"region": "&s:ea"}, values) is True
    assert app({"region": "&s:EA"}, values) is False
    assert app({"region": "emea", "n": 5}, values) is True
    assert app({"region": "emea", "n": 6}, values) is False
    assert app({"n": 5.0, "f": 2.5}, values) is True
    assert app({"n": "5"}, values) is False
    assert app({"ok": True}, values) is True
    assert app({"ok": 1}, values) is False
    assert app({"n": True}, values) is False
    assert app({"tag": "a&b"}, values) is True
    assert app({"tag": "&p:a&"}, values) is True
    assert app({"amp": "&&x"}, values) is True
    assert app({"amp": "&x"[1:]}, values) is False
    assert app({"bin": b"\x01"}, values) is True
    assert app({"bin": "&p:"}, values) is False
    assert app({"none": None}, values) is True  # present, whatever its value
    assert app({"absent": None}, values) is False  # but it must be present
    assert app({"absent": "x"}, values) is False
    assert app({"region": Symbol("emea")}, values) is True
    assert app({Symbol("region"): "emea"}, values) is True  # a symbol key names the same
    assert app({"region": "emea"}, {}) is False
    assert compile_application_properties_filter({"a": 1}).matches(fields(None, None), NOW) \
        is False


@pytest.mark.parametrize("mapping, words", [
    ({1: "x"}, "keys must be strings"),
    ({"a": "&q:x"}, "starts with '&'"),
    ({"a": [1]}, "simple type"),
    ({}, "empty"),
])
def test_invalid_application_properties_filters(mapping: dict[object, object],
                                                words: str) -> None:
    with pytest.raises(FilterError, match=words):
        compile_application_properties_filter(mapping)


# -- Azure Service Bus correlation filters (subscription rules) ---------------------------


def correlation(mapping: dict[object, object], f: MessageFields | None = None) -> bool:
    from broker.filters.properties import CorrelationFilter

    return CorrelationFilter(mapping).matches(f or fields(), NOW)


def test_correlation_filter_matches_named_fields_exactly() -> None:
    assert correlation({"correlation-id": ID, "label": "Order.created"})
    assert correlation({"session-id": "&group"}), "no &-modifiers: literal equality"
    assert not correlation({"label": "Order."}), "exact, never a prefix"
    assert correlation({"to": None, "message-id": "order-17"}), "null fields are left out"
    assert not correlation({"message-id": "order-17"}, fields(None))


def test_correlation_filter_properties_are_application_properties() -> None:
    assert correlation({"properties": {"region": "eu"}}, fields(None, {"region": "eu"}))
    assert not correlation({"properties": {"region": "eu"}}, fields(None, {"region": "us"}))
    assert not correlation({"properties": {"region": "eu"}}, fields(None, {}))


@pytest.mark.parametrize("mapping", [{}, {"to": None}, {"sender": "x"},
                                     {"properties": [1]}, {"label": ["a"]}])
def test_correlation_filter_refuses_what_it_cannot_match(mapping: dict[object, object]) -> None:
    with pytest.raises(FilterError):
        correlation(mapping)
