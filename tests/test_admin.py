"""The administrative API: declarations, RabbitMQ's argument rules and wording,
bindings, and declarations from the config."""

from __future__ import annotations

import pytest

from broker.admin import Admin, AdminError, apply_config, binding_args_hash
from broker.config import build_config, normalize, parse_queue_spec
from broker.nodes.queue import Queue
from broker.nodes.registry import Registry
from broker.nodes.stream import Stream


def admin() -> Admin:
    return Admin(Registry(), node_name="node@test")


def test_declare_reports_rabbitmqs_queue_map() -> None:
    a = admin()
    info, created = a.declare_queue("q", arguments={"x-queue-type": "classic"})
    assert created
    assert list(info) == ["leader", "replicas", "message_count", "consumer_count", "name",
                          "vhost", "durable", "auto_delete", "exclusive", "type", "arguments"]
    assert info["leader"] == "node@test" and info["replicas"] == ["node@test"]
    again, created = a.declare_queue("q", arguments={"x-queue-type": "classic"})
    assert not created and again == info


def test_quorum_is_served_as_classic_and_reported_as_quorum() -> None:
    a = admin()
    info, _ = a.declare_queue("qq", arguments={"x-queue-type": "quorum"})
    assert info["type"] == "quorum"
    assert isinstance(a.registry.get("qq"), Queue)


def test_stream_type_makes_a_stream_with_retention() -> None:
    a = admin()
    a.declare_queue("s", arguments={"x-queue-type": "stream", "x-max-age": "7D",
                                    "x-max-length-bytes": 1000})
    node = a.registry.get("s")
    assert isinstance(node, Stream)
    assert (node.max_age, node.max_length_bytes) == (7 * 86400, 1000)
    with pytest.raises(AdminError) as info:
        a.purge_queue("s")
    assert info.value.status == 400


def test_inequivalent_redeclare_is_409_in_rabbitmqs_words() -> None:
    a = admin()
    a.declare_queue("wq2", arguments={"x-queue-type": "classic"})
    with pytest.raises(AdminError) as info:
        a.declare_queue("wq2", arguments={"x-queue-type": "quorum"})
    assert info.value.status == 409
    assert info.value.message == ("inequivalent arg 'x-queue-type' for queue 'wq2' in vhost "
                                  "'/': received 'quorum' but current is 'classic'")
    with pytest.raises(AdminError) as info:
        a.declare_queue("wq2", arguments={"x-max-length": 5})
    assert info.value.status == 409 and "'x-max-length'" in info.value.message
    with pytest.raises(AdminError) as info:
        a.declare_queue("wq2", durable=False)
    assert "'durable'" in info.value.message


@pytest.mark.parametrize(("argument", "value"), [
    ("x-max-length", -1), ("x-max-length", "10"), ("x-max-length-bytes", True),
    ("x-overflow", "drop-tail"), ("x-message-ttl", 1.5), ("x-expires", 0),
    ("x-dead-letter-exchange", 3), ("x-single-active-consumer", "yes"),
    ("x-max-priority", 256), ("x-delivery-limit", -2), ("x-queue-type", "lazy"),
])
def test_bad_arguments_are_400_naming_the_argument(argument: str, value: object) -> None:
    with pytest.raises(AdminError) as info:
        admin().declare_queue("q", arguments={argument: value})
    assert info.value.status == 400
    assert f"'{argument}'" in info.value.message


def test_unknown_x_arguments_are_kept_and_ignored() -> None:
    info, _ = admin().declare_queue("q", arguments={"x-initial-group-size": 3})
    assert info["arguments"]["x-initial-group-size"] == 3


def test_reserved_names() -> None:
    a = admin()
    for call in (lambda: a.declare_queue("amq.mine"),
                 lambda: a.declare_exchange("amq.mine"),
                 lambda: a.delete_exchange("amq.topic"),
                 lambda: a.bind("", "q")):
        with pytest.raises(AdminError) as info:
            call()
        assert info.value.status == 403


def test_delete_is_idempotent_and_counts_messages() -> None:
    a = admin()
    assert a.delete_queue("none") == 0
    a.declare_queue("q")
    assert a.delete_queue("q") == 0
    assert a.registry.get("q") is None


def test_exchange_redeclare_and_types() -> None:
    a = admin()
    assert a.declare_exchange("x", type="topic")
    assert not a.declare_exchange("x", type="topic")
    with pytest.raises(AdminError) as info:
        a.declare_exchange("x", type="fanout")
    assert info.value.status == 409
    with pytest.raises(AdminError) as info:
        a.declare_exchange("y", type="x-consistent-hash")
    assert info.value.status == 400
    names = [x["name"] for x in a.list_exchanges()]
    assert names[:6] == ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic"]


