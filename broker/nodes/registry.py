"""Names → nodes: queues, streams and exchanges; routing; auto-create.

Addresses follow RabbitMQ's AMQP address format v2: `/queues/<name>` names a
queue or stream, `/exchanges/<name>/<key>` (or `/exchanges/<name>`, empty key)
an exchange and a routing key, each part percent-encoded.  A bare name without
a leading slash means the queue of that name, as older clients and examples
use it.  Queues and streams share one namespace, so attaching to a stream by
name never creates a queue of the same name, and vice versa; exchanges have
their own.

Routing goes through `route()`: the exchange graph is walked (exchange-to-
exchange bindings included) and every queue or stream reached gets the
message once.  Queues hand dead-lettered messages to `_dead_letter`, which
routes them through the queue's dead-letter exchange.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from broker.codec.messaging import Message, encode_annotations, rewrite_header
from broker.errors import AmqpError, Condition
from broker.nodes.azure import DEAD_LETTER_SEGMENT, SUBSCRIPTIONS, AzureEntities
from broker.nodes.base import Entry, NodeInfo, expiry_of
from broker.nodes.deadletter import (
    X_EXCHANGE,
    X_ROUTING_KEY,
    dead_lettered,
    is_cycle,
    keys_for_dead_letter,
)
from broker.nodes.exchange import (
    EXCHANGE,
    QUEUE,
    Binding,
    DefaultExchange,
    Exchange,
    make_exchange,
    walk,
)
from broker.nodes.queue import Queue, QueueFull
from broker.nodes.stream import Stream

log = logging.getLogger("broker.registry")

Node = Queue | Stream

MAX_ROUTING_KEY = 255
TEMPORARY_PREFIX = "amq.gen-"  # dynamic nodes only; never auto-created by name
REPLY_TO_PREFIX = "amq.rabbitmq.reply-to."  # Direct Reply-To queues; never auto-created
PREDECLARED = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}


class AddressError(AmqpError):
    """An address we cannot use; `condition` says why (not-found, invalid-field…)."""

    condition = Condition.NOT_FOUND


@dataclass(frozen=True, slots=True)
class ExchangeAddress:
    """A target `/exchanges/<exchange>/<key>`."""

    exchange: str
    key: str


def _decode_part(part: str, address: str) -> str:
    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise AddressError(f"address {address!r} is not UTF-8 once decoded",
                           condition=Condition.INVALID_FIELD) from None


def parse_target(address: object) -> str | ExchangeAddress:
    """What a target address names: a queue name, or an exchange and a key."""
    if isinstance(address, str) and address.startswith("/exchanges/"):
        rest = address[len("/exchanges/"):]
        parts = rest.split("/")
        if not parts[0] or len(parts) > 2:
            raise AddressError(f"invalid exchange address {address!r}",
                               condition=Condition.INVALID_FIELD)
        key = _decode_part(parts[1], address) if len(parts) == 2 else ""
        check_routing_key(key)
        return ExchangeAddress(_decode_part(parts[0], address), key)
    return parse_address(address)


def parse_address(address: object) -> str:
    """The queue name an address refers to; AddressError if it is not one we serve.
    Azure's SDKs name entities by URL (`amqps://host[:port]/ENTITY`,
    `sb://host/ENTITY`): the entity is the path."""
    if not isinstance(address, str) or not address:
        raise AddressError(f"invalid address {address!r}", condition=Condition.INVALID_FIELD)
    entity = entity_of_url(address)
    if entity is not None:
        if not entity:
            raise AddressError(f"no entity in {address!r}", condition=Condition.INVALID_FIELD)
        return entity
    if not address.startswith("/"):
        return address
    if address.startswith("/queues/"):
        rest = address[len("/queues/"):]
        name = _decode_part(rest, address)
        if not name or "/" in rest:
            raise AddressError(f"invalid queue address {address!r}",
                               condition=Condition.INVALID_FIELD)
        return name
    if address.startswith("/exchanges/"):
        raise AddressError(f"an exchange is not a source: {address!r}",
                           condition=Condition.INVALID_FIELD)
    raise AddressError(f"unsupported address {address!r}", condition=Condition.INVALID_FIELD)


_ENTITY_URL_SCHEMES = ("amqps://", "amqp://", "sb://")


def entity_of_url(address: str) -> str | None:
    """Azure's entity URLs (`amqps://host[:port]/ENTITY`, `sb://host/ENTITY`):
    the entity (the path); None for an address that is no such URL."""
    if not address.startswith(_ENTITY_URL_SCHEMES):
        return None
    return unquote(urlsplit(address).path.lstrip("/"))


def check_routing_key(key: str) -> None:
    """Routing keys are at most 255 bytes of UTF-8, as RabbitMQ stores them; that
    also bounds the work of matching one against topic patterns."""
    if len(key) > MAX_ROUTING_KEY or len(key.encode()) > MAX_ROUTING_KEY:
        raise AddressError(f"routing key longer than {MAX_ROUTING_KEY} bytes",
                           condition=Condition.INVALID_FIELD)


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
        wall_clock_ms: Callable[[float], int] = lambda now: int(now * 1000),
    ) -> None:
        self.auto_create = auto_create
        self.nodes: dict[str, Node] = {}
        self.info: dict[str, NodeInfo] = {}
        self.exchanges: dict[str, Exchange] = {"": DefaultExchange()}
        for name, kind in PREDECLARED.items():
            self.exchanges[name] = make_exchange(name, kind)
        # bindings by destination, so deleting a queue never scans every exchange
        self._inbound: dict[tuple[str, str], dict[Binding, None]] = {}
        self._defaults = {"max_length": max_length, "max_length_bytes": max_length_bytes,
                          "overflow": overflow}
        self._temp_ids = itertools.count(1)
        self._annotations: dict[tuple[str, str], tuple[dict[object, object], bytes]] = {}
        self._headers: dict[tuple[bytes, bool], bytes] = {}  # (received, durable) → stored
        # Routes by (exchange, key): topic matching is the costly part of a publish,
        # and publishers repeat their keys.  Any change to bindings, exchanges or
        # deleted nodes clears it; a route that reached a headers exchange depends
        # on each message, and is never kept.
        self._routes: dict[tuple[str, str], tuple[Exchange, list[Node]]] = {}
        self._exclusive: dict[int, set[str]] = {}  # id(owning connection) → queue names
        # the store's (--data-dir): told of each node made and deleted, and the
        # count of topology changes, so it knows when to write the topology again
        self.on_node_added: Callable[[Node], None] | None = None
        self.on_node_removed: Callable[[Node], None] | None = None
        self.topology_version = 0
        self.held_bytes = 0  # what the nodes hold, for the memory alarm
        # Azure Service Bus: scheduled and deferred messages, subscription rules
        self.azure = AzureEntities(self)
        self._ms = wall_clock_ms

    # -- queues and streams ---------------------------------------------------------

    def declare_queue(self, name: str, *, temporary: bool = False,
                      **settings: object) -> Queue:
        """The queue `name`, created with `settings` (Queue's keywords) if new."""
        node = self.nodes.get(name)
        if node is not None:
            if not isinstance(node, Queue):
                raise AddressError(f"{name!r} is a {node.kind}, not a queue",
                                   condition=Condition.PRECONDITION_FAILED)
            return node
        options = {**self._defaults, **settings}
        queue = Queue(name, temporary=temporary, **options)  # type: ignore[arg-type]
        queue.dead_letter = self._dead_letter
        self._add(queue)
        log.debug("queue %r created%s", name, " (temporary)" if temporary else "")
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
        self._add(stream)
        self.info[name].queue_type = "stream"
        return stream

    def add(self, node: Node) -> Node:
        """Register a node built elsewhere (streams)."""
        if node.name in self.nodes:
            raise AddressError(f"{node.name!r} already exists",
                               condition=Condition.PRECONDITION_FAILED)
        self._add(node)
        return node

    def _add(self, node: Node) -> None:
        # no route cache to clear: routes through exchanges reach only bound
        # nodes, and a new node has no bindings yet
        self.nodes[node.name] = node
        self.info[node.name] = NodeInfo(queue_type="stream" if isinstance(node, Stream)
                                        else "classic")
        self.topology_version += 1
        if self.on_node_added is not None:
            self.on_node_added(node)

    def _topology_changed(self) -> None:
        self._routes.clear()
        self.topology_version += 1

    def resolve(self, address: object) -> Node:
        """The queue or stream for a source address, created on first use when
        auto-create is on."""
        return self.queue_for(parse_address(address))

    def queue_for(self, name: str) -> Node:
        node = self.nodes.get(name)
        if node is not None:
            return node
        if not self.auto_create:
            raise AddressError(f"no queue named {name!r}")
        if name.startswith((TEMPORARY_PREFIX, REPLY_TO_PREFIX)):
            raise AddressError(f"temporary queue {name!r} does not exist (any more)")
        topic, marker, subscription = name.partition(SUBSCRIPTIONS)
        if marker and topic and subscription and "/" not in subscription:
            return self.declare_subscription(topic, subscription)
        reserved = [p for p in name.split("/") if p.startswith("$")]
        if reserved and reserved != [DEAD_LETTER_SEGMENT] or name.startswith("$"):
            # `$cbs`, `$management`, `ENTITY/$management`…: service nodes other
            # brokers answer.  An ordinary queue in their place would echo a
            # client's requests back to it (azure-servicebus then waits out its
            # timeout), so refuse instead.  Azure's `ENTITY/$DeadLetterQueue` is
            # a queue.
            raise AddressError(f"{name!r} is a reserved service node this broker does not offer")
        return self.declare_queue(name)

    def declare_subscription(self, topic: str, subscription: str) -> Queue:
        """Azure's `TOPIC/Subscriptions/SUB`: a queue bound to the topic, a fanout
        exchange; both made on first use (or declared by the config)."""
        name = f"{topic}{SUBSCRIPTIONS}{subscription}"
        exchange = self.exchanges.get(topic)
        if exchange is None:
            exchange, _ = self.declare_exchange(topic, "fanout")
        queue = self.declare_queue(name)
        self.bind(Binding(topic, name, QUEUE))
        return queue

    def topic(self, name: str) -> Exchange | None:
        """The Azure topic `name` (a fanout exchange with no queue of that name),
        which an entity address may name for publishing."""
        exchange = self.exchanges.get(name)
        if exchange is None or name in self.nodes or exchange.type != "fanout":
            return None
        return exchange

    def create_temporary(self, container_id: str, prefix: str = TEMPORARY_PREFIX) -> Queue:
        """A queue for a dynamic link; deleted when its link closes."""
        while True:
            name = f"{prefix}{next(self._temp_ids)}-{container_id}"
            if name not in self.nodes:
                return self.declare_queue(name, temporary=True)

    def delete(self, name: str) -> int:
        """Delete a queue or stream with its bindings; its consumers are told.
        Returns how many messages it held (0 when there was no such node)."""
        node = self.nodes.pop(name, None)
        self.info.pop(name, None)
        if node is None:
            return 0
        log.debug("%s %r deleted, holding %d messages", node.kind, name, node.depth)
        self._topology_changed()
        self._unbind_destination(QUEUE, name)
        self.azure.queue_deleted(name)
        if self.on_node_removed is not None:
            self.on_node_removed(node)
        count = node.depth
        node.deleted = True
        if isinstance(node, Queue):
            node.purge()
            consumers = list(node.consumers) + [b.consumer for b in node.browsers.values()]
            node.consumers.clear()
            node.browsers.clear()
        else:
            consumers = [c.consumer for c in node.cursors.values()]
            node.cursors.clear()
        for consumer in consumers:
            consumer.node_deleted()
        return count

    def get(self, name: str) -> Node | None:
        return self.nodes.get(name)

    # -- exchanges and bindings ------------------------------------------------------

    def declare_exchange(self, name: str, type: str = "direct", *, durable: bool = True,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: dict[str, object] | None = None) -> tuple[Exchange, bool]:
        """The exchange `name` and whether it was created now."""
        existing = self.exchanges.get(name)
        if existing is not None:
            return existing, False
        exchange = make_exchange(name, type, durable=durable, auto_delete=auto_delete,
                                 internal=internal, arguments=arguments)
        self.exchanges[name] = exchange
        self.topology_version += 1
        return exchange, True

    def delete_exchange(self, name: str) -> bool:
        exchange = self.exchanges.pop(name, None)
        if exchange is None:
            return False
        self._topology_changed()
        for binding in exchange.bindings:
            exchange.unbind(binding)
            self._forget(binding)
        self._unbind_destination(EXCHANGE, name)
        return True

    def bind(self, binding: Binding) -> bool:
        source = self.exchanges[binding.source]
        if not source.bind(binding):
            return False
        self._topology_changed()
        self._inbound.setdefault((binding.destination_kind, binding.destination),
                                 {})[binding] = None
        return True

    def unbind(self, binding: Binding) -> bool:
        source = self.exchanges.get(binding.source)
        if source is None or not source.unbind(binding):
            return False
        self._forget(binding)
        exchange = self.exchanges.get(binding.source)
        if exchange is not None and exchange.auto_delete and not exchange.binding_count:
            self.delete_exchange(binding.source)
        return True

    def bindings(self) -> list[Binding]:
        return [b for x in self.exchanges.values() if x.name for b in x.bindings]

    def _forget(self, binding: Binding) -> None:
        self._topology_changed()
        inbound = self._inbound.get((binding.destination_kind, binding.destination))
        if inbound is not None:
            inbound.pop(binding, None)
            if not inbound:
                del self._inbound[(binding.destination_kind, binding.destination)]

    def _unbind_destination(self, kind: str, name: str) -> None:
        self._topology_changed()
        for binding in list(self._inbound.pop((kind, name), {})):
            source = self.exchanges.get(binding.source)
            if source is not None:
                source.unbind(binding)
                if source.auto_delete and not source.binding_count:
                    self.delete_exchange(source.name)

    # -- routing ----------------------------------------------------------------------

    def route(self, exchange: Exchange, keys: Sequence[str], message: Message) -> list[Node]:
        """The queues and streams a message published to `exchange` with routing
        `keys` goes to, each once."""
        nodes = self.nodes
        if len(keys) == 1 and isinstance(exchange, DefaultExchange):  # no graph to walk
            node = nodes.get(keys[0])
            return [] if node is None else [node]
        single = len(keys) == 1  # x-cc keys vary per message: not cached
        if single:
            cached = self._routes.get((exchange.name, keys[0]))
            if cached is not None and cached[0] is exchange:
                return cached[1]
        names, by_headers = walk(self.exchanges, exchange, keys,
                                 lambda: message.application_properties)
        found = [n for n in (nodes.get(name) for name in names) if n is not None]
        if single and not by_headers:  # a headers exchange's answer is per message
            if len(self._routes) >= 4096:
                self._routes.clear()
            self._routes[(exchange.name, keys[0])] = (exchange, found)
        return found

    def routing_annotations(self, exchange: str, key: str) -> tuple[dict[object, object], bytes]:
        """`x-exchange` and `x-routing-key` for a routed message, with their encoded
        section (cached: publishers repeat the same few pairs)."""
        cached = self._annotations.get((exchange, key))
        if cached is None:
            values: dict[object, object] = {X_EXCHANGE: exchange, X_ROUTING_KEY: key}
            cached = (values, encode_annotations(values))
            if len(key) <= MAX_ROUTING_KEY:  # a relay's `to` may name a long queue
                if len(self._annotations) >= 4096:
                    self._annotations.clear()
                self._annotations[(exchange, key)] = cached
        return cached

    def first_delivery_header(self, message: Message, *, durable: bool = False) -> bytes:
        """The encoded header a routed message is stored with: the publisher's
        fields as they were encoded, with `first-acquirer` true, as RabbitMQ
        delivers it (a redelivery rewrites it again).  Cached by the header's
        bytes when they are short: a publisher sends the same few headers over
        and over, and a long one is no header a client really sends.  `durable`
        sets the header's durable (Azure clients' messages: Service Bus keeps
        every message)."""
        raw = message.section_bytes(0x70) or b""
        key = (raw, durable)
        cached = self._headers.get(key)
        if cached is None:
            cached = rewrite_header(raw, first_acquirer=True, durable=durable)
            if len(raw) <= 32:
                if len(self._headers) >= 1024:
                    self._headers.clear()
                self._headers[key] = cached
        return cached

    def _dead_letter(self, queue: Queue, entry: Entry, reason: str, now: float) -> None:
        """Route a message that left `queue` for `reason` to its dead-letter exchange.
        As RabbitMQ does by default (at-most-once dead-lettering), a message that
        routes nowhere, or only into a cycle, or into a full queue, is dropped;
        so is one whose sections cannot be read (a headers exchange decodes
        application-properties that nothing had read before), with a log line."""
        name = queue.dead_letter_exchange
        exchange = self.exchanges.get(name) if name is not None else None
        if exchange is None:
            log.info("dead-letter exchange %r of queue %r does not exist: message dropped",
                     name, queue.name)
            return
        try:
            keys = list(keys_for_dead_letter(entry.message, queue.name,
                                             queue.dead_letter_routing_key))
            message = dead_lettered(entry.message, queue=queue.name, reason=reason,
                                    now_ms=self._ms(now), exchange=exchange.name,
                                    routing_key=keys[0])
            targets = self.route(exchange, keys, message)
        except AmqpError as exc:
            log.info("message dead-lettered from queue %r dropped: %s", queue.name, exc)
            return
        for node in targets:
            if is_cycle(message, node.name):
                log.info("dead-letter cycle through queue %r: message dropped", node.name)
                continue
            try:
                node.publish(Entry(message, expiry_of(message, now)), now)
            except QueueFull as exc:
                log.info("dead-lettered message dropped: %s", exc)

    # -- lifecycle housekeeping --------------------------------------------------------

    def make_exclusive(self, name: str, owner: object) -> None:
        """`name` belongs to `owner` (a connection) and goes when it does."""
        self.info[name].exclusive_owner = owner
        self._exclusive.setdefault(id(owner), set()).add(name)

    def owner_gone(self, owner: object) -> list[str]:
        """Delete the exclusive queues of a connection that closed."""
        names = [n for n in self._exclusive.pop(id(owner), ())
                 if (i := self.info.get(n)) is not None and i.exclusive_owner is owner]
        for name in names:
            self.delete(name)
        return names

    def housekeeping(self, now: float) -> None:
        """Periodic work: stream retention by age, expired messages dropped (or
        dead-lettered) from queues nobody is reading, unused queues deleted, and
        the exact count of what the nodes hold (`held_bytes`, which publishes and
        settlements keep roughly up to date in between)."""
        held = 0
        for node in list(self.nodes.values()):
            node.housekeeping(now)
            held += node.held_bytes
        self.held_bytes = held + self.azure.held_bytes
        self.expire_unused(now)
        self.azure.enqueue_scheduled(now)

    def expire_unused(self, now: float) -> list[str]:
        """Delete queues whose `x-expires` ran out without a consumer or a declare."""
        names = [n for n, i in self.info.items()
                 if i.expires is not None and now - i.last_used >= i.expires
                 and not _has_consumers(self.nodes[n])]
        for name in names:
            self.delete(name)
        return names

    def consumer_removed(self, node: Node, now: float) -> None:
        """Auto-delete queues go when their last consumer does."""
        info = self.info.get(node.name)
        if info is None:
            return
        info.last_used = now
        if info.auto_delete and info.had_consumer and not _has_consumers(node) \
                and self.nodes.get(node.name) is node:
            self.delete(node.name)

    def consumer_added(self, node: Node, now: float) -> None:
        info = self.info.get(node.name)
        if info is not None:
            info.had_consumer = True
            info.last_used = now


def _has_consumers(node: Node) -> bool:
    """Anyone reading: consumers, browsers, or stream readers (x-expires and
    auto-delete wait for all of them)."""
    if isinstance(node, Queue):
        return bool(node.consumers or node.browsers)
    return bool(node.cursors)
