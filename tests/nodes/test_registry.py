"""Address resolution and the node registry."""

from __future__ import annotations

import pytest

from broker.errors import Condition
from broker.nodes.queue import Queue
from broker.nodes.registry import AddressError, Registry, parse_address, queue_address


@pytest.mark.parametrize(("address", "name"), [
    ("orders", "orders"),
    ("/queues/orders", "orders"),
    ("/queues/my%20queue", "my queue"),
    ("/queues/a%2Fb", "a/b"),
    ("/queues/%C3%A9t%C3%A9", "été"),
    ("a/b", "a/b"),  # a bare name is taken as it is
])
def test_parse_address(address: str, name: str) -> None:
    assert parse_address(address) == name


@pytest.mark.parametrize(("address", "condition"), [
    ("", Condition.INVALID_FIELD),
    (None, Condition.INVALID_FIELD),
    (b"/queues/q", Condition.INVALID_FIELD),
    (42, Condition.INVALID_FIELD),
    ("/queues/", Condition.INVALID_FIELD),
    ("/queues/a/b", Condition.INVALID_FIELD),
    ("/queues/%ff", Condition.INVALID_FIELD),  # not UTF-8 once decoded
    ("/exchanges/amq.topic/key", Condition.INVALID_FIELD),  # an exchange is not a source
    ("/topics/x", Condition.INVALID_FIELD),
    ("/", Condition.INVALID_FIELD),
])
def test_unusable_addresses(address: object, condition: Condition) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(address)
    assert info.value.error_condition is condition


@pytest.mark.parametrize("name", ["q", "my queue", "a/b", "100%", "été", "amq.gen-1-c/d?x#y"])
def test_queue_address_round_trips(name: str) -> None:
    address = queue_address(name)
    assert address.startswith("/queues/")
    assert "/" not in address[len("/queues/"):]
    assert parse_address(address) == name


def test_resolve_auto_creates() -> None:
    r = Registry()
    q = r.resolve("/queues/q")
    assert isinstance(q, Queue) and q.name == "q"
    assert r.resolve("q") is q
    assert r.get("q") is q


def test_resolve_without_auto_create() -> None:
    r = Registry(auto_create=False)
    with pytest.raises(AddressError) as info:
        r.resolve("q")
    assert info.value.error_condition is Condition.NOT_FOUND
    assert r.get("q") is None
    declared = r.declare_queue("q")
    assert r.resolve("/queues/q") is declared


def test_declare_queue_is_idempotent() -> None:
    r = Registry()
    assert r.declare_queue("q") is r.declare_queue("q")


def test_queues_get_the_registry_limits() -> None:
    r = Registry(max_length=5, max_length_bytes=100, overflow="drop-head")
    q = r.resolve("q")
    assert (q.max_length, q.max_length_bytes, q.overflow) == (5, 100, "drop-head")


def test_temporary_queues() -> None:
    r = Registry(auto_create=False)
    a = r.create_temporary("client")
    b = r.create_temporary("client")
    assert a.temporary and b.temporary
    assert a.name != b.name
    assert a.name.startswith("amq.gen-")
    assert r.resolve(queue_address(a.name)) is a, "reachable by address without auto-create"
    r.delete(a.name)
    assert r.get(a.name) is None
    r.delete(a.name)  # deleting twice is harmless


def test_temporary_names_skip_existing_queues() -> None:
    r = Registry()
    r.declare_queue("amq.gen-1-c")
    assert r.create_temporary("c").name == "amq.gen-2-c"


def test_add_refuses_a_duplicate_name() -> None:
    r = Registry()
    r.declare_queue("q")
    with pytest.raises(AddressError) as info:
        r.add(Queue("q"))
    assert info.value.error_condition is Condition.PRECONDITION_FAILED


def test_dollar_names_are_not_auto_created() -> None:
    registry = Registry()
    with pytest.raises(AddressError) as info:
        registry.resolve("$cbs")
    assert info.value.error_condition.value == "amqp:not-found"
    registry.declare_queue("$mine")  # declared explicitly, it is an ordinary queue
    assert registry.resolve("$mine").name == "$mine"
