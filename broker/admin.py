"""The one administrative API: declare, delete, purge, bind, list.

Every way of changing the broker's topology goes through here: the
`/management` node (RabbitMQ's HTTP over AMQP), the config file and the
command line at start, and the pytest fixture's helpers.  Answers are plain
Python data (dicts, lists, ints); the management node gives them AMQP types.
Failures are `AdminError` with the HTTP status RabbitMQ 4 answers and its
wording, so each caller reports them as it must (a status code, a usage error).

Queue arguments are RabbitMQ's (`x-queue-type`, `x-max-length`, …): validated
here, once, into the keyword settings of `Queue` and `Stream`.  Unknown `x-`
arguments are kept and reported back but change nothing, as RabbitMQ does.

Pure: no I/O, no clock of its own (callers pass `now`, wall-clock seconds).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from broker.codec.messaging import Message
from broker.config import Config
from broker.filters.fields import FilterError
from broker.nodes.azure import DEFAULT_RULE, sql_rule
from broker.nodes.base import NodeInfo
from broker.nodes.exchange import EXCHANGE, EXCHANGE_TYPES, QUEUE, Binding

__all__ = ["EXCHANGE", "QUEUE", "Admin", "AdminError", "apply_config", "check_config"]
from broker.errors import AmqpError
from broker.nodes.browse import last_value_key
from broker.nodes.queue import OVERFLOWS, Queue
from broker.nodes.registry import Node, Registry, check_routing_key
from broker.nodes.stream import Stream, parse_interval

VHOST = "/"
# a last-value queue's key: ours, then Qpid's and Artemis' spellings
LAST_VALUE_KEY_ARGS = ("x-last-value-key", "qpid.last_value_queue_key", "last-value-key")
# every consumer browses: ours, then Qpid's (its queue attribute, and as an argument)
BROWSE_ONLY_ARGS = ("x-browse-only", "ensureNondestructiveConsumers",
                    "qpid.ensure_nondestructive_consumers")
MAX_PEEK = 100  # messages one peek may show
QUEUE_TYPES = ("classic", "quorum", "stream")
QUORUM_DELIVERY_LIMIT = 20  # RabbitMQ 4's default for quorum queues

# Arguments compared on re-declare (RabbitMQ's equivalence list, in its wording).
_EQUIVALENCE = ("x-queue-type", "x-max-length", "x-max-length-bytes", "x-overflow",
                "x-message-ttl", "x-expires", "x-dead-letter-exchange",
                "x-dead-letter-routing-key", "x-single-active-consumer", "x-max-priority",
                "x-delivery-limit", "x-max-age", *LAST_VALUE_KEY_ARGS, *BROWSE_ONLY_ARGS)


class AdminError(Exception):
    """A refused administrative request: `status` is the HTTP code RabbitMQ uses."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A validated declaration: what kind of node, and its keyword settings."""

    queue_type: str
    settings: dict[str, Any]
    expires: float | None


