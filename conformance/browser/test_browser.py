"""Conformance: rhea's browser build in headless Chromium, over the browser's
own WebSocket, against the suite's broker.

Each case runs its AMQP side inside the page (`page/harness.js`) and asserts
here on the JSON it returns.  Cross-transport cases pair the browser with
python-qpid-proton over TCP.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from proton import Message, symbol
from proton.utils import BlockingConnection

pytestmark = pytest.mark.parametrize("client", ["rhea-browser"])

STREAM = "/queues/conf-stream"
OFFSET_SPEC = "rabbitmq:stream-offset-spec"


def fresh_queue(case: str) -> str:
    return f"/queues/rhea-browser-{case}-{uuid.uuid4().hex[:8]}"


# A message using every property section rhea can set, with typed values.
PROPERTIES_MESSAGE: dict[str, Any] = {
    "durable": True,
    "priority": 7,
    "ttl": 600000,
    "message_id": "msg-1",
    "correlation_id": "corr-1",
    "subject": "greeting",
    "reply_to": "/queues/replies",
    "content_type": "text/plain",
    "content_encoding": "utf-8",
    "creation_time": {"$timestamp": 1700000000123},
    "absolute_expiry_time": {"$timestamp": 4102444800000},
    "group_id": "group-a",
    "group_sequence": 3,
    "reply_to_group_id": "group-b",
    "application_properties": {
        "text": "héllo ✓",
        "int": 42,
        "negative": -7,
        "double": 1.5,
        "flag": True,
        "long": {"$long": 2**40},
        "when": {"$timestamp": 1700000000000},
        "bytes": {"$binary": "00ff10"},
        "nothing": None,
    },
    "message_annotations": {"x-opt-origin": "browser", "x-opt-count": 3},
    "body": "hello from the browser",
}

# What comes back: the same, with the typed wrappers decoded to plain values.
PROPERTIES_EXPECTED = json.loads(json.dumps(PROPERTIES_MESSAGE))
PROPERTIES_EXPECTED["application_properties"]["long"] = 2**40


def assert_message(received: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every field sent comes back equal; annotations may gain broker ones."""
    for field, value in expected.items():
        if field == "message_annotations":
            got = received.get(field) or {}
            assert {k: got.get(k) for k in value} == value, field
        else:
            assert received.get(field) == value, field


# -- connecting ------------------------------------------------------------------


def test_ws_subprotocol(client: str, broker: Any, harness: Any) -> None:
    """The browser's own WebSocket gets `amqp` when it offers rhea's list, and the
    pre-standard tokens when it offers only those."""
    probe = """new Promise((resolve) => {
        const ws = new WebSocket(%s, %s);
        ws.onopen = () => { resolve(ws.protocol); ws.close(); };
        ws.onerror = () => resolve('error');
    })"""
    offers = {
        '["binary", "AMQPWSB10", "amqp"]': "amqp",
        '["AMQPWSB10"]': "AMQPWSB10",
        '["binary"]': "binary",
        "[]": "",
        '["mqtt"]': "error",
    }
    got = {offer: harness.eval(probe % (json.dumps(broker.ws_url), offer)) for offer in offers}
    assert got == offers


def test_connect_anonymous(client: str, broker: Any, harness: Any) -> None:
    result = harness.call("harness.connect", {"url": broker.ws_url})
    assert result["ok"], result
    assert result["remote"]["container_id"]
    assert result["remote_close_error"] is None
    assert result["errors"] == []


def test_connect_plain(client: str, broker: Any, harness: Any) -> None:
    result = harness.call(
        "harness.connect", {"url": broker.ws_url, "username": "alice", "password": "secret"}
    )
    assert result["ok"], result
    assert result["remote_close_error"] is None


def test_connect_bad_password(client: str, broker: Any, harness: Any) -> None:
    result = harness.call(
        "harness.connect", {"url": broker.ws_url, "username": "alice", "password": "wrong"}
    )
    assert not result["ok"], result
    assert result["error"]["condition"] == "amqp:unauthorized-access", result


# -- messages ----------------------------------------------------------------------


def test_roundtrip(client: str, broker: Any, harness: Any) -> None:
    address = fresh_queue("props")
    message = dict(PROPERTIES_MESSAGE, to=address)
    result = harness.call(
        "harness.roundtrip", {"url": broker.ws_url, "address": address, "messages": [message]}
    )
    assert result["outcomes"] == ["accepted"]
    assert_message(result["received"][0], dict(PROPERTIES_EXPECTED, to=address))