def test_bindings_listed_and_deleted_by_location() -> None:
    a = admin()
    a.declare_queue("q")
    a.bind("amq.topic", "q", key="a.#")
    a.bind("amq.topic", "q", key="a.#", arguments={"k": "v"})
    found = a.list_bindings(source="amq.topic", destination="q")
    assert [b["binding_key"] for b in found] == ["a.#", "a.#"]
    assert found[0]["location"] == "/bindings/src=amq.topic;dstq=q;key=a.%23;args="
    a.unbind("amq.topic", "q", key="a.#", args_hash=binding_args_hash({"k": "v"}))
    assert [b["arguments"] for b in a.list_bindings()] == [{}]
    with pytest.raises(AdminError) as info:
        a.bind("amq.topic", "missing")
    assert info.value.status == 400  # RabbitMQ: a missing end of a binding is a 400
    with pytest.raises(AdminError) as info:
        a.bind("no-such", "q")
    assert info.value.status == 400  # RabbitMQ: a missing end of a binding is a 400


def test_queue_spec_flag() -> None:
    assert parse_queue_spec("q") == ("q", {})
    assert parse_queue_spec("q:x-max-length=10,x-overflow=drop-head,x-single-active-consumer="
                            "true") == ("q", {"x-max-length": 10, "x-overflow": "drop-head",
                                              "x-single-active-consumer": True})


def test_config_declares_queues_exchanges_and_bindings() -> None:
    layer = normalize({
        "queues": {"orders": {"x-max-length": 2}, "plain": {}},
        "exchanges": {"events": {"type": "topic",
                                 "bindings": [{"queue": "orders", "key": "orders.*"}]}},
    })
    config = build_config(layer, normalize({"queues": ["cli:x-queue-type=quorum"]}))
    a = admin()
    apply_config(a, config, now=0.0)
    orders = a.registry.get("orders")
    assert isinstance(orders, Queue) and orders.max_length == 2
    assert a.queue_info("cli")["type"] == "quorum"
    assert a.list_bindings(source="events")[0]["destination_queue"] == "orders"


def test_bad_config_binding_is_an_admin_error() -> None:
    config = build_config(normalize({"exchanges": {"e": {"bindings": [{"queue": "nope"}]}}}))
    with pytest.raises(AdminError):
        apply_config(admin(), config, now=0.0)


def test_quorum_queues_have_rabbitmqs_default_delivery_limit() -> None:
    a = admin()
    a.declare_queue("qq", arguments={"x-queue-type": "quorum"})
    a.declare_queue("qq5", arguments={"x-queue-type": "quorum", "x-delivery-limit": 5})
    a.declare_queue("cq")
    limits = [a.registry.get(n).delivery_limit for n in ("qq", "qq5", "cq")]  # type: ignore[union-attr]
    assert limits == [20, 5, None]


def test_review_regressions_in_bindings_and_exclusivity() -> None:
    a = admin()
    a.declare_queue("q")
    a.declare_exchange("h", type="headers")
    with pytest.raises(AdminError) as info:
        a.bind("h", "q", arguments={"x-match": "bogus"})
    assert info.value.status == 400
    with pytest.raises(AdminError) as info:
        a.bind("amq.direct", "", destination_kind="exchange")
    assert info.value.status == 403
    with pytest.raises(AdminError) as info:
        a.unbind("", "q")
    assert info.value.status == 403
    with pytest.raises(AdminError) as info:
        a.declare_queue("mine", exclusive=True)
    assert info.value.status == 400
    owner = object()
    a.declare_queue("mine", exclusive=True, owner=owner)
    with pytest.raises(AdminError) as info:
        a.purge_queue("mine", owner=object())
    assert info.value.status == 409
    assert a.purge_queue("mine", owner=owner) == 0


def test_queue_info_counts_live_messages_only_when_given_the_time() -> None:
    """A message whose TTL ran out is not counted by GET /queues/NAME, whenever
    the housekeeping tick last came (RabbitMQ's count; the tick is a second)."""
    from broker.codec.messaging import Message
    from broker.nodes.base import Entry

    a = admin()
    a.declare_queue("q", arguments={"x-queue-type": "classic"})
    queue = a.registry.nodes["q"]
    queue.publish(Entry(Message.create(b"expires"), 100.3), 100.0)  # type: ignore[union-attr, arg-type]
    queue.publish(Entry(Message.create(b"stays"), None), 100.0)  # type: ignore[union-attr, arg-type]
    assert a.queue_info("q")["message_count"] == 2, "without a time: as the last tick left it"
    assert a.queue_info("q", now=100.2)["message_count"] == 2
    assert a.queue_info("q", now=101.2)["message_count"] == 1
