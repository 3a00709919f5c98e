"""Glue between engine events and nodes, services and the admin API;
synchronous, no I/O.

Theory of operation.  The transport driver owns one `ConnectionHandle` per
socket and pumps bytes through it.  After every input the handle drains its
engine's events and hands them on: an attach goes to `attach.Attacher`, which
leaves a `Subscription`, a `Publisher` or a `/management` pair in
`link.context`; messages, credit, dispositions and detaches then go to that
object.  A publish may hand messages to consumers on *other* connections;
those connections' engines write the transfer frames and their `wake`
callbacks tell their drivers to flush.

Settlement rules: a publisher's delivery is settled with the outcome its
`Publisher` routed it to.  A consumer's `accepted` removes the message;
`rejected` removes it through the queue's dead-letter exchange, if any;
`released`, `modified` and anything unsettled when its link or connection
goes away returns it to the head of its queue (delivery-count +1 where the
attempt may have been seen: modified with delivery-failed, and lost links).
`modified` with undeliverable-here dead-letters the message on a queue that
has a dead-letter exchange (RabbitMQ's rule); elsewhere it only keeps the
message from that consumer (Qpid's and Artemis's); on an Azure peek-lock
link it defers the message (`nodes/azure.py` keeps it by sequence number).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from broker import __version__
from broker.access import Access, CredentialsRefused, Identity, load_access
from broker.admin import Admin, AdminError, apply_config
from broker.attach import PUBLISHER_CREDIT, Attacher, Publisher, ServicePair, Subscription
from broker.codec.messaging import Accepted, Modified, Rejected, Released
from broker.codec.performatives import Error, amqp_error, error_from
from broker.codec.types import Symbol
from broker.config import Config, ConfigError, memory_limit, physical_memory
from broker.engine.connection import Connection
from broker.engine.events import (
    ConnectionClosed,
    ConnectionOpened,
    CreditChanged,
    DeliveriesUpdated,
    DeliveryUpdated,
    LinkAttached,
    LinkDetached,
    MessageReceived,
)
from broker.engine.link import Delivery, Link
from broker.engine.sasl import ANONYMOUS, EXTERNAL, PLAIN, Refused, printable
from broker.errors import AmqpError, Condition
from broker.memory_alarm import AlarmChange, MemoryAlarm
from broker.nodes.base import Entry
from broker.nodes.queue import Queue
from broker.nodes.registry import Node, Registry
from broker.observe import Observer
from broker.peerlog import PeerLog
from broker.services.cbs import Cbs
from broker.services.http_api import HttpRequest, HttpResponse
from broker.services.management import Management
from broker.store.durable import Batch, Store
from broker.store.recovery import recover

log = logging.getLogger("broker.container")

AZURE_DEAD_LETTER = "com.microsoft:dead-letter"
# how Azure says a message went to the dead-letter queue for failing too often
MAX_DELIVERIES = Rejected(error=Error(condition=Symbol(AZURE_DEAD_LETTER),
                                      info={"DeadLetterReason": "MaxDeliveryCountExceeded"}))


def _condition(state: object) -> str | None:
    error = getattr(state, "error", None)
    condition = getattr(error, "condition", None)
    return None if condition is None else str(condition)

ANONYMOUS_RELAY = "ANONYMOUS-RELAY"
LINK_PAIR = "LINK_PAIR_V1_0"  # RabbitMQ's /management link pairs
# the RabbitMQ whose client-gated features we serve: stream filters (4.1), the SQL
# filter and Direct Reply-To (4.2); not 4.3's single-active-consumer link state
RABBITMQ_VERSION = "4.2.0"
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
        self.user: str | None = None
        self.opened = False
        self.vhost: str | None = None
        self.management_pairs: dict[str, ServicePair] = {}  # and $cbs's, under "$cbs"
        self.cbs_grants: dict[str, float | None] = {}  # entity → expiry (Azure's $cbs)
        self.identity: Identity | None = None  # set by SASL (see Credentials)
        self.bytes_in = 0  # for the console and /metrics
        self.bytes_out = 0
        self.opened_at: float | None = None  # wall clock
        self.token: bytes | None = None  # the last token from PUT /auth/tokens

    # -- driver interface -----------------------------------------------------

    def receive_data(self, data: bytes | memoryview) -> bool:
        """True: the bytes were a bare heartbeat, with nothing to tick or send
        (see Connection.receive_data)."""
        self.bytes_in += len(data)
        conn = self.conn
        if conn.receive_data(data, self.container.clock()):
            return True
        if conn.events:
            self._process_guarded()
        return False

    def data_to_send(self) -> bytes | bytearray:
        data = self.conn.data_to_send()
        self.bytes_out += len(data)
        return data

    def tick(self) -> float | None:
        c = self.container
        deadline = self.conn.tick(c.clock())
        expires_at = self.identity.expires_at if self.identity is not None else None
        if expires_at is not None and not self.conn.done:
            left = expires_at - c.wall_clock()
            if left <= 0:
                # RabbitMQ 4.1's rule: a token that expires without a refresh ends
                # the connection
                c.peer_log.info(self.peer, "token of user %s expired: connection closed",
                                printable(self.identity.user))  # type: ignore[union-attr]
                self.close(amqp_error(Condition.UNAUTHORIZED_ACCESS, "the token expired"))
            else:
                at = c.clock() + left
                deadline = at if deadline is None else min(deadline, at)
        if self.conn.events:  # a tick that only moved a timer (nearly all) has none
            self._process_guarded()
        return deadline

    def _process_guarded(self) -> None:
        """The container's own bugs meet the same boundary as the engine's: the
        peer gets close(amqp:internal-error), then the exception goes on to the
        driver, which flushes that close and logs the traceback once."""
        try:
            self._process()
        except Exception:
            self.conn.close(amqp_error(Condition.INTERNAL_ERROR, "internal error"))
            raise
        self.container._signal_store()

    @property
    def done(self) -> bool:
        return self.conn.done

    def has_output(self) -> bool:
        """Something for the driver's writer: frames, or the end."""
        return self.conn.has_output or self.conn.done

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
        c.input_time = None  # read once per input, not once per message (see on_message)
        while conn.events:  # a handler's own events come in the next round
            for event in conn.take_events():  # not next_event(): a call less each
                t = type(event)
                if t is MessageReceived:
                    c.on_message(self, event.link, event.delivery)  # type: ignore[union-attr]
                elif t is DeliveryUpdated:
                    c.on_delivery_updated(event.link, event.delivery, event.state, event.settled)  # type: ignore[union-attr]
                elif t is DeliveriesUpdated:
                    c.on_deliveries_updated(event.deliveries, event.state, event.settled)  # type: ignore[union-attr]
                elif t is CreditChanged:
                    c.on_credit(event.link)  # type: ignore[union-attr]
                elif t is LinkAttached:
                    c.on_attach(self, event.link)  # type: ignore[union-attr]
                elif t is LinkDetached:
                    c.on_detach(event.link, event.closed)  # type: ignore[union-attr]
                elif t is ConnectionOpened:
                    self.container_id = event.container_id  # type: ignore[union-attr]
                    self.user = event.user  # type: ignore[union-attr]
                    self.vhost = event.hostname  # type: ignore[union-attr]
                    self.opened = True
                    self.opened_at = c.wall_clock()
                    log.info("connection from %s (%s) opened by %s as user %s", self.peer,
                             self.transport, printable(event.container_id),  # type: ignore[union-attr]
                             printable(event.user))  # type: ignore[union-attr]
                    c.connection_opened(self)
                elif t is ConnectionClosed:
                    if event.error is not None:  # type: ignore[union-attr]
                        c.stats.connection_error(str(event.error.condition))  # type: ignore[union-attr]
                    c.connection_closed(self)
                    log.info("connection from %s closed%s", self.peer,
                             f": {event.error.condition}" if event.error else "")  # type: ignore[union-attr]


