"""Inputs a review of the security, browsing, filter and Azure work turned up:
each one must get a clear answer, not a crash or a way around a check."""

from __future__ import annotations

import json
import uuid

from engine.peer import bodies, condition, of, one
from test_cbs import cbs_pair, entity_pair, operate, put_token, sas
from test_container import NOW, Broker, msg, publish, publisher

from broker.codec.messaging import Properties, Rejected, Source, Target
from broker.codec.performatives import Attach, Detach
from broker.codec.types import Described, Symbol
from broker.services.http_api import MUTATION_HEADER, HttpRequest


def test_entity_management_obeys_permissions() -> None:
    broker = Broker(queues=("q1",), permissions={"anonymous": ("", "", "")})
    peer = broker.client()
    cbs_pair(peer)
    out = peer.attach_sender(4, "q1/$management", name=f"m-{uuid.uuid4()}")
    assert condition(one(out, Detach)) == "amqp:unauthorized-access"


def test_entity_management_refuses_odd_field_types_with_400() -> None:
    broker = Broker(queues=("q1",))
    peer = broker.client()
    entity_pair(peer, "q1")
    reply = operate(peer, 4, "com.microsoft:peek-message", {"from-sequence-number": "abc"})
    assert reply.application_properties["statusCode"] == 400


def test_a_list_as_stream_filter_value_does_not_crash_the_publisher() -> None:
    broker = Broker()
    broker.container.admin.declare_queue("s", arguments={"x-queue-type": "stream"}, now=NOW)
    peer = broker.client()
    out = peer.attach_receiver(1, "/queues/s", source=Source(address="/queues/s", filter={
        Symbol("f"): Described(Symbol("rabbitmq:stream-filter"), ["red"])}), target=Target())
    assert one(out, Attach).source is not None
    peer.flow(1, link_credit=10)
    publisher(peer, 0, "/queues/s")
    out = peer.send(0, msg(b"odd", message_annotations={
        Symbol("x-stream-filter-value"): [1]}))
    out += peer.send(0, msg(b"red", message_annotations={
        Symbol("x-stream-filter-value"): "red"}))
    assert bodies(out) == [b"red"]


def test_the_relay_needs_entity_tokens_too() -> None:
    broker = Broker(azure_keys={"root": "k"}, queues=("q2",))
    peer = broker.client()
    cbs_pair(peer)
    assert not of(peer.attach_sender(2, None), Detach)
    (state,) = publish(peer, 2, msg(b"x", properties=Properties(to="/queues/q2")))
    assert isinstance(state, Rejected)
    assert state.error.condition == Symbol("amqp:unauthorized-access")
    put_token(peer, sas("sb://127.0.0.1/q2", "k"), "sb://127.0.0.1/q2")
    assert broker.queue("q2").depth == 0


def test_browsers_obey_their_selector() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"eu", application_properties={"region": "eu"}),
            msg(b"us", application_properties={"region": "us"}))
    out = peer.attach_receiver(1, "/queues/q", source=Source(
        address="/queues/q", distribution_mode=Symbol("copy"), filter={
            Symbol("s"): Described(Symbol("apache.org:selector-filter:string"),
                                   "region = 'eu'")}), target=Target())
    out += peer.flow(1, link_credit=10)
    assert bodies(out) == [b"eu"]


def call(broker: Broker, method: str, target: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, object]:
    raw = b"" if body is None else json.dumps(body).encode()
    response = broker.container.http(HttpRequest(method, target, dict(headers or {}), raw))
    return response.status, json.loads(response.body)


def test_the_api_refuses_numbers_that_cannot_encode() -> None:
    broker = Broker()
    change = {MUTATION_HEADER: "1"}
    status, _ = call(broker, "PUT", "/api/queues/n1", {"arguments": {"x-max-length": 10**30}},
                     change)
    assert status == 400
    status, _ = call(broker, "POST", "/api/publish", {"address": "/queues/x", "body": "b",
                                                      "application_properties": {"a": 10**30}},
                     change)
    assert status == 400


def test_the_api_refuses_foreign_origins() -> None:
    """DNS rebinding gives a foreign page our address but not its Origin."""
    broker = Broker()
    assert call(broker, "GET", "/api/overview", headers={"origin": "http://evil.example"}
                )[0] == 403
    assert call(broker, "GET", "/api/overview", headers={"origin": "http://localhost:3000"}
                )[0] == 200


def test_a_refused_publish_keeps_the_last_value() -> None:
    from broker.nodes.base import Entry
    from broker.nodes.queue import Queue, QueueFull

    queue = Queue("p", last_value_key="k", max_length_bytes=300, overflow="reject-publish")
    small = msg(b"x" * 10, application_properties={"k": "x"})
    queue.publish(Entry(small), 0.0)
    big = msg(b"y" * 400, application_properties={"k": "x"})
    try:
        queue.publish(Entry(big), 0.0)
    except QueueFull:
        pass
    assert queue.depth == 1 and queue.ready[0].payload is small.payload

