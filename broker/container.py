"""Glue between engine events and nodes; synchronous, no I/O.

Theory of operation.  The transport driver owns one `ConnectionHandle` per
socket and pumps bytes through it.  After every input the handle drains its
engine's events and acts on nodes: an attach becomes a `Subscription` (we
send from a queue) or a `Publisher` (we receive into a queue, or route by the
message's `to` for the anonymous relay).  A publish may hand messages to
consumers on *other* connections; those connections' engines write the
transfer frames and their `wake` callbacks tell their drivers to flush.

Settlement rules: a publisher's delivery is settled `accepted` once a queue
holds it, `rejected` with an error when it cannot be stored or routed.  A
consumer's `accepted`/`rejected` removes the message; `released`,
`modified` and anything unsettled when its link or connection goes away
returns it to the head of its queue (delivery-count +1 where the attempt may
have been seen: modified with delivery-failed, and lost links).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from broker.codec.messaging import (
    Accepted,
    Message,
    Modified,
    Rejected,
    Released,
    Source,
    Target,
)
from broker.codec.performatives import (
    Error,
    RcvSettleMode,
    SndSettleMode,
    amqp_error,
    error_from,
)
from broker.codec.types import Symbol
from broker.config import Config
from broker.engine.connection import Connection
from broker.engine.events import (
    ConnectionClosed,
    ConnectionOpened,
    CreditChanged,
    DeliveryUpdated,
    LinkAttached,
    LinkDetached,
    MessageReceived,
)
from broker.engine.link import Delivery, Link
from broker.errors import AmqpError, Condition
from broker.nodes.base import Entry
from broker.nodes.queue import Queue, QueueFull
from broker.nodes.registry import AddressError, Node, Registry, queue_address
from broker.nodes.stream import StartAt, Stream, parse_interval, select_offset_filter

log = logging.getLogger("broker.container")
T = TypeVar("T")

PUBLISHER_CREDIT = 1000
OUTCOMES = tuple(Symbol(s) for s in ("amqp:accepted:list", "amqp:rejected:list",
                                      "amqp:released:list", "amqp:modified:list"))
ANONYMOUS_RELAY = Symbol("ANONYMOUS-RELAY")


class Subscription:
    """A consumer: our sending link reading from a queue."""

    def __init__(self, handle: ConnectionHandle, link: Link, queue: Node,
                 owns_queue: bool = False) -> None:
        self.handle = handle
        self.link = link
        self.queue = queue
        self.owns_queue = owns_queue  # a dynamic receiver's temporary queue
        self.presettled = link.snd_settle_mode == SndSettleMode.SETTLED
        # the peer's max-message-size: larger messages go to other consumers
        self.max_message_size = link.remote_max_message_size

    @property
    def credit(self) -> int:
        # A closed session window counts as no credit, so competing consumers
        # get the messages instead of this one's backlog.
        link = self.link
        return link.link_credit if link.can_send else 0

    def deliver(self, entry: Entry, message: Message) -> None:
        delivery = self.link.send(message.encode(), settled=self.presettled)
        if self.presettled:
            self.queue.settle(entry)
        else:
            delivery.context = entry
        self.handle.wake()

    def unsettled_entries(self) -> list[Entry]:
        return [d.context for d in self.link.unsettled.values() if d.context is not None]


class Publisher:
    """A producer: our receiving link storing into a queue, or routing by `to`."""

    def __init__(self, link: Link, queue: Node | None, owns_queue: bool = False) -> None:
        self.link = link
        self.queue = queue  # None: anonymous relay
        self.owns_queue = owns_queue  # a dynamic target's temporary queue


class ConnectionHandle:
    """One connection as the transport driver sees it (see transports/driver.py)."""

    def __init__(self, container: Container, conn: Connection, peer: str, transport: str,
                 wake: Callable[[], None]) -> None:
        self.container = container
        self.conn = conn
        self.peer = peer
        self.transport = transport
        self.wake = wake
        self.container_id: str | None = None

    # -- driver interface -----------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self.conn.receive_data(data, self.container.clock())
        self._process()

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    def tick(self) -> float | None:
        deadline = self.conn.tick(self.container.clock())
        self._process()
        return deadline

    @property
    def done(self) -> bool:
        return self.conn.done

    def connection_lost(self) -> None:
        if not self.conn.done:
            self.receive_data(b"")

    def close(self, error: Error | None) -> None:
        self.conn.close(error)
        self._process()
        self.wake()

    # -- events ---------------------------------------------------------------

    def _process(self) -> None:
        conn = self.conn
        c = self.container
        while True:
            event = conn.next_event()
            if event is None:
                return
            t = type(event)
            if t is MessageReceived:
                c.on_message(self, event.link, event.delivery)  # type: ignore[union-attr]
            elif t is DeliveryUpdated:
                c.on_delivery_updated(event.link, event.delivery, event.state, event.settled)  # type: ignore[union-attr]
            elif t is CreditChanged:
                c.on_credit(event.link)  # type: ignore[union-attr]
            elif t is LinkAttached:
                c.on_attach(self, event.link)  # type: ignore[union-attr]
            elif t is LinkDetached:
                c.on_detach(event.link, event.closed)  # type: ignore[union-attr]
            elif t is ConnectionOpened:
                self.container_id = event.container_id  # type: ignore[union-attr]
                log.info("connection from %s (%s) opened by %r as user %r", self.peer,
                         self.transport, event.container_id, event.user)  # type: ignore[union-attr]
            elif t is ConnectionClosed:
                c.connections.discard(self)
                log.info("connection from %s closed%s", self.peer,
                         f": {event.error.condition}" if event.error else "")  # type: ignore[union-attr]


class Container:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.registry = Registry(
            auto_create=config.auto_create,
            max_length=config.queue_max_length,
            max_length_bytes=config.queue_max_length_bytes,
            overflow=config.queue_overflow,
        )
        for name in config.queues:
            self.registry.declare_queue(name)
        for stream in config.streams:
            self.registry.declare_stream(
                stream.name,
                max_age=parse_interval(stream.max_age) if stream.max_age else None,
                max_length_bytes=stream.max_length_bytes,
                max_length_messages=stream.max_length_messages,
            )
        self.connections: set[ConnectionHandle] = set()

    def connection_made(self, peer: str, transport: str, wake: Callable[[], None]) -> ConnectionHandle:
        cfg = self.config
        conn = Connection(
            container_id=cfg.container_id,
            users=cfg.users,
            allow_anonymous=cfg.allow_anonymous,
            max_frame_size=cfg.max_frame_size,
            idle_time_out=cfg.idle_time_out,
            offered_capabilities=(ANONYMOUS_RELAY,),
            properties={Symbol("product"): "amqpws-broker"},
            now=self.clock(),
        )
        handle = ConnectionHandle(self, conn, peer, transport, wake)
        self.connections.add(handle)
        return handle

    def shutdown(self) -> None:
        """Close every connection with amqp:connection:forced."""
        for handle in list(self.connections):
            handle.close(amqp_error(Condition.CONNECTION_FORCED, "broker is shutting down"))

    # -- links --------------------------------------------------------------

    def on_attach(self, handle: ConnectionHandle, link: Link) -> None:
        if link.attach_sent or link.detach_sent:
            # The engine reports every attach in order, whatever came after it in
            # the same read; it may already have answered this one (a link error,
            # or the peer's detach/end arriving with the attach).
            return
        try:
            if link.is_sender:
                self._attach_subscription(handle, link)
            else:
                self._attach_publisher(link)
        except AmqpError as exc:
            log.info("refusing link %r: %s", link.name, exc.description)
            link.refuse(error_from(exc))

    def _attach_subscription(self, handle: ConnectionHandle, link: Link) -> None:
        source = link.remote_attach.source
        if not isinstance(source, Source):
            raise AddressError("a receiving link needs a source", condition=Condition.INVALID_FIELD)
        now = self.wall_clock()
        node: Node
        if source.dynamic:
            node = self.registry.create_temporary(handle.container_id or "anonymous")
            address: object = queue_address(node.name)
        else:
            node = self.registry.resolve(source.address)
            address = source.address
        start: StartAt | None = None
        applied: dict[object, object] = {}
        if isinstance(node, Stream):
            start, applied = select_offset_filter(source.filter, now)
            if start is None:
                start = StartAt(self.config.default_offset)
        elif source.filter:
            log.info("filters on queue %r not applied: %r", node.name, source.filter)
        try:
            self._accept_subscription(link, source, address, node, applied)
        except BaseException:
            if source.dynamic:
                self.registry.delete(node.name)
            raise
        sub = Subscription(handle, link, node, owns_queue=bool(source.dynamic))
        link.context = sub
        if isinstance(node, Stream):
            node.subscribe(sub, start, now)  # type: ignore[arg-type]
        else:
            node.add_consumer(sub, now)

    def _accept_subscription(self, link: Link, source: Source, address: object, node: Node,
                             applied: dict[object, object]) -> None:
        link.accept(
            source=Source(
                address=address,
                durable=0,
                expiry_policy=source.expiry_policy,
                timeout=source.timeout,
                dynamic=source.dynamic,
                distribution_mode=Symbol("copy" if isinstance(node, Stream) else "move"),
                filter=applied or None,
                default_outcome=Released(),
                outcomes=OUTCOMES,
                capabilities=source.capabilities,
            ),
            target=_as(Target, link.remote_attach.target),
            rcv_settle_mode=RcvSettleMode.FIRST,
        )

    def _attach_publisher(self, link: Link) -> None:
        target = link.remote_attach.target
        queue: Node | None
        if target is None or (isinstance(target, Target) and target.address is None
                              and not target.dynamic):
            queue, reply = None, Target(address=None)
        elif isinstance(target, Target) and target.dynamic:
            queue = self.registry.create_temporary("dynamic-target")
            reply = Target(address=queue_address(queue.name), dynamic=True)
        elif isinstance(target, Target):
            queue = self.registry.resolve(target.address)
            reply = Target(address=target.address, durable=0, expiry_policy=target.expiry_policy,
                           timeout=target.timeout, capabilities=target.capabilities)
        else:
            raise AddressError("a sending link needs a target", condition=Condition.INVALID_FIELD)
        dynamic = isinstance(target, Target) and target.dynamic
        try:
            link.accept(
                source=_as(Source, link.remote_attach.source),
                target=reply,
                rcv_settle_mode=RcvSettleMode.FIRST,
                max_message_size=self.config.max_message_size,
                credit_window=PUBLISHER_CREDIT,
            )
        except BaseException:
            if dynamic and queue is not None:
                self.registry.delete(queue.name)
            raise
        link.context = Publisher(link, queue, owns_queue=dynamic)

    def housekeeping(self) -> None:
        """Periodic work (the server calls it about once a second): stream retention
        by age, and dropping expired messages from queues nobody is reading."""
        now = self.wall_clock()
        for node in list(self.registry.nodes.values()):
            if isinstance(node, Stream):
                if node.max_age is not None:
                    node.trim(now)
            else:
                node.expire(now)

    def on_detach(self, link: Link, closed: bool) -> None:
        ctx = link.context
        link.context = None
        if isinstance(ctx, Subscription):
            queue = ctx.queue
            queue.remove_consumer(ctx)
            entries = ctx.unsettled_entries()
            for delivery in link.unsettled.values():
                delivery.context = None  # the engine frees the deliveries themselves
            if ctx.owns_queue:
                self._delete_temporary(queue)
            elif entries:
                queue.requeue(entries, self.wall_clock(), delivery_failed=True)
        elif isinstance(ctx, Publisher) and ctx.owns_queue and ctx.queue is not None:
            self._delete_temporary(ctx.queue)

    def _delete_temporary(self, queue: Node) -> None:
        """A dynamic node lives as long as the link that created it (§3.5.4); any other
        consumer attached to it by address is detached with amqp:resource-deleted."""
        if self.registry.get(queue.name) is queue:
            self.registry.delete(queue.name)
        if isinstance(queue, Queue):
            for other in list(queue.consumers):
                queue.remove_consumer(other)
                if isinstance(other, Subscription):
                    other.link.context = None
                    other.link.detach(amqp_error(Condition.RESOURCE_DELETED,
                                             f"temporary queue {queue.name!r} was deleted"))
                    other.handle.wake()

    def on_credit(self, link: Link) -> None:
        sub = link.context
        if not isinstance(sub, Subscription):
            return
        if sub.credit > 0:
            sub.queue.consumer_ready(sub, self.wall_clock())
        if link.drain:
            link.drained()

    # -- messages -------------------------------------------------------------

    def on_message(self, handle: ConnectionHandle, link: Link, delivery: Delivery) -> None:
        pub = link.context
        if not isinstance(pub, Publisher):
            return
        outcome = self._store(pub, delivery.payload)
        if not delivery.remote_settled:
            link.settle(delivery, outcome)

    def _store(self, pub: Publisher, payload: bytes) -> object:
        try:
            message = Message.parse(payload)
            queue = pub.queue
            if queue is None:
                to = message.section_field(0x73, 2)
                if to is None:
                    return Rejected(error=amqp_error(Condition.INVALID_FIELD,
                                                 "anonymous relay needs the message's 'to'"))
                queue = self.registry.resolve(to)
            now = self.wall_clock()
            expires_at = _expiry(message, now)
            if expires_at is not None and expires_at <= now:
                return Accepted()  # already expired: accepted and dropped, never delivered
            queue.publish(Entry(message, expires_at), now)
            return Accepted()
        except QueueFull as exc:
            return Rejected(error=amqp_error(Condition.RESOURCE_LIMIT_EXCEEDED, str(exc)))
        except AmqpError as exc:  # malformed message (decode-error), bad `to`, …
            return Rejected(error=error_from(exc))

    def on_delivery_updated(self, link: Link, delivery: Delivery, state: object,
                            settled: bool) -> None:
        sub = link.context
        entry = delivery.context
        if not isinstance(sub, Subscription) or entry is None:
            return
        kind = type(state)
        if kind not in (Accepted, Rejected, Released, Modified):
            if not settled:
                return  # e.g. received: not an outcome yet
            # settled without a terminal state: our source's default-outcome (§3.5.3)
            state, kind = Released(), Released
        delivery.context = None
        now = self.wall_clock()
        if not settled:
            link.settle(delivery, state)
            sub.handle.wake()
        if kind is Accepted or kind is Rejected:
            sub.queue.settle(entry)
        elif kind is Released:
            sub.queue.requeue([entry], now)
        else:
            mod: Modified = state  # type: ignore[assignment]
            # a stream's stored message is shared by every reader: never annotate it
            if mod.message_annotations and isinstance(sub.queue, Queue):
                merged = dict(entry.message.message_annotations or {})
                merged.update(mod.message_annotations)
                entry.message = entry.message.with_changes(message_annotations=merged)
            sub.queue.requeue([entry], now, delivery_failed=bool(mod.delivery_failed),
                              exclude=sub if mod.undeliverable_here else None)


def _as(kind: type[T], terminus: object) -> T | None:
    """The peer's terminus to echo, when it is one (anything else echoes as null)."""
    return terminus if isinstance(terminus, kind) else None


def _expiry(message: Message, now: float) -> float | None:
    """When the message expires (wall-clock seconds): header ttl or absolute-expiry-time."""
    expires: float | None = None
    ttl = message.section_field(0x70, 2)
    if isinstance(ttl, int) and ttl > 0:
        expires = now + ttl / 1000.0
    absolute = message.section_field(0x73, 8)
    if isinstance(absolute, int) and absolute > 0:
        expires = absolute / 1000.0 if expires is None else min(expires, absolute / 1000.0)
    return expires