class Credentials:
    """The engine's SASL credential checker for one connection, over `Access`.

    It knows what the transport established before SASL: a verified client
    certificate (EXTERNAL is offered) or a bearer token from the WebSocket
    upgrade (then only ANONYMOUS is offered, and it means the token's user).
    The identity it accepts is kept on the connection's handle, for the
    permission checks that follow."""

    def __init__(self, access: Access, wall_clock: Callable[[], float], *,
                 tls_subject: str | None, bearer: Identity | None) -> None:
        self.access = access
        self.wall_clock = wall_clock
        self.tls_subject = tls_subject
        self.bearer = bearer
        self.handle: ConnectionHandle | None = None

    def mechanisms(self) -> tuple[Symbol, ...]:
        if self.bearer is not None:
            return (ANONYMOUS,)
        access = self.access
        mechs = [EXTERNAL] if self.tls_subject is not None else []
        if access.users or access.tokens is not None:
            mechs.append(PLAIN)
        if access.allow_anonymous:
            mechs.append(ANONYMOUS)
        return tuple(mechs)

    def _accept(self, identity: Identity) -> str:
        if self.handle is not None:
            self.handle.identity = identity
        return identity.user

    def plain(self, authzid: str, user: str, password: str) -> str:
        try:
            return self._accept(self.access.plain(authzid, user, password, self.wall_clock()))
        except CredentialsRefused as exc:
            raise Refused(str(exc)) from None

    def anonymous(self) -> str:
        return self._accept(self.bearer if self.bearer is not None else self.access.anonymous())

    def external(self, authzid: str) -> str:
        subject = self.tls_subject
        if subject is None:
            raise Refused("EXTERNAL needs a verified client certificate")
        if authzid and authzid != subject:
            raise Refused(f"certificate of {printable(subject)} may not act as "
                          f"{printable(authzid)}")
        try:
            return self._accept(self.access.external(subject))
        except CredentialsRefused as exc:
            raise Refused(str(exc)) from None


