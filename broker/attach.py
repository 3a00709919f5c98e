"""An attach becomes a subscription (we send from a queue or stream), a
publisher (we receive into an exchange, a queue, or by each message's `to`),
or one half of a `/management` link pair.

Theory of operation.  `Attacher.attach` reads the peer's terminus, resolves
it through the registry and answers the attach; the object it leaves in
`link.context` is what the container talks to afterwards.  Each node kind
answers for itself where they differ (a stream reads from an offset and
echoes the filters it applied; a queue competes), so the container never asks
what kind of node it has.

A publisher routes each message through an exchange (the default exchange
for `/queues/NAME` and for relayed messages whose `to` is a queue), stamps it
with `x-exchange`/`x-routing-key` as RabbitMQ does, and answers with
RabbitMQ's outcomes: `accepted` once every queue reached holds it,
`released` when it reached none, `rejected` (with the queue and the reason
in `info`) when a queue refused it.

Permissions (`access.py`) are checked here, where the names are known: read
on the node a receiver reads, write on the queue or exchange a sender (or
each relayed message) targets, configure on a node an attach creates (a
dynamic node, or an unknown queue auto-created).  A refused attach gets
`amqp:unauthorized-access`, a refused relayed message is rejected with it.
A message's `user-id` must be the connection's user, as RabbitMQ requires.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeVar

from broker.access import CONFIGURE, NOTHING, READ, WRITE, AccessRefused, Identity
from broker.codec.messaging import (
    Accepted,
    Data,
    Message,
    Properties,
    Rejected,
    Released,
    Source,
    Target,
)
from broker.codec.performatives import RcvSettleMode, SndSettleMode, amqp_error, error_from
from broker.codec.types import Array, Symbol
from broker.engine.link import Link
from broker.errors import AmqpError, Condition, DecodeError
from broker.filtering import select
from broker.filters.fields import Filter
from broker.nodes.base import ENTRY_OVERHEAD, Entry, expiry_of
from broker.nodes.deadletter import cc_keys
from broker.nodes.exchange import Exchange
from broker.nodes.queue import Queue, QueueFull
from broker.nodes.registry import (
    REPLY_TO_PREFIX,
    TEMPORARY_PREFIX,
    AddressError,
    ExchangeAddress,
    Node,
    Registry,
    check_routing_key,
    parse_address,
    parse_target,
    queue_address,
)
from broker.nodes.stream import StartAt, Stream
from broker.services import cbs, entity_management, management
from broker.services.cbs import Cbs
from broker.services.entity_management import LOCK_DURATION, azure_annotated
from broker.services.management import Management

log = logging.getLogger("broker.attach")
T = TypeVar("T")

PUBLISHER_CREDIT = 1000
MANAGEMENT_CREDIT = 8  # RabbitMQ's, topped up at half
MAX_PENDING_REPLIES = 64
OUTCOMES = tuple(Symbol(s) for s in ("amqp:accepted:list", "amqp:rejected:list",
                                      "amqp:released:list", "amqp:modified:list"))
PAIRED = Symbol("paired")
COPY, MOVE = Symbol("copy"), Symbol("move")  # distribution modes (§3.5.7)
BATCH_FORMAT = 0x80013700  # Azure's message-format for a batch envelope
VOLATILE_QUEUE = Symbol("rabbitmq:volatile-queue")


class Owner(Protocol):
    """The connection side a link belongs to (the container's ConnectionHandle)."""

    container_id: str | None
    identity: Identity | None  # None: not authenticated, so nothing is allowed
    cbs_grants: dict[str, float | None]  # entity → token expiry, from Azure's $cbs

    def wake(self) -> None: ...


NOBODY = Identity("", NOTHING, mechanism="none")


def identity_of(owner: Owner) -> Identity:
    return owner.identity if owner.identity is not None else NOBODY


def check(identity: Identity, operation: str, kind: str, name: str) -> None:
    """AccessRefused as the AMQP error a refused attach or message carries."""
    try:
        identity.check(operation, kind, name)
    except AccessRefused as exc:
        raise AmqpError(str(exc), condition=Condition.UNAUTHORIZED_ACCESS) from None


class Subscription:
    """A consumer: our sending link reading from a queue or stream."""

    def __init__(self, owner: Owner, link: Link, queue: Node, owns_queue: bool = False,
                 browsing: bool = False) -> None:
        self.handle = owner
        self.link = link
        self.queue = queue
        self.owns_queue = owns_queue  # a dynamic receiver's temporary queue
        # a queue browser: copies, sent settled unless the receiver asked for
        # unsettled ones, whose outcomes change nothing
        self.browsing = browsing
        self.presettled = link.snd_settle_mode == SndSettleMode.SETTLED or (
            browsing and link.snd_settle_mode != SndSettleMode.UNSETTLED)
        # the peer's max-message-size: larger messages go to other consumers
        self.max_message_size = link.remote_max_message_size
        self.filter: Filter | None = None  # its source's filters (filtering.select)
        # a link of a connection that spoke Azure's $cbs: deliveries carry the
        # x-opt-* annotations the Azure SDKs read
        self.azure = False
        self.clock: Callable[[], float] = lambda: 0.0  # wall clock, for x-opt-locked-until
        self.lock_duration = LOCK_DURATION
        # Azure peek-lock: delivery tag → when its lock ends (container.expire_locks)
        self.locks: dict[bytes, float] = {}

    @property
    def credit(self) -> int:
        # A closed session window counts as no credit, so competing consumers
        # get the messages instead of this one's backlog.
        link = self.link
        return link.link_credit if link.can_send else 0

    def deliver(self, entry: Entry, message: Message | None) -> None:
        locked_until = None
        if self.azure:
            locked_until = None if self.presettled else self.clock() + self.lock_duration
            message = azure_annotated(message or entry.message, entry, locked_until)
        payload = entry.payload if message is None else message.encode()
        delivery = self.link.send(payload, settled=self.presettled)
        if locked_until is not None:
            self.locks[delivery.tag] = locked_until
        if self.browsing:
            pass  # the queue keeps the message
        elif self.presettled:
            self.queue.settle(entry)
        else:
            delivery.context = entry
        self.handle.wake()

    def deliver_run(self, entries: list[Entry]) -> None:
        """Several stored entries at once, as they are (a stream reader's
        window: what `credit` allowed): one send for all of them.

        The node keeps these entries whatever their outcome (base.Consumer's
        `deliver_run`), so the run is sent untracked: a reader's dispositions
        for it are dropped in the engine, with no event, which is most of the
        cost of a delivery.  The engine still tracks what a reader in
        rcv-settle-mode second waits to see settled; those deliveries carry
        their entry, to be settled as usual."""
        if self.azure or self.browsing:
            for entry in entries:
                self.deliver(entry, None)
            return
        tracked = self.link.send_run([e.payload for e in entries], settled=self.presettled,
                                     track=False)
        if self.presettled:
            for entry in entries:
                self.queue.settle(entry)
        else:
            for delivery, entry in zip(tracked, entries):  # none unless the reader settles second
                delivery.context = entry
        self.handle.wake()

    def node_deleted(self) -> None:
        link = self.link
        link.context = None
        for delivery in link.unsettled.values():
            delivery.context = None
        link.detach(amqp_error(Condition.RESOURCE_DELETED,
                               f"queue {self.queue.name!r} was deleted"))
        self.handle.wake()

    def unsettled_entries(self) -> list[Entry]:
        return [d.context for d in self.link.unsettled.values() if d.context is not None]


class Publisher:
    """A producer: our receiving link routing into exchanges and queues."""

    def __init__(self, registry: Registry, link: Link | None, *, node: Node | None = None,
                 exchange: Exchange | None = None, key: str = "",
                 owns_queue: bool = False, identity: Identity = NOBODY) -> None:
        self.registry = registry
        self.identity = identity
        self.user_id = identity.user.encode("utf-8")
        # Azure keys: each relayed message's entity needs a $cbs token too
        self.entity_check: Callable[[str], None] | None = None
        # an Azure client's (it put a $cbs token): a message sent without a message-id
        # gets one, as Service Bus gives every message (the Node SDK's lock renewer
        # is keyed by it), and every message is kept as a durable one
        self.azure = False
        self.link = link
        self.node = node  # a queue target: no routing needed
        self.exchange = exchange  # an exchange target; neither: anonymous relay
        self.key = key
        self.owns_queue = owns_queue  # a dynamic target's temporary queue
        self.annotations = (registry.routing_annotations(exchange.name, key) if exchange
                            else registry.routing_annotations("", node.name) if node else None)

    def store(self, payload: bytes, now: float, message_format: int = 0) -> object:
        """Route one message (or an Azure batch: each of its messages, all or
        none); returns the outcome for the publisher."""
        try:
            if message_format == BATCH_FORMAT:
                return self._store_batch(payload, now)
            routed = self._route(Message.parse(payload), now)
            if not isinstance(routed, tuple):
                return routed
            nodes, message, expires_at = routed
            return self._commit(nodes, message, expires_at, now)
        except AmqpError as exc:  # malformed message (decode-error), bad `to`, …
            return Rejected(error=error_from(exc))

    def _route(self, message: Message, now: float) -> tuple[list[Node], Message,
                                                            float | None] | object:
        """Where a message goes, and the message as stored; or the outcome now
        (released: nowhere; accepted: already expired; rejected: user-id)."""
        registry = self.registry
        if self.azure and message.section_field(0x73, 0) is None:
            message = _with_message_id(message)
        user_id = message.section_field(0x73, 1)
        if user_id is not None and user_id != self.user_id:
            return Rejected(error=amqp_error(
                Condition.UNAUTHORIZED_ACCESS,
                f"user_id property set to {_shown(user_id)} but authenticated user was "
                f"'{self.identity.user}'"))
        node, exchange, key = self.node, self.exchange, self.key
        annotations = self.annotations
        if node is None and exchange is None:
            node, exchange, key = self._relay_target(message)
            annotations = None
        elif node is not None and node.deleted:
            node = registry.nodes.get(node.name)
            if node is None:
                return Released()
        if exchange is not None and registry.exchanges.get(exchange.name) is not exchange:
            # deleted, perhaps declared again: publishers go by name, as to queues
            exchange = _exchange(registry, exchange.name)
        keys = [key]
        for cc in cc_keys(message):
            check_routing_key(cc)
            keys.append(cc)
        if node is not None and len(keys) == 1:
            nodes: list[Node] = [node]
        else:
            nodes = registry.route(exchange or registry.exchanges[""], keys, message)
            if nodes and registry.azure.has_rules:
                nodes = registry.azure.admitted(nodes, message, now)
                if not nodes:
                    return Accepted()  # as Service Bus: no subscription's rule took it
        if not nodes:
            return Released()
        expires_at = expiry_of(message, now)
        if expires_at is not None and expires_at < now:
            return Accepted()  # already expired: accepted and dropped, never delivered
        values, encoded = annotations or registry.routing_annotations(
            exchange.name if exchange is not None else "", key)
        # an Azure client's message is kept like a durable one (Service Bus keeps all)
        message = message.annotate(values, encoded, registry.first_delivery_header(
            message, durable=self.azure))
        return nodes, message, expires_at

    def _commit(self, nodes: list[Node], message: Message, expires_at: float | None,
                now: float) -> object:
        registry = self.registry
        refused: QueueFull | None = None
        for target in nodes:
            try:
                target.publish(Entry(message, expires_at), now)
            except QueueFull as exc:
                refused = exc
            else:  # the memory alarm's running count; housekeeping makes it exact
                registry.held_bytes += len(message.payload) + ENTRY_OVERHEAD
        if refused is not None:
            return Rejected(error=amqp_error(
                Condition.RESOURCE_LIMIT_EXCEEDED, str(refused),
                info={Symbol("queue"): refused.queue, Symbol("reason"): "maxlen"}))
        return Accepted()

    def _store_batch(self, payload: bytes, now: float) -> object:
        """Azure's batch (message-format 0x80013700): an envelope whose data
        sections each hold one encoded message.  Every message is routed first;
        if a queue could not take its share, none is stored."""
        envelope = Message.parse(payload)
        inner = [Message.parse(bytes(s.value)) for s in envelope.body if isinstance(s, Data)]
        if not inner:
            return Rejected(error=amqp_error(Condition.DECODE_ERROR,
                                             "a batch envelope without messages"))
        routed = []
        share: dict[int, tuple[Node, int, int]] = {}  # id(queue) → (queue, count, bytes)
        for message in inner:
            result = self._route(message, now)
            if not isinstance(result, tuple):
                if isinstance(result, Rejected):
                    return result  # one bad message refuses the batch
                continue  # released (nowhere) or expired: as each alone would be
            routed.append(result)
            for node in result[0]:
                _, count, size = share.get(id(node), (node, 0, 0))
                share[id(node)] = (node, count + 1, size + len(result[1].payload))
        for node, count, size in share.values():
            if isinstance(node, Queue) and not node.has_room(count, size):
                return Rejected(error=amqp_error(
                    Condition.RESOURCE_LIMIT_EXCEEDED,
                    f"queue {node.name!r} cannot take a batch of {count}",
                    info={Symbol("queue"): node.name, Symbol("reason"): "maxlen"}))
        for nodes, message, expires_at in routed:
            self._commit(nodes, message, expires_at, now)
        return Accepted()

    def _relay_target(self, message: Message) -> tuple[Node | None, Exchange | None, str]:
        to = message.section_field(0x73, 2)
        if to is None:
            raise AddressError("anonymous relay needs the message's 'to'",
                               condition=Condition.INVALID_FIELD)
        target = parse_target(to)
        if isinstance(target, ExchangeAddress):
            check(self.identity, WRITE, "exchange", target.exchange)
            return None, _exchange(self.registry, target.exchange), target.key
        if self.entity_check is not None:
            self.entity_check(target)
        _check_queue_access(self.registry, self.identity, WRITE, target)
        return self.registry.queue_for(target), None, target


def _with_message_id(message: Message) -> Message:
    """The message with a fresh message-id (its bare part encoded again)."""
    properties = message.properties
    properties = Properties(message_id=str(uuid.uuid4())) if properties is None else \
        dataclasses.replace(properties, message_id=str(uuid.uuid4()))
    return Message.create(message.body, header=message.header,
                          delivery_annotations=message.delivery_annotations,
                          message_annotations=message.message_annotations,
                          properties=properties,
                          application_properties=message.application_properties,
                          footer=message.footer)


def _check_new_node(registry: Registry, identity: Identity, operation: str,
                    node: Node) -> None:
    """A dynamic node just made for a link: configure and `operation` on it, or
    it goes again before the refusal."""
    try:
        check(identity, CONFIGURE, "queue", node.name)
        check(identity, operation, "queue", node.name)
    except AmqpError:
        registry.delete(node.name)
        raise


def _check_queue_access(registry: Registry, identity: Identity, operation: str,
                        name: str) -> None:
    """`operation` on queue `name`, and configure too when using it would
    auto-create it."""
    if name not in registry.nodes and registry.auto_create:
        check(identity, CONFIGURE, "queue", name)
    check(identity, operation, "queue", name)


def _shown(user_id: object) -> str:
    if isinstance(user_id, bytes):
        return repr(user_id.decode("utf-8", "replace"))
    return repr(user_id)


def _exchange(registry: Registry, name: str) -> Exchange:
    exchange = registry.exchanges.get(name)
    if exchange is None:
        raise AddressError(f"no exchange {name!r} in vhost '/'")
    if exchange.internal:
        raise AddressError(f"exchange {name!r} is internal: it cannot be published to",
                           condition=Condition.UNAUTHORIZED_ACCESS)
    return exchange


class Service(Protocol):
    """A request/response node (`/management`, `$cbs`)."""

    def handle(self, payload: bytes, *, owner: object, now: float,
               identity: Identity | None = None) -> tuple[object, bytes]: ...


class ServicePair:
    """The two links of a service: `/management`'s pair (same name) or `$cbs`'s
    (same address).  Requests arrive on our receiver, answers leave on our
    sender, waiting here for its credit."""

    def __init__(self, owner: Owner, service: Service, key: str = "") -> None:
        self.key = key  # under which the connection keeps it (a name or an address)
        self.owner = owner
        self.service = service
        self.requests: Link | None = None
        self.replies: Link | None = None
        self.pending: deque[bytes] = deque()

    def on_request(self, payload: bytes, now: float) -> object:
        """Answer one request; returns the outcome for the request's delivery.
        Answers wait for the reply link's credit, but not without bound: a client
        that keeps asking and never reads loses its request link."""
        if len(self.pending) >= MAX_PENDING_REPLIES and self.requests is not None:
            self.requests.detach(amqp_error(
                Condition.RESOURCE_LIMIT_EXCEEDED,
                f"{len(self.pending)} management answers wait for credit on the reply link"))
            self.owner.wake()
            return Released()
        try:
            _, response = self.service.handle(payload, owner=self.owner, now=now,
                                              identity=identity_of(self.owner))
        except DecodeError as exc:
            log.info("malformed management request: %s", exc)
            return Rejected(error=amqp_error(Condition.DECODE_ERROR, str(exc)))
        self.pending.append(response)
        self.flush()
        return Accepted()

    def flush(self) -> None:
        replies = self.replies
        while self.pending and replies is not None and replies.can_send:
            replies.send(self.pending.popleft(), settled=True, tag=b"")
        self.owner.wake()


class Attacher:
    """Turns attaches into subscriptions, publishers and management pairs."""

    def __init__(self, registry: Registry, service: Management, *, default_offset: str,
                 max_message_size: int, wall_clock: Callable[[], float],
                 cbs_service: Cbs | None = None, entity_tokens: bool = False) -> None:
        self.registry = registry
        self.service = service
        self.cbs = cbs_service  # Azure's $cbs node
        self.lock_duration = LOCK_DURATION  # Azure's peek-lock
        # renew Azure locks of a connection by their tags: expiry or None (lost)
        self.renew_locks: Callable[[object, list[bytes], float], list[float | None]] | None = \
            None
        # with Azure keys configured, an entity needs a token put on $cbs first
        self.entity_tokens = entity_tokens
        self.default_offset = default_offset
        self.max_message_size = max_message_size
        self.wall_clock = wall_clock
        self.publisher_credit = PUBLISHER_CREDIT  # 0 while the memory alarm is on

    def attach(self, owner: Owner, link: Link, pairs: dict[str, ServicePair]) -> None:
        remote = link.remote_attach
        terminus = remote.source if link.is_sender else remote.target
        address = terminus.address if isinstance(terminus, (Source, Target)) else None
        if address == management.ADDRESS:
            self._management(owner, link, pairs)
        elif address == cbs.ADDRESS and self.cbs is not None:
            self._cbs(owner, link, pairs)
        elif isinstance(address, str) and self.cbs is not None and \
                address.endswith(entity_management.SUFFIX):
            self._entity_management(owner, link, pairs, address)
        elif link.is_sender:
            self._subscription(owner, link)
        else:
            self._publisher(owner, link)

    def _check_entity_token(self, owner: Owner, name: str, now: float) -> None:
        """With Azure keys configured, an entity needs a valid token put on $cbs."""
        if not self.entity_tokens:
            return
        grants = owner.cbs_grants
        for entity in (name, name.split("/", 1)[0]):  # TOPIC/Subscriptions/SUB: the topic
            if entity in grants or "" in grants:
                expiry = grants.get(entity, grants.get(""))
                if expiry is None or expiry > now:
                    return
        raise AmqpError(f"no valid token for entity {name!r}: put one on $cbs first",
                        condition=Condition.UNAUTHORIZED_ACCESS)

    def _entity_management(self, owner: Owner, link: Link, pairs: dict[str, ServicePair],
                           address: str) -> None:
        """Azure's `ENTITY/$management` pair, paired by address as `$cbs` is."""
        entity = parse_address(address)[: -len(entity_management.SUFFIX)]
        self._check_entity_token(owner, entity, self.wall_clock())
        check(identity_of(owner), READ, "queue", entity)  # each operation checks more
        pair = pairs.get(address)
        if pair is None or (pair.replies if link.is_sender else pair.requests) is not None:
            pair = pairs[address] = ServicePair(
                owner, entity_management.EntityManagement(self.registry, entity,
                                                          renew=self.renew_locks), key=address)
        self._accept_half(pair, link, {})

    def _cbs(self, owner: Owner, link: Link, pairs: dict[str, ServicePair]) -> None:
        """Azure's `$cbs` pair: both halves on that address, with random names,
        so paired by the address; a second pair on the connection replaces it."""
        assert self.cbs is not None
        pair = pairs.get(cbs.ADDRESS)
        if pair is None or (pair.replies if link.is_sender else pair.requests) is not None:
            pair = pairs[cbs.ADDRESS] = ServicePair(owner, self.cbs, key=cbs.ADDRESS)
        self._accept_half(pair, link, {})

    # -- management -------------------------------------------------------------------

    def _management(self, owner: Owner, link: Link, pairs: dict[str, ServicePair]) -> None:
        remote = link.remote_attach
        if not (remote.properties or {}).get(PAIRED):
            raise AmqpError("a /management link needs the link property 'paired: true'",
                            condition=Condition.INVALID_FIELD)
        pair = pairs.get(link.name)
        if pair is None:
            pair = pairs[link.name] = ServicePair(owner, self.service, key=link.name)
        if (pair.replies if link.is_sender else pair.requests) is not None:
            raise AmqpError(f"link pair {link.name!r} already has that half",
                            condition=Condition.NOT_ALLOWED)
        self._accept_half(pair, link, {PAIRED: True})

    def _accept_half(self, pair: ServicePair, link: Link,
                     properties: dict[object, object]) -> None:
        remote = link.remote_attach
        if link.is_sender:
            link.accept(source=_as(Source, remote.source), target=_as(Target, remote.target),
                        snd_settle_mode=SndSettleMode.SETTLED, properties=properties or None)
            pair.replies = link
        else:
            link.accept(source=_as(Source, remote.source), target=_as(Target, remote.target),
                        rcv_settle_mode=RcvSettleMode.FIRST,
                        max_message_size=self.max_message_size,
                        credit_window=MANAGEMENT_CREDIT, properties=properties or None)
            pair.requests = link
        link.context = pair

    # -- consumers --------------------------------------------------------------------

    def _subscription(self, owner: Owner, link: Link) -> None:
        source = link.remote_attach.source
        if not isinstance(source, Source):
            raise AddressError("a receiving link needs a source", condition=Condition.INVALID_FIELD)
        registry = self.registry
        now = self.wall_clock()
        node: Node
        identity = identity_of(owner)
        if source.dynamic:
            volatile = VOLATILE_QUEUE in _symbols(source.capabilities)
            node = registry.create_temporary(
                owner.container_id or "anonymous",
                prefix=REPLY_TO_PREFIX if volatile else TEMPORARY_PREFIX)
            address: object = queue_address(node.name)
            _check_new_node(registry, identity, READ, node)
        else:
            name = parse_address(source.address)
            self._check_entity_token(owner, name, now)
            _check_queue_access(registry, identity, READ, name)
            node = registry.resolve(source.address)
            address = source.address
            owner_of = registry.info[node.name].exclusive_owner
            if owner_of is not None and owner_of is not owner:
                raise AmqpError(f"queue {node.name!r} is exclusive to another connection",
                                condition=Condition.RESOURCE_LOCKED)
        browsing = isinstance(node, Queue) and (node.browse_only or
                                                source.distribution_mode == COPY)
        try:
            selection = select(source.filter, stream=isinstance(node, Stream), now=now)
        except AmqpError:
            if source.dynamic:
                registry.delete(node.name)
            raise
        applied = selection.applied
        start = selection.start
        if isinstance(node, Stream) and start is None:
            start = StartAt(self.default_offset)
        try:
            link.accept(
                source=Source(
                    address=address,
                    durable=0,
                    expiry_policy=source.expiry_policy,
                    timeout=source.timeout,
                    dynamic=source.dynamic,
                    distribution_mode=COPY if isinstance(node, Stream) or browsing else MOVE,
                    filter=applied or None,
                    default_outcome=Released(),
                    outcomes=OUTCOMES,
                    capabilities=source.capabilities,
                ),
                target=_as(Target, link.remote_attach.target),
                # second is served as asked: our settlement answers the consumer's
                # outcome (with a data directory, once its ack is written)
                rcv_settle_mode=RcvSettleMode.SECOND
                if link.remote_attach.rcv_settle_mode == RcvSettleMode.SECOND
                else RcvSettleMode.FIRST,
            )
        except BaseException:
            if source.dynamic:
                registry.delete(node.name)
            raise
        sub = Subscription(owner, link, node, owns_queue=bool(source.dynamic), browsing=browsing)
        sub.filter = selection.filter
        sub.azure = bool(owner.cbs_grants)  # it put a token on $cbs: an Azure client
        sub.clock = self.wall_clock
        sub.lock_duration = self.lock_duration
        link.context = sub
        registry.consumer_added(node, now)
        if isinstance(node, Stream):
            node.subscribe(sub, start or StartAt(self.default_offset), now)
        elif browsing:
            node.add_browser(sub, now)
        else:
            node.add_consumer(sub, now)

    # -- producers --------------------------------------------------------------------

    def _publisher(self, owner: Owner, link: Link) -> None:
        identity = identity_of(owner)
        target = link.remote_attach.target
        registry = self.registry
        node: Node | None = None
        exchange: Exchange | None = None
        key = ""
        dynamic = isinstance(target, Target) and bool(target.dynamic)
        if target is None or (isinstance(target, Target) and target.address is None
                              and not target.dynamic):
            reply = Target(address=None)
        elif isinstance(target, Target) and target.dynamic:
            node = registry.create_temporary("dynamic-target")
            _check_new_node(registry, identity, WRITE, node)
            reply = Target(address=queue_address(node.name), dynamic=True)
        elif isinstance(target, Target):
            resolved = parse_target(target.address)
            if isinstance(resolved, ExchangeAddress):
                check(identity, WRITE, "exchange", resolved.exchange)
                exchange, key = _exchange(registry, resolved.exchange), resolved.key
            elif (topic := registry.topic(resolved)) is not None:
                self._check_entity_token(owner, resolved, self.wall_clock())
                check(identity, WRITE, "exchange", resolved)
                exchange = topic  # an Azure topic: every subscription gets a copy
            else:
                self._check_entity_token(owner, resolved, self.wall_clock())
                _check_queue_access(registry, identity, WRITE, resolved)
                node = registry.queue_for(resolved)
            reply = Target(address=target.address, durable=0, expiry_policy=target.expiry_policy,
                           timeout=target.timeout, capabilities=target.capabilities)
        else:
            raise AddressError("a sending link needs a target", condition=Condition.INVALID_FIELD)
        try:
            link.accept(
                source=_as(Source, link.remote_attach.source),
                target=reply,
                rcv_settle_mode=RcvSettleMode.FIRST,
                max_message_size=self.max_message_size,
                credit_window=self.publisher_credit,
            )
        except BaseException:
            if dynamic and node is not None:
                registry.delete(node.name)
            raise
        publisher = Publisher(registry, link, node=node, exchange=exchange, key=key,
                              owns_queue=dynamic, identity=identity)
        publisher.azure = bool(owner.cbs_grants)
        if self.entity_tokens and node is None and exchange is None:
            publisher.entity_check = lambda name: self._check_entity_token(
                owner, name, self.wall_clock())
        link.context = publisher


def _as(kind: type[T], terminus: object) -> T | None:
    """The peer's terminus to echo, when it is one (anything else echoes as null)."""
    return terminus if isinstance(terminus, kind) else None


def _symbols(value: object) -> tuple[object, ...]:
    """A capabilities field: one symbol or an array of them."""
    if isinstance(value, Array):
        return value.items
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return () if value is None else (value,)
