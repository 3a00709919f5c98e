"""/management requests as bytes in, bytes out (no engine, no sockets)."""

from __future__ import annotations

import pytest

from broker.admin import Admin
from broker.codec.encode import encode_into
from broker.codec.messaging import AmqpValue, Header, Message, Properties
from broker.codec.types import AmqpType, Array, UInt, ULong
from broker.errors import DecodeError
from broker.nodes.registry import Registry
from broker.services.management import Management, parse_request


def request(to: str, subject: str, body: object = None, *, body_first: bool = False) -> bytes:
    """A request as RabbitMQ's Python client sends it: GET/DELETE with the body
    section before the properties."""
    out = bytearray()
    props = Properties(message_id="id-1", to=to, subject=subject, reply_to="$me")
    if body_first:
        encode_into(out, AmqpValue(body))
        encode_into(out, props)
    else:
        encode_into(out, Header())
        encode_into(out, props)
        encode_into(out, AmqpValue(body))
    return bytes(out)


def call(m: Management, to: str, subject: str, body: object = None,
         **kw: object) -> tuple[str, object]:
    rid, payload = m.handle(request(to, subject, body, **kw), owner=None, now=0.0)  # type: ignore[arg-type]
    reply = Message.parse(payload)
    assert rid == "id-1" and reply.properties.correlation_id == "id-1"
    assert reply.application_properties == {"http:response": "1.1"}
    assert reply.header is None and reply.properties.message_id is None
    (section,) = reply.body
    return reply.properties.subject, section.value  # type: ignore[union-attr,attr-defined]


@pytest.fixture
def m() -> Management:
    return Management(Admin(Registry(), node_name="n@h"))


def test_queue_map_has_rabbitmqs_amqp_types(m: Management) -> None:
    status, body = call(m, "/queues/wq1", "PUT", {"auto_delete": False, "durable": True,
                                                  "exclusive": False,
                                                  "arguments": {"x-queue-type": "classic"}})
    assert status == "201"
    assert body["replicas"] == Array(AmqpType.STRING, ["n@h"])
    assert type(body["message_count"]) is ULong and type(body["consumer_count"]) is UInt
    assert call(m, "/queues/wq1", "GET", body_first=True)[0] == "200"


def test_out_of_order_sections_are_read(m: Management) -> None:
    assert parse_request(request("/queues/q", "DELETE", body_first=True)).method == "DELETE"
    with pytest.raises(DecodeError):
        parse_request(b"\x00\x53\x77\x40")  # a body but no properties


def test_errors_are_strings(m: Management) -> None:
    assert call(m, "/queues/missing", "GET") == (
        "404", "queue 'missing' in vhost '/' not found")
    status, body = call(m, "/queues/q", "PUT", {"durable": True, "colour": "red"})
    assert status == "400" and "colour" in body
    status, body = call(m, "/nowhere", "GET")
    assert status == "404" and isinstance(body, str)


def test_purge_and_delete_answer_counts(m: Management) -> None:
    call(m, "/queues/q", "PUT", {})
    assert call(m, "/queues/q/messages", "DELETE") == ("200", {"message_count": ULong(0)})
    assert call(m, "/queues/q", "DELETE") == ("200", {"message_count": ULong(0)})
    assert call(m, "/queues/q", "DELETE") == ("200", {"message_count": ULong(0)})


def test_exchange_and_binding_round_trip(m: Management) -> None:
    assert call(m, "/exchanges/x", "PUT", {"type": "topic", "durable": True,
                                           "internal": False, "arguments": {}})[0] == "204"
    call(m, "/queues/q", "PUT", {})
    assert call(m, "/bindings", "POST", {"source": "x", "destination_queue": "q",
                                          "binding_key": "a.#", "arguments": {}})[0] == "204"
    status, listed = call(m, "/bindings?src=x&dstq=q&key=a.%23", "GET")
    assert status == "200" and [b["binding_key"] for b in listed] == ["a.#"]
    assert call(m, "/bindings/src=x;dstq=q;key=a.%23;args=", "DELETE")[0] == "204"
    assert call(m, "/bindings?src=x", "GET") == ("200", [])
    assert call(m, "/bindings/src=x;dstq=q;key=a.%23;args=", "DELETE")[0] == "204"
    assert call(m, "/bindings/nonsense", "DELETE")[0] == "400"
    assert call(m, "/exchanges/x", "DELETE")[0] == "204"
    assert call(m, "/exchanges/amq.topic", "DELETE")[0] == "403"


def test_listings(m: Management) -> None:
    call(m, "/queues/a", "PUT", {})
    status, queues = call(m, "/queues", "GET")
    assert status == "200" and [q["name"] for q in queues] == ["a"]
    assert "amq.topic" in [x["name"] for x in call(m, "/exchanges", "GET")[1]]
    assert call(m, "/connections", "GET") == ("200", [])


def test_token_is_handed_on() -> None:
    tokens: list[bytes] = []
    m = Management(Admin(Registry()), on_token=lambda owner, t: tokens.append(t))
    assert call(m, "/auth/tokens", "PUT", b"jwt")[0] == "204"
    assert tokens == [b"jwt"]
    assert call(m, "/auth/tokens", "PUT", "not binary")[0] == "400"