BODIES: list[tuple[Any, Any]] = [
    ("text", "text"),
    ("x" * 300_000, "x" * 300_000),  # larger than one WebSocket read
    ({"$data": {"$binary": "000102ff"}}, {"$data": {"$binary": "000102ff"}}),
    ({"$sequence": [1, "two", 3.5]}, {"$sequence": [1, "two", 3.5]}),
    ({"$binary": "deadbeef"}, {"$binary": "deadbeef"}),
    ({"$symbol": "sym"}, "sym"),
    (
        {"a": 1, "nested": {"b": [1, "x", None, False]}},
        {"a": 1, "nested": {"b": [1, "x", None, False]}},
    ),
    ([1, "two", 3.5, True, None], [1, "two", 3.5, True, None]),
    (12345, 12345),
    (-2.25, -2.25),
    (None, None),
]


def test_body_kinds(client: str, broker: Any, harness: Any) -> None:
    """amqp-value of many types, a data section and an amqp-sequence, intact."""
    address = fresh_queue("bodies")
    messages = [
        {"body": sent, "application_properties": {"i": i}} for i, (sent, _) in enumerate(BODIES)
    ]
    result = harness.call(
        "harness.roundtrip", {"url": broker.ws_url, "address": address, "messages": messages}
    )
    assert result["outcomes"] == ["accepted"] * len(BODIES)
    assert [m["application_properties"]["i"] for m in result["received"]] == list(
        range(len(BODIES))
    )
    for (_, expected), got in zip(BODIES, result["received"], strict=True):
        assert got.get("body") == expected


def test_many_in_order(client: str, broker: Any, harness: Any) -> None:
    result = harness.call(
        "harness.many", {"url": broker.ws_url, "address": fresh_queue("thousand"), "count": 1000}
    )
    assert result["outcomes"] == {"accepted": 1000}
    assert result["bodies"] == list(range(1000))


# -- streams -----------------------------------------------------------------------


def _described_values(filter_echo: Any) -> list[Any]:
    """The (descriptor, value) pairs of an attach reply's filter map."""
    if not isinstance(filter_echo, dict):
        return []
    pairs = []
    for value in filter_echo.values():
        if isinstance(value, dict) and "$described" in value:
            pairs.append(tuple(value["$described"]))
    return pairs


def _assert_stream_annotations(delivery: dict[str, Any]) -> None:
    ann = delivery["message_annotations"]
    assert ann.get("x-stream-offset") == delivery["offset"]
    assert ann.get("x-exchange") == ""
    assert ann.get("x-routing-key") == "conf-stream"


def test_stream_first(client: str, broker: Any, harness: Any) -> None:
    """Reading from `first` starts at offset 0 and walks the log in order, each
    delivery carrying its `x-stream-offset`; the attach reply echoes the filter."""
    tag = uuid.uuid4().hex
    result = harness.call(
        "harness.streamRead",
        {"url": broker.ws_url, "address": STREAM, "tag": tag, "count": 5, "offset": "first"},
    )
    assert result["outcomes"] == ["accepted"] * 5
    assert (OFFSET_SPEC, "first") in _described_values(result["filter"]), result["filter"]
    assert result["first"]["offset"] == 0
    assert result["contiguous"]
    assert result["last_offset"] == result["count"] - 1
    ours = result["tagged"]
    assert [d["body"] for d in ours] == [f"{tag}-{i}" for i in range(5)]
    assert [d["offset"] for d in ours] == list(range(ours[0]["offset"], ours[0]["offset"] + 5))
    for d in ours:
        _assert_stream_annotations(d)


def test_stream_next(client: str, broker: Any, harness: Any) -> None:
    """`next` sees only what is appended after the attach."""
    tag = uuid.uuid4().hex
    result = harness.call(
        "harness.streamLive",
        {"url": broker.ws_url, "address": STREAM, "tag": tag, "count": 3, "offset": "next"},
    )
    assert (OFFSET_SPEC, "next") in _described_values(result["filter"]), result["filter"]
    assert [d["tag"] for d in result["deliveries"]] == [tag] * 3
    offsets = [d["offset"] for d in result["deliveries"]]
    assert offsets == list(range(offsets[0], offsets[0] + 3))


def test_stream_offset(client: str, broker: Any, harness: Any) -> None:
    """A numeric offset starts exactly there."""
    tag = uuid.uuid4().hex
    first = harness.call(
        "harness.streamRead",
        {"url": broker.ws_url, "address": STREAM, "tag": tag, "count": 3, "offset": "first"},
    )
    start = first["tagged"][1]["offset"]
    got = harness.call(
        "harness.consume",
        {"url": broker.ws_url, "address": STREAM, "count": 2, "offset": {"$ulong": start}},
    )
    assert [m["message_annotations"]["x-stream-offset"] for m in got] == [start, start + 1]
    assert [m["body"] for m in got] == [f"{tag}-1", f"{tag}-2"]