def _int_arg(name: str, value: object, queue: str, *, minimum: int = 0,
             maximum: int | None = 0x7FFFFFFFFFFFFFFF) -> int:
    """An integer argument in range (a long at most: it must encode again)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or \
            (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise AdminError(400, f"invalid arg '{name}' for queue '{queue}' in vhost '{VHOST}': "
                              f"expected an integer {bound}, got {value!r}")
    return value


def _str_arg(name: str, value: object, queue: str, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str) or (choices and value not in choices):
        allowed = f" (one of {', '.join(choices)})" if choices else ""
        raise AdminError(400, f"invalid arg '{name}' for queue '{queue}' in vhost '{VHOST}': "
                              f"expected a string{allowed}, got {value!r}")
    return value


def queue_settings(name: str, arguments: Mapping[str, object]) -> QueueSettings:
    """Validate RabbitMQ queue arguments into `Queue`/`Stream` keyword settings."""
    args = dict(arguments)
    queue_type = _str_arg("x-queue-type", args.get("x-queue-type", "classic"), name, QUEUE_TYPES)
    settings: dict[str, Any] = {}
    expires: float | None = None
    if "x-max-length-bytes" in args:
        settings["max_length_bytes"] = _int_arg("x-max-length-bytes", args["x-max-length-bytes"],
                                                name)
    if queue_type == "stream":
        if "x-max-age" in args:
            text = _str_arg("x-max-age", args["x-max-age"], name)
            seconds = parse_interval(text)
            if seconds is None:
                raise AdminError(400, f"invalid arg 'x-max-age' for queue '{name}' in vhost "
                                      f"'{VHOST}': expected a duration like '7D', got {text!r}")
            settings["max_age"] = float(seconds)
        return QueueSettings(queue_type, settings, None)
    if "x-max-length" in args:
        settings["max_length"] = _int_arg("x-max-length", args["x-max-length"], name)
    if "x-overflow" in args:
        settings["overflow"] = _str_arg("x-overflow", args["x-overflow"], name, OVERFLOWS)
    elif "max_length" in settings or "max_length_bytes" in settings:
        settings["overflow"] = "drop-head"  # RabbitMQ's default for a declared limit
    if "x-message-ttl" in args:
        settings["message_ttl"] = _int_arg("x-message-ttl", args["x-message-ttl"], name) / 1000
    if "x-expires" in args:
        expires = _int_arg("x-expires", args["x-expires"], name, minimum=1) / 1000
    if "x-dead-letter-exchange" in args:
        settings["dead_letter_exchange"] = _str_arg("x-dead-letter-exchange",
                                                    args["x-dead-letter-exchange"], name)
    if "x-dead-letter-routing-key" in args:
        settings["dead_letter_routing_key"] = _str_arg("x-dead-letter-routing-key",
                                                       args["x-dead-letter-routing-key"], name)
    if "x-single-active-consumer" in args:
        value = args["x-single-active-consumer"]
        if not isinstance(value, bool):
            raise AdminError(400, f"invalid arg 'x-single-active-consumer' for queue '{name}' "
                                  f"in vhost '{VHOST}': expected true or false, got {value!r}")
        settings["single_active_consumer"] = value
    if "x-max-priority" in args:
        settings["max_priority"] = _int_arg("x-max-priority", args["x-max-priority"], name,
                                            maximum=255)
    if "x-delivery-limit" in args:
        settings["delivery_limit"] = _int_arg("x-delivery-limit", args["x-delivery-limit"], name)
    elif queue_type == "quorum":
        settings["delivery_limit"] = QUORUM_DELIVERY_LIMIT
    if queue_type == "quorum":
        settings["count_returns"] = True
    lvq = [a for a in LAST_VALUE_KEY_ARGS if a in args]
    if lvq:
        spec = _str_arg(lvq[0], args[lvq[0]], name)
        try:
            last_value_key(spec)
        except ValueError as exc:
            raise AdminError(400, f"invalid arg '{lvq[0]}' for queue '{name}' in vhost "
                                  f"'{VHOST}': {exc}") from None
        settings["last_value_key"] = spec
    browse = [a for a in BROWSE_ONLY_ARGS if a in args]
    if browse:
        value = args[browse[0]]
        if not isinstance(value, bool):
            raise AdminError(400, f"invalid arg '{browse[0]}' for queue '{name}' in vhost "
                                  f"'{VHOST}': expected true or false, got {value!r}")
        settings["browse_only"] = value
    return QueueSettings(queue_type, settings, expires)


def _check_exchange_name(name: str) -> None:
    if name == "":
        raise AdminError(403, f"the default exchange in vhost '{VHOST}' cannot be changed")
    if name.startswith("amq."):
        raise AdminError(403, f"exchange '{name}' in vhost '{VHOST}' starts with reserved "
                              "prefix 'amq.'")


def binding_args_hash(arguments: Mapping[str, object]) -> str:
    """The `args=` part of a binding's path: empty for no arguments, else a stable
    digest of them (RabbitMQ's is opaque too; clients copy it from `location`)."""
    if not arguments:
        return ""
    text = repr(sorted((str(k), repr(v)) for k, v in arguments.items()))
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:12]).decode()