class Container:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        try:
            self.access: Access = load_access(config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.registry = Registry(
            auto_create=config.auto_create,
            max_length=config.queue_max_length,
            max_length_bytes=config.queue_max_length_bytes,
            overflow=config.queue_overflow,
        )
        self.admin = Admin(self.registry, node_name=config.container_id,
                           connections=self.list_connections)
        self.management = Management(self.admin, on_token=self._on_token)
        self.cbs = Cbs(keys=config.azure_keys, tokens=self.access.tokens,
                       on_grant=self._on_cbs_grant)
        self.attacher = Attacher(self.registry, self.management,
                                 default_offset=config.default_offset,
                                 max_message_size=config.max_message_size,
                                 wall_clock=wall_clock, cbs_service=self.cbs,
                                 entity_tokens=bool(config.azure_keys))
        self.attacher.lock_duration = config.azure_lock_duration
        self.attacher.renew_locks = self.renew_locks
        self.registry.azure.lock_duration = config.azure_lock_duration
        self.registry.azure.max_delivery_count = config.azure_max_delivery_count
        self.locking: set[Subscription] = set()  # Azure peek-lock subscriptions
        self.connections: set[ConnectionHandle] = set()
        self._token_warned = False
        self._cbs_warned = False
        # the memory alarm: publishers get no new credit while queued messages
        # (or, as a backstop, the process) hold more than the high watermark
        high = memory_limit(config, physical_memory())
        self.memory = MemoryAlarm(high) if high else None
        self.publishers: dict[Link, ConnectionHandle] = {}
        self.peer_log = PeerLog(clock, log)
        self.stopping = False
        self.listener_urls: list[str] = []  # set by the server once bound
        self.stats = Observer(self)
        self.http_api = self.stats.http_api()
        self._identity = self.identity()  # the same open.properties for every connection
        # --data-dir: what the store holds comes back first, then the config's
        # declarations (idempotent for what came back)
        self.store = store
        self.recovered = recover(store, self.admin, wall_clock()) if store is not None else None
        self.input_time: float | None = None  # the wall clock, read once per input
        self._declare_from_config()

    def _declare_from_config(self) -> None:
        """Queues, streams, exchanges and bindings named in the config, through the
        admin API like any other declaration."""
        try:
            apply_config(self.admin, self.config, now=self.wall_clock())
        except AdminError as exc:
            raise ConfigError(exc.message) from None

    def connection_made(self, peer: str, transport: str, wake: Callable[[], None], *,
                        tls_subject: str | None = None,
                        bearer: Identity | None = None) -> ConnectionHandle:
        """A new socket.  `tls_subject`: the identity of a verified client
        certificate (SASL EXTERNAL); `bearer`: the identity of a token the
        WebSocket upgrade carried (the connection is that user)."""
        cfg = self.config
        credentials = Credentials(self.access, self.wall_clock, tls_subject=tls_subject,
                                  bearer=bearer)
        conn = Connection(
            container_id=cfg.container_id,
            credentials=credentials,
            max_frame_size=cfg.max_frame_size,
            channel_max=cfg.channel_max,
            handle_max=cfg.handle_max,
            idle_time_out=cfg.idle_time_out,
            handshake_timeout=cfg.handshake_timeout,
            offered_capabilities=(ANONYMOUS_RELAY, LINK_PAIR),
            properties=self._identity,
            now=self.clock(),
            trace=f"{transport} {peer}" if cfg.trace_frames else None,
        )
        handle = ConnectionHandle(self, conn, peer, transport, wake)
        credentials.handle = handle
        self.stats.connections_opened += 1
        self.connections.add(handle)
        return handle

    def verify_bearer(self, token: str) -> Identity:
        """A token from a WebSocket upgrade; raises CredentialsRefused with the reason."""
        return self.access.bearer(token, self.wall_clock())

    def identity(self) -> dict[object, object]:
        """`open.properties` as RabbitMQ's (symbol keys, string values).  RabbitMQ's
        own clients refuse any `product` but RabbitMQ: `rabbitmq_compat` says so,
        and `information` still tells what this is."""
        compat = self.config.rabbitmq_compat
        return {
            Symbol("product"): "RabbitMQ" if compat else "amqpws-broker",
            Symbol("version"): RABBITMQ_VERSION if compat else __version__,
            Symbol("platform"): "Python",
            Symbol("cluster_name"): self.config.container_id,
            Symbol("node"): self.config.container_id,
            Symbol("information"): f"amqpws-broker {__version__}: a local AMQP 1.0 broker over "
                                   f"TCP and WebSocket, compatible with RabbitMQ "
                                   f"{RABBITMQ_VERSION}'s AMQP 1.0",
        }

    def connection_opened(self, handle: ConnectionHandle) -> None:
        """Connection limits, in all and per user: the spec's condition for a
        limit, on that connection only."""
        cfg = self.config
        if cfg.max_connections is not None:
            opened = sum(1 for h in self.connections if h.opened)
            if opened > cfg.max_connections:
                self._refuse(handle, f"the broker allows {cfg.max_connections} connections")
                return
        if cfg.max_connections_per_user is not None:
            mine = sum(1 for h in self.connections if h.opened and h.user == handle.user)
            if mine > cfg.max_connections_per_user:
                self._refuse(handle, f"user {printable(handle.user)} may have "
                                     f"{cfg.max_connections_per_user} connections")

    def _refuse(self, handle: ConnectionHandle, why: str) -> None:
        self.peer_log.info(handle.peer, "connection refused: %s", why)
        handle.close(amqp_error(Condition.RESOURCE_LIMIT_EXCEEDED, why))

    def connection_closed(self, handle: ConnectionHandle) -> None:
        if handle in self.connections:
            self.stats.closed(handle)
        self.connections.discard(handle)
        self.registry.owner_gone(handle)
        conn = handle.conn
        if conn.handshake_timed_out:
            self.peer_log.info(handle.peer, "handshake not completed within %g s",
                                self.config.handshake_timeout)
        elif conn.sasl.outcome not in (None, 0):
            self.stats.auth_failures += 1
            self.peer_log.info(handle.peer, "authentication failed: %s", conn.sasl.reason)

    def list_connections(self) -> list[dict[str, object]]:
        return [self.stats.describe(h) for h in sorted(self.connections, key=lambda h: h.peer)]

    def http(self, request: HttpRequest) -> HttpResponse:
        """A plain HTTP request to the WebSocket or --http-port listener."""
        return self.http_api.handle(request)

    def _on_cbs_grant(self, owner: object, entity: str, expiry: float | None) -> None:
        """A token put on $cbs: the connection may use that entity (a namespace
        token, entity "", covers all)."""
        if not isinstance(owner, ConnectionHandle):
            return
        owner.cbs_grants[entity] = expiry
        if not self.config.azure_keys and not self._cbs_warned:
            self._cbs_warned = True
            log.warning("$cbs: token accepted WITHOUT verification (no Azure keys are "
                        "configured: --azure-key NAME=KEY)")

    def _on_token(self, owner: object, token: bytes) -> None:
        """`PUT /auth/tokens`: the connection's new token.  Verified when token
        verification is configured (a bad one is a 401 and changes nothing; a
        good one replaces the connection's permissions and expiry, for the same
        user only); otherwise kept, and the log says once that it was not."""
        if not isinstance(owner, ConnectionHandle):
            return
        if self.access.tokens is None:
            owner.token = token
            if not self._token_warned:
                self._token_warned = True
                log.warning("PUT /auth/tokens: token kept but NOT verified (no token "
                            "verification is configured: --jwt-secret, --jwt-public-key "
                            "or --jwks-file)")
            return
        try:
            identity = self.access.tokens.verify(token.decode("utf-8", "replace"),
                                                 self.wall_clock())
        except CredentialsRefused as exc:
            raise AdminError(401, str(exc)) from None
        if owner.identity is not None and identity.user != owner.identity.user:
            raise AdminError(401, f"the token is for user '{identity.user}', the connection "
                                  f"is user '{owner.identity.user}'")
        owner.token = token
        owner.identity = identity
        owner.wake()  # the driver asks tick() again: the deadline moved

    def shutdown(self) -> None:
        """Close every connection with amqp:connection:forced."""
        self.stopping = True
        for handle in list(self.connections):
            handle.close(amqp_error(Condition.CONNECTION_FORCED, "broker is shutting down"))

    def housekeeping(self, rss: int | None = None) -> None:
        """Periodic work (the server calls it about once a second, with the
        process's resident size when it can tell): stream retention by age,
        dropping expired messages from queues nobody is reading, deleting queues
        unused for their `x-expires`, and the memory alarm's backstop."""
        self.registry.housekeeping(self.wall_clock())
        self.expire_locks(self.wall_clock())
        self._signal_store()
        self.stats.rss = rss
        if self.memory is not None:
            self._memory_changed(self.memory.sample(self.registry.held_bytes, rss))

    @property
    def memory_alarm(self) -> bool:
        return self.memory is not None and self.memory.on

    # -- the memory alarm -----------------------------------------------------

    def _memory_changed(self, change: AlarmChange | None) -> None:
        """On: publishers keep the credit they have but get no more (anonymous
        relays too); consumers go on draining.  Off: credit flows again."""
        if change is None:
            return
        if not change.changed:
            log.warning("memory: %s", change.reason)
            return
        on = change.on
        if on:
            log.warning("memory alarm: %s: publishers get no more credit", change.reason)
        else:
            log.warning("memory alarm cleared: %s: publishers get credit again", change.reason)
        credit = 0 if on else PUBLISHER_CREDIT
        self.attacher.publisher_credit = credit
        for link, handle in self.publishers.items():
            link.credit_window = credit
            if not on and link.usable and link.link_credit <= PUBLISHER_CREDIT // 2:
                link.flow(PUBLISHER_CREDIT)
                handle.wake()

    # -- links --------------------------------------------------------------

    def on_attach(self, handle: ConnectionHandle, link: Link) -> None:
        if link.attach_sent or link.detach_sent:
            # The engine reports every attach in order, whatever came after it in
            # the same read; it may already have answered this one (a link error,
            # or the peer's detach/end arriving with the attach).
            return
        try:
            self.attacher.attach(handle, link, handle.management_pairs)
        except AmqpError as exc:
            log.info("refusing link %s from %s: %s: %s", printable(link.name), handle.peer,
                     getattr(exc.condition, "value", exc.condition), exc.description)
            link.refuse(error_from(exc))
            return
        if log.isEnabledFor(logging.DEBUG):
            remote = link.remote_attach
            terminus = remote.source if link.is_sender else remote.target
            log.debug("link %s attached on %s: %s %s, snd-settle-mode %s, rcv-settle-mode %s",
                      printable(link.name), handle.peer,
                      "consumer of" if link.is_sender else "publisher to",
                      printable(getattr(terminus, "address", None)), remote.snd_settle_mode,
                      remote.rcv_settle_mode)
        if isinstance(link.context, Publisher):
            link.credit_window = self.attacher.publisher_credit
            self.publishers[link] = handle
        elif isinstance(link.context, Subscription) and link.context.azure and \
                not link.context.presettled:
            self.locking.add(link.context)

    def on_detach(self, link: Link, closed: bool) -> None:
        log.debug("link %s detached%s", printable(link.name), " (closed)" if closed else "")
        ctx = link.context
        link.context = None
        self.publishers.pop(link, None)
        if isinstance(ctx, Subscription):
            self.locking.discard(ctx)
            queue = ctx.queue
            entries = ctx.unsettled_entries()
            now = self.wall_clock()
            # a requeue dispatches anyway, and must come first (redeliveries lead)
            queue.remove_consumer(ctx, None if entries else now)
            for delivery in link.unsettled.values():
                delivery.context = None  # the engine frees the deliveries themselves
            if ctx.owns_queue:
                self._delete_temporary(queue)
            else:
                if entries:
                    queue.requeue(entries, now, delivery_failed=True)
                self.registry.consumer_removed(queue, now)
        elif isinstance(ctx, Publisher) and ctx.owns_queue and ctx.node is not None:
            self._delete_temporary(ctx.node)
        elif isinstance(ctx, ServicePair):
            if ctx.requests is link:
                ctx.requests = None
            if ctx.replies is link:
                ctx.replies = None
            pairs = ctx.owner.management_pairs  # type: ignore[attr-defined]
            if ctx.requests is None and ctx.replies is None and pairs.get(ctx.key) is ctx:
                del pairs[ctx.key]

    def _delete_temporary(self, queue: Node) -> None:
        """A dynamic node lives as long as the link that created it (§3.5.4); any other
        consumer attached to it by address is detached with amqp:resource-deleted."""
        if self.registry.get(queue.name) is queue:
            self.registry.delete(queue.name)

    def renew_locks(self, owner: object, tags: list[bytes],
                    now: float) -> list[float | None]:
        """Azure's renew-lock: each tag's lock (on `owner`'s peek-lock links)
        moves on by the lock duration; None for a lock unknown or lapsed."""
        found: list[float | None] = []
        for tag in tags:
            expiry = None
            for sub in self.locking:
                if sub.handle is owner and tag in sub.locks:
                    expiry = sub.locks[tag] = now + sub.lock_duration
                    break
            found.append(expiry)
        return found

    def expire_locks(self, now: float) -> None:
        """Azure's peek-lock: a delivery whose lock lapsed goes back to its
        queue with delivery-count +1 (dead-lettered past the max delivery
        count), and our end of it is settled as modified(delivery-failed)."""
        for sub in list(self.locking):
            lapsed = [tag for tag, until in sub.locks.items() if until <= now]
            if not lapsed:
                continue
            link = sub.link
            by_tag = {d.tag: d for d in link.unsettled.values()}
            for tag in lapsed:
                del sub.locks[tag]
                delivery = by_tag.get(tag)
                if delivery is None or delivery.context is None:
                    continue
                entry = delivery.context
                delivery.context = None
                link.settle(delivery, Modified(delivery_failed=True))
                if entry.delivery_count + 1 >= self.config.azure_max_delivery_count:
                    self._azure_dead_letter(sub.queue, entry, MAX_DELIVERIES, now)
                else:
                    sub.queue.requeue([entry], now, delivery_failed=True)
            sub.handle.wake()

    def _azure_dead_letter(self, queue: Node, entry: Entry, state: Rejected,
                           now: float) -> None:
        """Azure's dead-letter (rejected with `com.microsoft:dead-letter`): the
        message leaves its queue for the `$DeadLetterQueue` sub-queue, with the
        reason and description the rejection's error info gives."""
        queue.settle(entry)
        info = state.error.info if state.error is not None and state.error.info else {}
        reason, description = (info.get(k) for k in ("DeadLetterReason",
                                                      "DeadLetterErrorDescription"))
        self.registry.azure.dead_letter(
            queue.name, entry.message, None if reason is None else str(reason),
            None if description is None else str(description), now)

    def on_credit(self, link: Link) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("link %s: credit %d%s", printable(link.name), link.link_credit,
                      ", drain" if link.drain else "")
        ctx = link.context
        if isinstance(ctx, Subscription):
            if ctx.credit > 0:
                ctx.queue.consumer_ready(ctx, self.wall_clock())
            if link.drain:
                link.drained()
        elif isinstance(ctx, ServicePair):
            ctx.flush()
            if link.drain:
                link.drained()

    # -- messages -------------------------------------------------------------

    def on_message(self, handle: ConnectionHandle, link: Link, delivery: Delivery) -> None:
        ctx = link.context
        if isinstance(ctx, Publisher):
            store = self.store
            if store is not None and store.failed is not None:
                outcome: object = Rejected(error=amqp_error(
                    Condition.RESOURCE_LIMIT_EXCEEDED,
                    f"the broker cannot write to its data directory: {store.failed}"))
            else:
                recorded = store.recorded if store is not None else 0
                if store is not None:
                    store.scope = []
                # one clock reading (and one float object: every queued message keeps
                # its arrival time) for all the messages of one input
                now = self.input_time
                if now is None:
                    now = self.input_time = self.wall_clock()
                outcome = ctx.store(delivery.payload, now, delivery.message_format)
                if self.memory is not None and not self.memory.on:
                    self._memory_changed(self.memory.held(self.registry.held_bytes))
                if store is not None:
                    entries, store.scope = store.scope, None
                    if store.recorded != recorded and not delivery.remote_settled:
                        # accepted promises the message is kept: once it is on disk
                        store.hold(_settle_later(handle.wake, link, delivery, outcome),
                                   publish=True, entries=entries)
                        return
        elif isinstance(ctx, ServicePair):
            outcome = ctx.on_request(delivery.payload, self.wall_clock())
        else:
            return
        if not delivery.remote_settled:
            link.settle(delivery, outcome)

    # -- durability (--data-dir) ------------------------------------------------

    def take_durable_batch(self) -> Batch | None:
        """The server's commit loop: what to write now (store/durable.py)."""
        return self.store.take_batch() if self.store is not None else None

    def durable_committed(self, batch: Batch) -> None:
        """The batch is on disk: the outcomes it held go out."""
        assert self.store is not None
        for held in self.store.committed(batch):
            held.send(True)

    def durable_failed(self, batch: Batch, error: OSError) -> None:
        """The batch could not be written: the publishes it held are refused."""
        assert self.store is not None
        for held in self.store.commit_failed(batch, error):
            held.send(False)

    def _signal_store(self) -> None:
        store = self.store
        if store is not None and store.needs_commit():
            store.signalled = store.recorded
            store.on_pending()

    def on_deliveries_updated(self, deliveries: list[Delivery], state: object,
                              settled: bool) -> None:
        """A ranged disposition: `on_delivery_updated` for each delivery."""
        for delivery in deliveries:
            self.on_delivery_updated(delivery.link, delivery, state, settled)

    def on_delivery_updated(self, link: Link, delivery: Delivery, state: object,
                            settled: bool) -> None:
        sub = link.context
        entry = delivery.context
        if settled and type(state) is Accepted and entry is not None and \
                type(sub) is Subscription and not sub.azure:
            delivery.context = None  # the usual answer, settled by the peer: done
            sub.queue.settle(entry)
            return
        if not isinstance(sub, Subscription):
            return
        if entry is None:
            if sub.browsing and not settled and \
                    type(state) in (Accepted, Rejected, Released, Modified):
                link.settle(delivery, state)  # a browsed copy: the outcome changes nothing
                sub.handle.wake()
            return
        kind = type(state)
        if kind not in (Accepted, Rejected, Released, Modified):
            if not settled:
                return  # e.g. received: not an outcome yet
            # settled without a terminal state: our source's default-outcome (§3.5.3)
            state, kind = Released(), Released
        delivery.context = None
        now = self.wall_clock()
        if sub.locks:  # Azure peek-lock only: the lock ends with the settlement
            sub.locks.pop(delivery.tag, None)
        azure_dead_letter = kind is Rejected and _condition(state) == AZURE_DEAD_LETTER
        if sub.azure and kind is Modified and not getattr(state, "undeliverable_here", False) \
                and entry.delivery_count + 1 >= self.config.azure_max_delivery_count:
            # Azure's max delivery count: this abandon dead-letters the message
            if not settled:
                link.settle(delivery, state)
                sub.handle.wake()
            self._azure_dead_letter(sub.queue, entry, MAX_DELIVERIES, now)
            return
        queue = sub.queue
        store = self.store
        recorded = store.recorded if store is not None else 0
        if sub.azure and kind is Modified and getattr(state, "undeliverable_here", False) \
                and isinstance(queue, Queue):
            self.registry.azure.defer(queue, entry)  # Azure's defer
        elif kind is Accepted:
            queue.settle(entry)
        elif azure_dead_letter:
            self._azure_dead_letter(queue, entry, state, now)  # type: ignore[arg-type]
        elif kind is Rejected:
            queue.reject(entry, now)
        elif kind is Released:
            queue.requeue([entry], now)
        else:
            mod: Modified = state  # type: ignore[assignment]
            # Service Bus counts an abandon as a delivery, whatever delivery-failed
            # says (the Node SDK leaves it unset)
            failed = bool(mod.delivery_failed) or (sub.azure and not mod.undeliverable_here)
            queue.modify(entry, now, sub, delivery_failed=failed,
                         undeliverable_here=bool(mod.undeliverable_here),
                         annotations=mod.message_annotations)
        if not settled:
            # our settlement says the outcome, not the peer's error again (the
            # Azure SDKs take a rejected echo with an error as a failed settle)
            outcome = Rejected() if azure_dead_letter else state
            if store is not None and store.recorded != recorded:
                # a second-mode consumer: its settlement is final once the ack is on disk
                store.hold(_settle_later(sub.handle.wake, link, delivery, outcome))
            else:
                link.settle(delivery, outcome)
                sub.handle.wake()


def _settle_later(wake: Callable[[], None], link: Link, delivery: Delivery,
                  outcome: object) -> Callable[[bool], None]:
    """What a held settlement does once its batch is written (True), or, for
    a publish, could not be (False: refused)."""
    def send(ok: bool) -> None:
        if ok:
            link.settle(delivery, outcome)
        else:
            link.settle(delivery, Rejected(error=amqp_error(
                Condition.RESOURCE_LIMIT_EXCEEDED, "the broker could not write the message "
                "to its data directory")))
        wake()
    return send
