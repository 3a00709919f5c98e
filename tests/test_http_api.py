"""The console's JSON API, /metrics and the health routes, through the
container's pure HTTP handler (no sockets)."""

from __future__ import annotations

import base64
import json
from typing import Any

from test_container import Broker, consumer, msg, publish, publisher

from broker.codec.messaging import Accepted, Properties
from broker.services.http_api import MUTATION_HEADER, HttpRequest

CHANGE = {MUTATION_HEADER: "1"}


def call(broker: Broker, method: str, target: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    response = broker.container.http(HttpRequest(method, target, dict(headers or {}), raw))
    if response.content_type == "application/json":
        return response.status, json.loads(response.body)
    return response.status, response.body


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def test_overview_and_queue_stats_follow_the_traffic() -> None:
    broker = Broker(queues=("orders",))
    peer = broker.client()
    publisher(peer, 0, "/queues/orders")
    assert publish(peer, 0, msg(b"a"), msg(b"b"), msg(b"c")) == [Accepted()] * 3
    consumer(peer, 1, "/queues/orders", credit=1)
    status, overview = call(broker, "GET", "/api/overview")
    assert status == 200
    assert overview["connections"] == 1 and overview["user"] == "anonymous"
    assert overview["messages_ready"] == 2 and overview["messages_unacked"] == 1
    assert overview["bytes_in"] > 0 and overview["bytes_out"] > 0
    status, queue = call(broker, "GET", "/api/queues/orders")
    assert status == 200
    assert (queue["message_count"], queue["unacked"], queue["published"], queue["delivered"],
            queue["consumer_count"]) == (2, 1, 3, 1, 1)
    status, (conn,) = call(broker, "GET", "/api/connections")
    assert conn["sessions"] == 1 and conn["links"] == 2 and conn["transport"] == "test"


def test_peek_shows_messages_without_taking_them() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b'{"price": 42}', properties=Properties(message_id="m1",
                                                                   subject="quote")),
            msg(b"\xff\x00binary"))
    status, messages = call(broker, "GET", "/api/queues/q/messages?count=5")
    assert status == 200 and len(messages) == 2
    first, second = messages
    assert first["properties"]["message_id"] == "m1" and first["properties"]["subject"] == "quote"
    assert first["body"]["text"] == '{"price": 42}' and first["body"]["json"] == {"price": 42}
    assert "text" not in second["body"] and second["body"]["hex"] == "ff0062696e617279"
    assert broker.queue("q").depth == 2, "peeking takes nothing"


def test_peek_a_stream_from_an_offset() -> None:
    broker = Broker()
    broker.container.admin.declare_queue("s", arguments={"x-queue-type": "stream"}, now=0)
    peer = broker.client()
    publisher(peer, 0, "/queues/s")
    publish(peer, 0, *[msg(str(i).encode()) for i in range(5)])
    status, messages = call(broker, "GET", "/api/queues/s/messages?offset=3&count=10")
    assert status == 200
    assert [(m["offset"], m["body"]["text"]) for m in messages] == [(3, "3"), (4, "4")]


def test_publish_purge_and_delete() -> None:
    broker = Broker(queues=("q",))
    status, answer = call(broker, "POST", "/api/publish",
                          {"address": "/queues/q", "body": "hello", "subject": "s"}, CHANGE)
    assert (status, answer) == (200, {"outcome": "accepted"})
    status, answer = call(broker, "POST", "/api/publish",
                          {"address": "/exchanges/amq.topic/nowhere", "body": "x"}, CHANGE)
    assert answer["outcome"] == "released"
    (peeked,) = call(broker, "GET", "/api/queues/q/messages")[1]
    assert peeked["body"]["text"] == "hello" and peeked["properties"]["to"] == "/queues/q"
    assert call(broker, "DELETE", "/api/queues/q/messages", headers=CHANGE) == \
        (200, {"message_count": 1})
    assert call(broker, "DELETE", "/api/queues/q", headers=CHANGE) == (200, {"message_count": 0})
    assert call(broker, "GET", "/api/queues/q")[0] == 404


def test_changes_need_the_console_header() -> None:
    """A page on another site cannot set a custom header without a preflight."""
    broker = Broker(queues=("q",))
    status, answer = call(broker, "DELETE", "/api/queues/q")
    assert status == 403 and MUTATION_HEADER in answer["error"]
    assert broker.container.registry.get("q") is not None


def test_the_api_obeys_users_and_permissions() -> None:
    broker = Broker(users={"bob": "pw"}, allow_anonymous=False, queues=("public", "private"),
                    permissions={"bob": ("", "^public$", "^public$")})
    status, _ = call(broker, "GET", "/api/overview")
    assert status == 401, "no anonymous access"
    assert call(broker, "GET", "/api/overview", headers=basic("bob", "wrong"))[0] == 401
    assert call(broker, "GET", "/api/queues", headers=basic("bob", "pw"))[0] == 200
    bob = {**basic("bob", "pw"), **CHANGE}
    status, answer = call(broker, "GET", "/api/queues/private/messages", headers=bob)
    assert status == 403 and "read access to queue 'private'" in answer["error"]
    assert call(broker, "DELETE", "/api/queues/public", headers=bob)[0] == 403
    assert call(broker, "POST", "/api/publish", {"address": "/queues/private", "body": "x"},
                bob)[1]["outcome"] == "rejected"
    assert call(broker, "POST", "/api/publish", {"address": "/queues/public", "body": "x"},
                bob)[1]["outcome"] == "accepted"


def test_metrics_in_prometheus_format() -> None:
    broker = Broker(queues=("orders",))
    peer = broker.client()
    publisher(peer, 0, "/queues/orders")
    publish(peer, 0, msg(b"a"), msg(b"b"))
    status, body = call(broker, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert 'rabbitmq_queue_messages_ready{queue="orders",vhost="/"} 2.0' in text
    assert 'rabbitmq_queue_messages_published_total{queue="orders",vhost="/"} 2.0' in text
    assert 'rabbitmq_connections{transport="test"} 1.0' in text
    assert "rabbitmq_connection_incoming_bytes_total" in text
    assert "rabbitmq_alarms_memory_used_watermark 0.0" in text


def test_health() -> None:
    broker = Broker()
    assert call(broker, "GET", "/healthz") == (200, b"ok\n")
    assert call(broker, "GET", "/readyz")[0] == 200
    broker.container.shutdown()
    assert call(broker, "GET", "/readyz")[0] == 503


def test_unknown_paths_are_404() -> None:
    broker = Broker()
    assert call(broker, "GET", "/nope")[0] == 404
    assert call(broker, "GET", "/api/nope")[0] == 404


def test_management_peek_extension() -> None:
    """`GET /queues/Q/messages?count=N` on /management (ours; RabbitMQ has no
    peek): what the CLI's `peek` uses over AMQP."""
    from test_routing import management_pair, request

    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"one"), msg(b"two"))
    peer2 = broker.client("admin")
    management_pair(peer2)
    reply = request(peer2, "/queues/q/messages?count=1", "GET")
    assert reply.properties.subject == "200"
    (described,) = reply.body[0].value
    assert described["body"]["text"] == "one"
    assert broker.queue("q").depth == 2
