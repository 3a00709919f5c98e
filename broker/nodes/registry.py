"""Address → node resolution (RabbitMQ's AMQP address format v2) and auto-create.

`/queues/<percent-encoded name>` names a queue or stream; a bare name without a
leading slash means the same queue, as older clients and examples use it.
Queues and streams share one namespace, so attaching to a stream by name
never creates a queue of the same name, and vice versa.
"""

from __future__ import annotations

import itertools
from urllib.parse import quote, unquote

from broker.errors import AmqpError, Condition
from broker.nodes.queue import Queue
from broker.nodes.stream import Stream

Node = Queue | Stream


TEMPORARY_PREFIX = "amq.gen-"  # dynamic nodes only; never auto-created by name


class AddressError(AmqpError):
    """An address we cannot use; `condition` says why (not-found, invalid-field…)."""

    condition = Condition.NOT_FOUND


def parse_address(address: object) -> str:
    """The node name an address refers to; AddressError if it is not one we serve."""
    if not isinstance(address, str) or not address:
        raise AddressError(f"invalid address {address!r}", condition=Condition.INVALID_FIELD)
    if not address.startswith("/"):
        return address
    if address.startswith("/queues/"):
        try:
            name = unquote(address[len("/queues/"):], errors="strict")
        except UnicodeDecodeError:
            raise AddressError(f"queue address {address!r} is not UTF-8 once decoded",
                               condition=Condition.INVALID_FIELD) from None
        if not name or "/" in address[len("/queues/"):]:
            raise AddressError(f"invalid queue address {address!r}",
                               condition=Condition.INVALID_FIELD)
        return name
    if address.startswith("/exchanges/"):
        raise AddressError(f"exchanges are not supported: {address!r}")
    raise AddressError(f"unsupported address {address!r}", condition=Condition.INVALID_FIELD)


def queue_address(name: str) -> str:
    return "/queues/" + quote(name, safe="")


class Registry:
    def __init__(
        self,
        *,
        auto_create: bool = True,
        max_length: int | None = None,
        max_length_bytes: int | None = None,
        overflow: str = "reject-publish",
    ) -> None:
        self.auto_create = auto_create
        self.nodes: dict[str, Node] = {}
        self._limits = {"max_length": max_length, "max_length_bytes": max_length_bytes,
                        "overflow": overflow}
        self._temp_ids = itertools.count(1)

    def declare_queue(self, name: str, *, temporary: bool = False) -> Queue:
        node = self.nodes.get(name)
        if node is not None:
            if not isinstance(node, Queue):
                raise AddressError(f"{name!r} is a {node.kind}, not a queue",
                                   condition=Condition.PRECONDITION_FAILED)
            return node
        queue = Queue(name, temporary=temporary, **self._limits)  # type: ignore[arg-type]
        self.nodes[name] = queue
        return queue

    def declare_stream(
        self,
        name: str,
        *,
        max_age: float | None = None,
        max_length_bytes: int | None = None,
        max_length_messages: int | None = None,
    ) -> Stream:
        node = self.nodes.get(name)
        if node is not None:
            if not isinstance(node, Stream):
                raise AddressError(f"{name!r} is a {node.kind}, not a stream",
                                   condition=Condition.PRECONDITION_FAILED)
            return node
        stream = Stream(name, max_age=max_age, max_length_bytes=max_length_bytes,
                        max_length_messages=max_length_messages)
        self.nodes[name] = stream
        return stream

    def add(self, node: Node) -> Node:
        """Register a node built elsewhere (streams)."""
        if node.name in self.nodes:
            raise AddressError(f"{node.name!r} already exists",
                               condition=Condition.PRECONDITION_FAILED)
        self.nodes[node.name] = node
        return node

    def resolve(self, address: object) -> Node:
        """The node for an address, created on first use when auto-create is on."""
        name = parse_address(address)
        node = self.nodes.get(name)
        if node is not None:
            return node
        if not self.auto_create:
            raise AddressError(f"no queue named {name!r}")
        if name.startswith(TEMPORARY_PREFIX):
            raise AddressError(f"temporary queue {name!r} does not exist (any more)")
        if name.startswith("$"):
            # `$cbs`, `$management`…: service nodes other brokers answer.  An
            # ordinary queue in their place would echo a client's requests back
            # to it (azure-servicebus then waits forever), so refuse instead.
            raise AddressError(f"{name!r} is a reserved service node this broker does not offer")
        return self.declare_queue(name)

    def create_temporary(self, container_id: str) -> Queue:
        """A queue for a dynamic receiver; deleted when its link closes."""
        while True:
            name = f"{TEMPORARY_PREFIX}{next(self._temp_ids)}-{container_id}"
            if name not in self.nodes:
                return self.declare_queue(name, temporary=True)

    def delete(self, name: str) -> None:
        self.nodes.pop(name, None)

    def get(self, name: str) -> Node | None:
        return self.nodes.get(name)