class Admin:
    def __init__(self, registry: Registry, *, node_name: str = "amqpws-broker",
                 connections: Callable[[], list[dict[str, object]]] = list) -> None:
        self.registry = registry
        self.node_name = node_name
        self._connections = connections

    # -- queues -------------------------------------------------------------------

    def declare_queue(self, name: str, *, durable: bool = True, exclusive: bool = False,
                      auto_delete: bool = False, arguments: Mapping[str, object] | None = None,
                      owner: object = None, now: float = 0.0) -> tuple[dict[str, object], bool]:
        """Create a queue or stream, or check a re-declare is equivalent.
        Returns (its info, created)."""
        if not name:
            raise AdminError(400, "a queue name must not be empty")
        args = dict(arguments or {})
        spec = queue_settings(name, args)
        if exclusive and owner is None:
            raise AdminError(400, f"exclusive queue '{name}' needs an owning connection")
        registry = self.registry
        existing = registry.get(name)
        if existing is not None:
            info = registry.info[name]
            if info.exclusive_owner is not None and info.exclusive_owner is not owner:
                # RabbitMQ 4.0.5's status and words for a declare (a purge gets 409)
                raise AdminError(400, f"cannot obtain exclusive access to locked queue "
                                      f"'{name}' in vhost '{VHOST}'. It could be originally "
                                      "declared on another connection or the exclusive "
                                      "property value does not match that of the original "
                                      "declaration.")
            self._check_equivalent(name, info, durable, exclusive, auto_delete, args)
            info.last_used = now
            return self.queue_info(name), False
        if name.startswith("amq."):
            raise AdminError(403, f"queue '{name}' in vhost '{VHOST}' starts with reserved "
                                  "prefix 'amq.'")
        if spec.queue_type == "stream":
            if exclusive or auto_delete:
                raise AdminError(400, f"a stream ('{name}') cannot be exclusive or auto-delete")
            node: Node = registry.declare_stream(name, **spec.settings)
        else:
            node = registry.declare_queue(name, **spec.settings)
        info = registry.info[node.name]
        info.durable = durable
        info.auto_delete = auto_delete
        if exclusive:
            registry.make_exclusive(node.name, owner)
        info.queue_type = spec.queue_type
        info.arguments = args
        info.expires = spec.expires
        info.last_used = now
        return self.queue_info(name), True

    @staticmethod
    def _check_owner(info: NodeInfo, name: str, owner: object) -> None:
        if info.exclusive_owner is not None and info.exclusive_owner is not owner:
            raise AdminError(409, f"cannot obtain exclusive access to locked queue '{name}' "
                                  f"in vhost '{VHOST}'")

    @staticmethod
    def _check_equivalent(name: str, info: NodeInfo, durable: bool, exclusive: bool,
                          auto_delete: bool, args: dict[str, object]) -> None:
        def differs(arg: str, received: object, current: object) -> AdminError:
            def show(v: object) -> str:
                if v is None:
                    return "none"
                if isinstance(v, bool):
                    return f"'{str(v).lower()}'"
                return f"'{int(v) if isinstance(v, int) else v}'"  # Long(10) as 10
            return AdminError(409, f"inequivalent arg '{arg}' for queue '{name}' in vhost "
                                   f"'{VHOST}': received {show(received)} but current is "
                                   f"{show(current)}")

        current_type = info.queue_type
        new_type = args.get("x-queue-type", "classic")
        if new_type != current_type:
            raise differs("x-queue-type", new_type, current_type)
        for flag, received, current in (("durable", durable, info.durable),
                                        ("auto_delete", auto_delete, info.auto_delete),
                                        ("exclusive", exclusive,
                                         info.exclusive_owner is not None)):
            if received != current and current_type != "stream":
                raise differs(flag, received, current)
        for arg in _EQUIVALENCE[1:]:
            if args.get(arg) != info.arguments.get(arg):
                raise differs(arg, args.get(arg), info.arguments.get(arg))

    def queue_info(self, name: str, now: float | None = None) -> dict[str, object]:
        """A queue as `/management` shows it.  With `now`, messages whose TTL ran
        out are dropped (or dead-lettered) first, so the count is of live ones,
        whenever the housekeeping tick last came."""
        node = self.registry.get(name)
        if node is None:
            raise AdminError(404, f"queue '{name}' in vhost '{VHOST}' not found")
        if now is not None and isinstance(node, Queue):
            node.expire(now)
        info = self.registry.info[name]
        consumers = len(node.consumers) + len(node.browsers) if isinstance(node, Queue) \
            else len(node.cursors)
        arguments = dict(info.arguments)
        arguments.setdefault("x-queue-type", info.queue_type)
        return {
            "leader": self.node_name,
            "replicas": [self.node_name],
            "message_count": node.depth,
            "consumer_count": consumers,
            "name": name,
            "vhost": VHOST,
            "durable": info.durable,
            "auto_delete": info.auto_delete,
            "exclusive": info.exclusive_owner is not None,
            "type": info.queue_type,
            "arguments": arguments,
        }

    def list_queues(self) -> list[dict[str, object]]:
        return [self.queue_info(name) for name in sorted(self.registry.nodes)]

    def queue_stats(self, name: str) -> dict[str, object]:
        """`queue_info` and what the console and metrics show besides: bytes,
        unacknowledged messages, and totals since the queue was declared."""
        info = self.queue_info(name)
        node = self.registry.nodes[name]
        stats: dict[str, object] = dict(info)
        del stats["leader"], stats["replicas"]
        if isinstance(node, Queue):
            stats.update(kind="queue", bytes=node.ready_bytes, unacked=node.unacked,
                         published=node.published, delivered=node.delivered, acked=node.acked,
                         redelivered=node.redelivered, dead_lettered=node.dead_lettered,
                         expired=node.expired, dropped=node.dropped)
        else:
            stats.update(kind="stream", bytes=node.bytes, unacked=0, published=node.published,
                         delivered=node.delivered, acked=0, redelivered=0, dead_lettered=0,
                         expired=0, dropped=0, first_offset=node.first_offset,
                         next_offset=node.next_offset)
        return stats

    def list_queue_stats(self) -> list[dict[str, object]]:
        return [self.queue_stats(name) for name in sorted(self.registry.nodes)]

    def peek(self, name: str, count: int, *, offset: int | None = None
             ) -> list[tuple[int | None, Message]]:
        """Up to `count` messages without taking them: a queue's next ready ones
        (offset None), or a stream's from `offset` (default: its first)."""
        node = self.registry.get(name)
        if node is None:
            raise AdminError(404, f"queue '{name}' in vhost '{VHOST}' not found")
        count = max(0, min(count, MAX_PEEK))
        if isinstance(node, Queue):
            return [(None, entry.message) for entry in itertools.islice(node.ready, count)]
        start = node.first_offset if offset is None else max(offset, node.first_offset)
        end = min(node.next_offset, start + count)
        return [(o, node.entry(o).message) for o in range(start, end)]

    def delete_queue(self, name: str, *, owner: object = None) -> int:
        """Delete a queue or stream; idempotent (0 messages when there is none)."""
        info = self.registry.info.get(name)
        if info is None:
            return 0
        if info.exclusive_owner is not None and info.exclusive_owner is not owner:
            raise AdminError(400, f"queue '{name}' in vhost '{VHOST}' is exclusive to "
                                  "another connection")
        count = self.registry.delete(name)
        return 0 if info.queue_type == "stream" else count  # RabbitMQ reports 0 for streams

    def purge_queue(self, name: str, *, owner: object = None) -> int:
        node = self.registry.get(name)
        if node is None:  # RabbitMQ's status and words (a GET of it is 404)
            raise AdminError(400, f"no queue '{name}' in vhost '{VHOST}'")
        if isinstance(node, Stream):
            raise AdminError(400, f"queue '{name}' in vhost '{VHOST}' is a stream: "
                                  "streams cannot be purged")
        self._check_owner(self.registry.info[name], name, owner)
        return node.purge()

    # -- exchanges -----------------------------------------------------------------

    def declare_exchange(self, name: str, *, type: str = "direct", durable: bool = True,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: Mapping[str, object] | None = None) -> bool:
        """Create an exchange, or check a re-declare is equivalent; True if created."""
        _check_exchange_name(name)
        if type not in EXCHANGE_TYPES:
            raise AdminError(400, f"unknown exchange type '{type}'")
        existing = self.registry.exchanges.get(name)
        if existing is not None:
            for field, received, current in (("type", type, existing.type),
                                             ("durable", durable, existing.durable),
                                             ("auto_delete", auto_delete, existing.auto_delete),
                                             ("internal", internal, existing.internal)):
                if received != current:
                    raise AdminError(409, f"inequivalent arg '{field}' for exchange '{name}' "
                                          f"in vhost '{VHOST}': received '{received}' but "
                                          f"current is '{current}'")
            return False
        self.registry.declare_exchange(name, type, durable=durable, auto_delete=auto_delete,
                                       internal=internal, arguments=dict(arguments or {}))
        return True

    def delete_exchange(self, name: str) -> None:
        _check_exchange_name(name)
        self.registry.delete_exchange(name)

    def list_exchanges(self) -> list[dict[str, object]]:
        return [
            {"name": x.name, "type": x.type, "durable": x.durable,
             "auto_delete": x.auto_delete, "internal": x.internal,
             "arguments": dict(x.arguments)}
            for x in sorted(self.registry.exchanges.values(), key=lambda x: x.name)
        ]

    # -- bindings ------------------------------------------------------------------

    def bind(self, source: str, destination: str, *, destination_kind: str = QUEUE,
             key: str = "", arguments: Mapping[str, object] | None = None) -> None:
        binding = self._binding(source, destination, destination_kind, key, arguments)
        if source == "" or (destination_kind == EXCHANGE and destination == ""):
            raise AdminError(403, "operation not permitted on the default exchange")
        try:
            check_routing_key(key)
        except AmqpError as exc:
            raise AdminError(400, f"invalid binding key: {exc.description}") from None
        # RabbitMQ answers a missing end of a binding with 400, not 404
        if source not in self.registry.exchanges:
            raise AdminError(400, f"no exchange '{source}' in vhost '{VHOST}'")
        if destination_kind == QUEUE and destination not in self.registry.nodes:
            raise AdminError(400, f"no queue '{destination}' in vhost '{VHOST}'")
        if destination_kind == EXCHANGE and destination not in self.registry.exchanges:
            raise AdminError(400, f"no exchange '{destination}' in vhost '{VHOST}'")
        try:
            self.registry.bind(binding)
        except ValueError as exc:  # e.g. a headers binding's x-match that is no mode
            raise AdminError(400, str(exc)) from None

    def unbind(self, source: str, destination: str, *, destination_kind: str = QUEUE,
               key: str = "", arguments: Mapping[str, object] | None = None,
               args_hash: str | None = None) -> None:
        """Remove a binding; idempotent.  With `args_hash` (a path's `args=`) the
        binding is found by the digest of its arguments."""
        if source == "":
            raise AdminError(403, "operation not permitted on the default exchange")
        if args_hash is not None:
            for b in self.find_bindings(source=source, destination=destination,
                                        destination_kind=destination_kind, key=key):
                if binding_args_hash(b.arguments) == args_hash:
                    self.registry.unbind(b)
            return
        self.registry.unbind(self._binding(source, destination, destination_kind, key,
                                           arguments))

    @staticmethod
    def _binding(source: str, destination: str, kind: str, key: str,
                 arguments: Mapping[str, object] | None) -> Binding:
        if kind not in (QUEUE, EXCHANGE):
            raise AdminError(400, f"unknown destination kind {kind!r}")
        return Binding(source=source, destination=destination, destination_kind=kind,
                       key=key, arguments=dict(arguments or {}))

    def find_bindings(self, *, source: str | None = None, destination: str | None = None,
                      destination_kind: str | None = None,
                      key: str | None = None) -> list[Binding]:
        return [
            b for b in self.registry.bindings()
            if (source is None or b.source == source)
            and (destination is None or b.destination == destination)
            and (destination_kind is None or b.destination_kind == destination_kind)
            and (key is None or b.key == key)
        ]

    def list_bindings(self, **query: str | None) -> list[dict[str, object]]:
        return [binding_info(b) for b in self.find_bindings(**query)]

    # -- connections ------------------------------------------------------------------

    def list_connections(self) -> list[dict[str, object]]:
        return self._connections()