def test_stream_timestamp(client: str, broker: Any, harness: Any) -> None:
    """A timestamp starts at the first message received at or after it."""
    time.sleep(0.01)
    since = int(time.time() * 1000)
    time.sleep(0.01)
    tag = uuid.uuid4().hex
    harness.call(
        "harness.publish",
        {
            "url": broker.ws_url,
            "address": STREAM,
            "messages": [
                {"body": f"{tag}-{i}", "application_properties": {"tag": tag}} for i in range(2)
            ],
        },
    )
    got = harness.call(
        "harness.consume",
        {"url": broker.ws_url, "address": STREAM, "count": 2, "offset": {"$timestamp": since}},
    )
    assert [m["body"] for m in got] == [f"{tag}-0", f"{tag}-1"]


# -- across transports -------------------------------------------------------------


def _proton(broker: Any) -> BlockingConnection:
    return BlockingConnection(broker.amqp_url, timeout=20, allowed_mechs="ANONYMOUS")


def test_cross_transport_ws_to_tcp(client: str, broker: Any, harness: Any) -> None:
    """The browser publishes over WebSocket; python-qpid-proton consumes over TCP."""
    address = fresh_queue("ws-to-tcp")
    messages = [
        dict(PROPERTIES_MESSAGE, body=f"browser-{i}", message_id=f"id-{i}") for i in range(3)
    ]
    outcomes = harness.call(
        "harness.publish", {"url": broker.ws_url, "address": address, "messages": messages}
    )
    assert outcomes == ["accepted"] * 3
    conn = _proton(broker)
    try:
        receiver = conn.create_receiver(address, credit=10)
        got = []
        for _ in range(3):
            got.append(receiver.receive(timeout=20))
            receiver.accept()
    finally:
        conn.close()
    assert [m.body for m in got] == ["browser-0", "browser-1", "browser-2"]
    m = got[0]
    assert (m.id, m.correlation_id, m.subject) == ("id-0", "corr-1", "greeting")
    assert (m.reply_to, m.content_type, m.group_id, m.group_sequence) == (
        "/queues/replies",
        symbol("text/plain"),
        "group-a",
        3,
    )
    assert m.creation_time == pytest.approx(1700000000.123)
    assert (m.durable, m.priority, m.ttl) == (True, 7, 600.0)
    props = m.properties
    assert (props["text"], props["int"], props["negative"], props["double"], props["flag"]) == (
        "héllo ✓",
        42,
        -7,
        1.5,
        True,
    )
    assert props["long"] == 2**40 and props["bytes"] == b"\x00\xff\x10"
    assert m.annotations[symbol("x-opt-origin")] == "browser"


def test_cross_transport_tcp_to_ws(client: str, broker: Any, harness: Any) -> None:
    """python-qpid-proton publishes over TCP; the browser consumes over WebSocket."""
    address = fresh_queue("tcp-to-ws")
    conn = _proton(broker)
    try:
        sender = conn.create_sender(address)
        for i in range(3):
            sender.send(
                Message(
                    id=f"p-{i}",
                    subject="from-proton",
                    body={"n": i, "text": "ünïcode"},
                    properties={"i": i, "origin": "proton"},
                    creation_time=1700000000.5,
                    annotations={symbol("x-opt-tcp"): True},
                    durable=True,
                )
            )
    finally:
        conn.close()
    got = harness.call("harness.consume", {"url": broker.ws_url, "address": address, "count": 3})
    assert [m["body"] for m in got] == [{"n": i, "text": "ünïcode"} for i in range(3)]
    assert [m["message_id"] for m in got] == ["p-0", "p-1", "p-2"]
    assert got[0]["subject"] == "from-proton"
    assert got[0]["application_properties"] == {"i": 0, "origin": "proton"}
    assert got[0]["creation_time"] == {"$timestamp": 1700000000500}
    assert got[0]["message_annotations"]["x-opt-tcp"] is True
    assert got[0]["durable"] is True


def test_redelivery_tab_closed(client: str, broker: Any, harness: Any) -> None:
    """Closing a tab that holds unsettled deliveries drops its WebSocket without an
    AMQP close; the messages go back to the queue for the next consumer."""
    address = fresh_queue("tab-closed")
    conn = _proton(broker)
    try:
        sender = conn.create_sender(address)
        for i in range(3):
            sender.send(Message(body=f"m-{i}"))
    finally:
        conn.close()
    held = harness.call(
        "harness.holdUnsettled", {"url": broker.ws_url, "address": address, "count": 3}
    )
    assert [m["body"] for m in held] == ["m-0", "m-1", "m-2"]
    harness.close()  # the tab goes away with its connection

    conn = _proton(broker)
    try:
        receiver = conn.create_receiver(address, credit=10)
        again = []
        for _ in range(3):
            again.append(receiver.receive(timeout=20))
            receiver.accept()
    finally:
        conn.close()
    assert [m.body for m in again] == ["m-0", "m-1", "m-2"]
    assert all(m.delivery_count >= 1 for m in again)