def binding_info(b: Binding) -> dict[str, object]:
    """A binding as RabbitMQ's GET /bindings lists it, with the path to delete it."""
    dest_key = "destination_queue" if b.destination_kind == QUEUE else "destination_exchange"
    short = "dstq" if b.destination_kind == QUEUE else "dste"
    location = (f"/bindings/src={quote(b.source, safe='')};{short}="
                f"{quote(b.destination, safe='')};key={quote(b.key, safe='')};"
                f"args={binding_args_hash(b.arguments)}")
    return {"source": b.source, dest_key: b.destination, "binding_key": b.key,
            "arguments": dict(b.arguments), "location": location}


def apply_config(admin: Admin, config: Config, *, now: float) -> None:
    """Declare what the config names: queues (with their arguments; a queue whose
    `x-queue-type` is `stream` becomes a stream), streams, exchanges and their
    bindings.  Everything named in the config is durable.  AdminError on a bad
    argument or binding, which the caller reports as a configuration error."""
    for name in config.queues:
        admin.declare_queue(name, arguments=config.queue_arguments.get(name), now=now)
    for stream in config.streams:
        arguments: dict[str, object] = {"x-queue-type": "stream"}
        if stream.max_age:
            arguments["x-max-age"] = stream.max_age
        if stream.max_length_bytes is not None:
            arguments["x-max-length-bytes"] = stream.max_length_bytes
        if admin.registry.get(stream.name) is None:
            admin.declare_queue(stream.name, arguments=arguments, now=now)
            if stream.max_length_messages is not None:
                node = admin.registry.get(stream.name)
                assert isinstance(node, Stream)
                node.max_length_messages = stream.max_length_messages
    for exchange in config.exchanges:
        admin.declare_exchange(exchange.name, type=exchange.type, durable=exchange.durable,
                               auto_delete=exchange.auto_delete, internal=exchange.internal)
    for exchange in config.exchanges:  # after all exchanges: bindings may join them
        for b in exchange.bindings:
            admin.bind(exchange.name, b.destination, destination_kind=b.destination_kind,
                       key=b.key, arguments=b.arguments)
    for topic in config.azure_topics:  # Azure topics: a fanout exchange, a queue per subscription
        for subscription in topic.subscriptions:
            queue = admin.registry.declare_subscription(topic.name, subscription)
            if subscription in topic.rules:
                try:
                    rule = sql_rule(DEFAULT_RULE, topic.rules[subscription])
                except FilterError as exc:
                    raise AdminError(400, f"azure.topics.{topic.name}.rules.{subscription}: "
                                          f"{exc}") from None
                admin.registry.azure.set_rules(queue.name, [rule])


def check_config(config: Config) -> None:
    """Raise AdminError if the config's declarations cannot be applied."""
    apply_config(Admin(Registry()), config, now=0.0)
