"""The gateway as the transports see it: client connections in, upstream
connections out, and the routes between them (see routes.py).

A client connection is a server-side engine connection, authenticated as in
`serve` (the same `Credentials` over `access`), or in passthrough mode with
its credentials kept for the upstream (identity.py); its links are routed,
never served here.  The gateway keeps no messages: what it holds is only
what credit allowed and the other side has not taken yet.

An attach that finds no open upstream connection for it (the gateway is
starting, an upstream node is being failed over, a passthrough user's own
connection is being opened, every connection of the pool is full and more
are being opened) waits for one, checked at each housekeeping tick: up to
`ATTACH_WAIT` seconds, or, while the pool's connections keep opening (a
burst of clients needing many new ones), up to `ATTACH_WAIT` after the last
one opened.  Then it is refused with amqp:connection:forced, which clients
treat as "try again".  A link an upstream failure left waiting to be
re-attached (reattach.py) waits among them, its route kept as the link's
context, up to `Config.reattach_wait`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from broker.access import Access, Identity, load_access
from broker.codec.messaging import Accepted, Rejected, Source
from broker.codec.performatives import Error, amqp_error
from broker.codec.types import Symbol
from broker.config import Config, ConfigError
from broker.container import ANONYMOUS_RELAY, Credentials
from broker.engine.connection import Connection, ConnState
from broker.engine.events import (
    ConnectionClosed,
    ConnectionOpened,
    CreditChanged,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    SessionEnded,
)
from broker.engine.link import Delivery, Link
from broker.engine.sasl import printable
from broker.engine.session import Session
from broker.errors import AmqpError, Condition
from broker.gateway.edge_access import MANAGEMENT, ManagementRefused, check_attach, message_check
from broker.gateway.handle import EngineHandle
from broker.gateway.identity import (
    ANONYMOUS_LOGIN,
    PASSTHROUGH,
    Bearer,
    Login,
    PassthroughCredentials,
    verify_bearer,
)
from broker.gateway.observe import http_answer
from broker.gateway.reattach import REATTACH, reattaches
from broker.gateway.routes import LinkRoute, SessionRoute
from broker.gateway.upstream import Upstream, UpstreamNode, UpstreamPool
from broker.peerlog import PeerLog
from broker.services.http_api import HttpRequest, HttpResponse
from broker.services.management import Response, encode_response

log = logging.getLogger("broker.gateway")

ATTACH_WAIT = 5.0  # seconds an attach may wait for an upstream connection
IDLE_LOGIN_CLOSE = 30.0  # seconds a passthrough user's idle connection stays open

_ENDING = (ConnState.CLOSE_SENT, ConnState.CLOSED)


def waits_to_reattach(link: Link) -> bool:
    """A waiting client link that an upstream failure left to be re-attached:
    its route is kept as its context (a new attach waits with none)."""
    return isinstance(link.context, LinkRoute)


class ClientHandle(EngineHandle):
    """One client connection as the transport driver sees it."""

    def __init__(self, gateway: Gateway, conn: Connection, peer: str, transport: str,
                 wake: Callable[[], None]) -> None:
        super().__init__(gateway.clock, wake)
        self.gateway = gateway
        self.conn = conn
        self.peer = peer
        self.transport = transport
        self.identity: Identity | None = None  # set by SASL (see Credentials)
        self.login: Login | None = None  # passthrough: what to present upstream
        self.user: str | None = None
        self.container_id: str | None = None
        self.opened = False
        self.sessions: dict[Session, SessionRoute] = {}  # by client session

    def close(self, error: Error | None) -> None:
        self.conn.close(error)
        self.process()
        self.wake()

    # -- events ---------------------------------------------------------------

    def process(self) -> None:
        conn = self.conn
        gw = self.gateway
        dirty = gw._dirty_upstreams
        while conn.events:  # a handler's own events come in the next round
            for event in conn.take_events():  # not next_event(): a call less each
                t = type(event)
                if t is MessageReceived:
                    route = event.link.context  # type: ignore[union-attr]
                    if route is not None:
                        gw.client_message(route, event.delivery)  # type: ignore[union-attr]
                elif t is CreditChanged:
                    route = event.link.context  # type: ignore[union-attr]
                    if route is not None:
                        route.client_credit()
                        dirty.add(route.session.upstream)
                elif t is LinkAttached:
                    gw.client_attach(self, event.link)  # type: ignore[union-attr]
                elif t is LinkDetached:
                    gw.client_detach(event.link, event.closed)  # type: ignore[union-attr]
                elif t is SessionEnded:
                    gw.client_session_ended(self, event.session)  # type: ignore[union-attr]
                elif t is ConnectionOpened:
                    self.opened = True
                    self.container_id = event.container_id  # type: ignore[union-attr]
                    self.user = event.user  # type: ignore[union-attr]
                    log.info("client connection from %s (%s) opened by %s as user %s", self.peer,
                             self.transport, printable(self.container_id), printable(self.user))
                elif t is ConnectionClosed:
                    gw.client_closed(self)
        self.note_touched(dirty)  # what the engine forwarded upstream
        gw.wake_upstreams()


class Gateway:
    """What the transports talk to in gateway mode (`ContainerLike`)."""

    def __init__(self, config: Config, nodes: list[UpstreamNode], *,
                 connections: int = 4,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        try:
            self.access: Access = load_access(config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.pool = UpstreamPool(nodes, connections)
        self.passthrough = config.upstream_auth == PASSTHROUGH
        self.logins: dict[Login, Upstream] = {}  # passthrough: each login's own connection
        self._dialing: set[Login] = set()
        # set by gateway_server in passthrough mode: open a connection for a login
        self.dial: Callable[[Login], None] | None = None
        self.waiting: list[tuple[ClientHandle, Link, float]] = []  # attaches, since when
        # the client sessions those attaches belong to, whose number tells the
        # pool how many connections it lacks (UpstreamPool.place)
        self._sessions_waiting: set[Session] = set()
        self._pool_opened_at = float("-inf")  # when a pool connection last opened
        self.clients: set[ClientHandle] = set()
        self.peer_log = PeerLog(clock, log)
        self.listener_urls: list[str] = []
        self.stopping = False
        # whose output changed while another connection's input was processed
        self._dirty_clients: set[ClientHandle] = set()
        self._dirty_upstreams: set[Upstream] = set()
        self.links_routed = 0  # totals, for /metrics
        self.links_reattached = 0
        self.attach_rtt: float | None = None  # seconds, a moving average
        self._attach_started: dict[Link, float] = {}
        self.rss: int | None = None
        # set by gateway_server: the task keeping the upstream connections up
        self.background: Callable[[], Awaitable[None]] | None = None

    # -- the transports' side -------------------------------------------------

    def connection_made(self, peer: str, transport: str, wake: Callable[[], None], *,
                        tls_subject: str | None = None,
                        bearer: Identity | Bearer | None = None) -> ClientHandle:
        cfg = self.config
        credentials: Credentials
        if self.passthrough:
            credentials = PassthroughCredentials(
                self.access, self.wall_clock, tls_subject=tls_subject,
                bearer=bearer if isinstance(bearer, Bearer) else None)
        else:
            credentials = Credentials(self.access, self.wall_clock, tls_subject=tls_subject,
                                      bearer=bearer if isinstance(bearer, Identity) else None)
        conn = Connection(
            container_id=cfg.container_id,
            credentials=credentials,
            max_frame_size=cfg.max_frame_size,
            channel_max=cfg.channel_max,
            handle_max=cfg.handle_max,
            idle_time_out=cfg.idle_time_out,
            handshake_timeout=cfg.handshake_timeout,
            offered_capabilities=(ANONYMOUS_RELAY, REATTACH),
            properties={Symbol("product"): "amqpws-broker gateway"},
            now=self.clock(),
            trace=f"{transport} {peer}" if cfg.trace_frames else None,
        )
        handle = ClientHandle(self, conn, peer, transport, wake)
        conn.owner = handle
        credentials.handle = handle  # type: ignore[assignment]
        self.clients.add(handle)
        return handle

    def verify_bearer(self, token: str) -> Identity | Bearer:
        if self.passthrough:
            return verify_bearer(self.access, token, self.wall_clock())
        return self.access.bearer(token, self.wall_clock())

    def http(self, request: HttpRequest) -> HttpResponse:
        return http_answer(self, request)

    def shutdown(self) -> None:
        self.stopping = True
        error = amqp_error(Condition.CONNECTION_FORCED, "the gateway is shutting down")
        for handle in list(self.clients):
            handle.close(error)
        for upstream in self.upstreams():
            upstream.conn.close()
            upstream.wake()

    @property
    def links_waiting_reattach(self) -> int:
        return sum(1 for _, link, _ in self.waiting if waits_to_reattach(link))

    def upstreams(self) -> list[Upstream]:
        """Every upstream connection: the pool's and passthrough users' own."""
        return self.pool.connections + list(self.logins.values())

    def housekeeping(self, rss: int | None = None) -> None:
        """Once a second (server.py): attaches that waited too long are refused,
        passthrough connections that carried nothing for a while are closed."""
        self.rss = rss
        now = self.clock()
        if self.waiting:
            # a pool still opening connections is progress: its waits go on
            since_progress = now - self._pool_opened_at
            expired: list[tuple[ClientHandle, Link, float]] = []
            kept: list[tuple[ClientHandle, Link, float]] = []
            for handle, link, since in self.waiting:
                wait = self._wait_for(handle, link)
                if min(now - since, since_progress) >= wait:
                    expired.append((handle, link, wait))
                else:
                    kept.append((handle, link, since))
            if expired:
                self._keep_waiting(kept)
                for handle, link, wait in expired:
                    why = (f"the upstream broker was not back within {wait:g} s to re-attach "
                           f"the link" if waits_to_reattach(link) else
                           f"no upstream broker connection within {wait:g} s; try again shortly")
                    link.context = None
                    if not link.detach_sent:  # (refused first if never answered)
                        link.detach(amqp_error(Condition.CONNECTION_FORCED, why))
                        handle.wake()
            if self.passthrough and any(waits_to_reattach(link) for _, link, _ in self.waiting):
                # a passthrough login whose dial failed dials again, once a second
                # at most, while its links wait to be re-attached
                self._retry_waiting()
        for upstream in list(self.logins.values()):
            if upstream.routes or not upstream.opened:
                upstream.idle_since = None
            elif upstream.idle_since is None:
                upstream.idle_since = now
            elif now - upstream.idle_since >= IDLE_LOGIN_CLOSE:
                upstream.conn.close()
                upstream.wake()

    def _wait_for(self, handle: ClientHandle, link: Link) -> float:
        """How long a waiting attach may wait: `ATTACH_WAIT`, or the configured
        re-attach wait for a link waiting to be re-attached (its route kept)
        and for an attach that asked for re-attach (reattach.py)."""
        if waits_to_reattach(link) or reattaches(link.remote_attach, handle.conn.remote_open):
            return self.config.reattach_wait
        return ATTACH_WAIT

    def upstream_made(self, node: UpstreamNode, wake: Callable[[], None], *,
                      login: Login | None = None) -> Upstream:
        """A socket to `node` is open (the edge dialed it): its connection, with
        a passthrough client's `login` or the pool's service account."""
        cfg = self.config
        upstream = Upstream(self, node, wake, container_id=cfg.container_id,
                            max_frame_size=cfg.max_frame_size,
                            idle_time_out=cfg.idle_time_out, now=self.clock(),
                            trace=cfg.trace_frames, login=login)
        if login is None:
            self.pool.connections.append(upstream)
        else:
            self.logins[login] = upstream
            self._dialing.discard(login)
        return upstream

    def dial_failed(self, login: Login, why: str) -> None:
        """No node took a passthrough login's connection: its attaches are refused."""
        self._dialing.discard(login)
        self._refuse_waiting(login, amqp_error(Condition.CONNECTION_FORCED,
                                               f"the upstream broker cannot be reached: {why}"))

    def upstream_gone(self, upstream: Upstream) -> None:
        """The edge is done with `upstream`'s socket."""
        if not upstream.conn.done:
            upstream.connection_lost()
        if upstream in self.pool.connections:
            self.pool.connections.remove(upstream)
        if upstream.login is not None and self.logins.get(upstream.login) is upstream:
            del self.logins[upstream.login]
            if self.waiting:  # links waiting to be re-attached: their login dials again
                self._retry_waiting()

    # -- waking ---------------------------------------------------------------

    def wake_clients(self) -> None:
        dirty = self._dirty_clients
        if dirty:
            for handle in dirty:
                handle.wake()
            dirty.clear()

    def wake_upstreams(self) -> None:
        dirty = self._dirty_upstreams
        if dirty:
            for upstream in dirty:
                upstream.wake()
            dirty.clear()

    # -- client events --------------------------------------------------------

    def client_attach(self, handle: ClientHandle, link: Link) -> None:
        try:
            check_attach(handle.identity, link.remote_attach)
        except AmqpError as exc:
            self.peer_log.info(handle.peer, "link %s refused: %s", printable(link.name),
                               exc.description)
            link.refuse(amqp_error(exc.error_condition, exc.description))
            return
        self._route(handle, link)

    def _route(self, handle: ClientHandle, link: Link) -> None:
        """Carry an attach upstream, or let it wait for a connection; the
        same for a link waiting to be re-attached (its route kept as context)."""
        session_route = handle.sessions.get(link.session)
        if session_route is None:
            upstream = self._upstream_for(handle, link.session)
            if upstream is None:
                self.waiting.append((handle, link, self.clock()))
                return
            session_route = SessionRoute(link.session, handle, upstream, upstream.conn.begin())
            handle.sessions[link.session] = session_route
            upstream.routes[session_route.upstream_session] = session_route
        upstream_session = session_route.upstream_session
        if not upstream_session.has_handle_room:
            link.context = None
            link.detach(amqp_error(  # (a refusal, if not answered yet: Link.detach)
                Condition.RESOURCE_LIMIT_EXCEEDED,
                f"the upstream allows {upstream_session.remote_handle_max + 1} links per session"))
            return
        route = link.context
        if isinstance(route, LinkRoute):  # waiting to be re-attached
            route.reopen(session_route)
        else:
            route = LinkRoute.open(session_route, link, reattach=reattaches(
                link.remote_attach, handle.conn.remote_open))
            # a route whose messages are checked here is never armed (LinkRoute.arm)
            route.check = message_check(handle.identity, link.remote_attach)
        self._attach_started[route.upstream] = self.clock()
        self._dirty_upstreams.add(session_route.upstream)

    def _upstream_for(self, handle: ClientHandle, session: Session) -> Upstream | None:
        """The open connection a new session of this client goes on, if any."""
        if not self.passthrough:
            waiting = self._sessions_waiting
            waiting.add(session)
            upstream = self.pool.place(len(waiting))
            if upstream is not None:
                waiting.discard(session)
            return upstream
        login = handle.login or ANONYMOUS_LOGIN
        upstream = self.logins.get(login)
        if upstream is not None and upstream.has_room:
            return upstream
        if upstream is None and login not in self._dialing and self.dial is not None:
            self._dialing.add(login)
            self.dial(login)
        return None

    def _keep_waiting(self, waiting: list[tuple[ClientHandle, Link, float]]) -> None:
        """`waiting` is what still waits: the attaches, and their sessions."""
        self.waiting = waiting
        self._sessions_waiting = {link.session for _, link, _ in waiting}

    def _retry_waiting(self) -> None:
        """Route the waiting attaches again, and wake the connections that
        wrote to (the connection being processed may not be the one used)."""
        waiting = self.waiting
        self._keep_waiting([])  # those still waiting come back in _route
        for handle, link, since in waiting:
            # (a waiting re-attach keeps its route as context and was answered)
            if handle.conn.done or link.detach_sent or (link.attach_sent and
                                                         not waits_to_reattach(link)):
                continue
            before = len(self.waiting)
            self._route(handle, link)
            if len(self.waiting) > before:  # still waiting: keep its first time
                self.waiting[-1] = (handle, link, since)
            self._dirty_clients.add(handle)
        self.wake_clients()
        self.wake_upstreams()

    def _refuse_waiting(self, login: Login | None, error: Error) -> None:
        """Attaches waiting for `login`'s connection are refused; a link
        waiting to be re-attached waits its own time (and dials again, see
        `housekeeping`)."""
        keep = []
        for handle, link, since in self.waiting:
            if login is not None and (handle.login or ANONYMOUS_LOGIN) != login or \
                    waits_to_reattach(link):
                keep.append((handle, link, since))
            elif not link.attach_sent:
                link.refuse(error)
                self._dirty_clients.add(handle)
        self._keep_waiting(keep)

    def client_detach(self, link: Link, closed: bool) -> None:
        route = link.context
        if isinstance(route, LinkRoute):
            link.context = None
            if not link.session.end_received:  # a session end ends the upstream one at once
                route.client_detached(closed)
                self._dirty_upstreams.add(route.session.upstream)

    def client_message(self, route: LinkRoute, delivery: Delivery) -> None:
        if route.check is not None:
            try:
                route.check(delivery.payload)
            except AmqpError as exc:
                self.peer_log.info(route.session.owner.peer, "message refused: %s",
                                   exc.description)
                if isinstance(exc, ManagementRefused):
                    self._answer_refused(route, exc)
                    route.client.settle(delivery, Accepted())  # answered, with a 403
                else:
                    route.client.settle(delivery, Rejected(
                        error=amqp_error(exc.error_condition, exc.description)))
                route.grant_client()  # the credit it took is the upstream's still
                return
        route.client_message(delivery)
        self._dirty_upstreams.add(route.session.upstream)

    def _answer_refused(self, route: LinkRoute, exc: ManagementRefused) -> None:
        """The 403 for a `/management` request refused at the edge, on the reply
        link of the pair (the link to the client from `/management` in the same
        session, the request link's namesake first), after whatever the
        upstream sent there before it."""
        replies = [r for r in route.session.links if r.client.is_sender and isinstance(
            r.client.remote_attach.source, Source) and
            r.client.remote_attach.source.address == MANAGEMENT]
        if not replies:
            return  # no reply link: nothing can carry an answer
        reply = min(replies, key=lambda r: r.client.name != route.client.name)
        payload = encode_response(exc.request_id, Response(403, exc.description))
        answer = Delivery(reply.upstream, -1, b"gateway-403", True, payload)
        answer.remote_settled = True  # sent presettled, as serve's answers are
        reply.upstream_message(answer)
        self._dirty_clients.add(route.session.owner)

    def client_session_ended(self, handle: ClientHandle, session: Session) -> None:
        route = handle.sessions.pop(session, None)
        if route is not None:
            self._end_upstream_session(route)

    def client_closed(self, handle: ClientHandle) -> None:
        self.clients.discard(handle)
        for route in handle.sessions.values():
            self._end_upstream_session(route)
        handle.sessions.clear()
        conn = handle.conn
        if conn.sasl.outcome not in (None, 0):
            self.peer_log.info(handle.peer, "authentication failed: %s", conn.sasl.reason)

    def _end_upstream_session(self, route: SessionRoute) -> None:
        upstream = route.upstream
        upstream.routes.pop(route.upstream_session, None)
        for link_route in route.links:
            link_route.client.context = None
            link_route.disarm()
            link_route.upstream.context = None
        route.links.clear()
        if not upstream.conn.done:
            route.upstream_session.end()
            self._dirty_upstreams.add(upstream)

    # -- upstream events ------------------------------------------------------

    def upstream_opened(self, upstream: Upstream) -> None:
        if upstream.login is None:
            self._pool_opened_at = self.clock()
            log.info("upstream %s opened (node %s, %d of %d connections)", upstream.node.label,
                     printable(upstream.peer_container),
                     sum(1 for u in self.pool.connections if u.opened), self.pool.size)
        else:
            log.info("upstream %s opened for user %s (node %s)", upstream.node.label,
                     printable(upstream.login.user), printable(upstream.peer_container))
        if self.waiting:
            self._retry_waiting()

    def upstream_link_answered(self, link: Link) -> None:
        route = link.context
        if not isinstance(route, LinkRoute):
            return  # the client went first; our detach is on its way
        started = self._attach_started.pop(link, None)
        if started is not None:
            rtt = self.clock() - started
            self.attach_rtt = rtt if self.attach_rtt is None else 0.8 * self.attach_rtt + 0.2 * rtt
        answered_before, first = route.answered, not route.client.attach_sent
        route.upstream_answered()
        if route.answered and not answered_before:
            # counted once, at the first answer (an attach may be routed again)
            if first:
                self.links_routed += 1
            else:
                self.links_reattached += 1
        self._dirty_clients.add(route.session.owner)

    def upstream_link_detached(self, link: Link, error: Error | None, closed: bool) -> None:
        self._attach_started.pop(link, None)
        route = link.context
        if not isinstance(route, LinkRoute):
            return
        if link.session.end_received or link.session.conn.state in _ENDING:
            return  # ended by upstream_session_ended or upstream_closed, which say why
        link.context = None
        owner = route.session.owner
        route.upstream_detached(error, closed)
        route.client.context = None
        self._dirty_clients.add(owner)

    def upstream_session_ended(self, upstream: Upstream, session: Session,
                               error: Error | None) -> None:
        """The upstream ended a session: the client's session ends the same way."""
        route = upstream.routes.pop(session, None)
        if route is None:
            return
        owner = route.owner
        owner.sessions.pop(route.client, None)
        for link_route in route.links:
            link_route.client.context = None
            link_route.disarm()
        route.links.clear()
        if not route.client.end_sent:
            route.client.end(error)
        self._dirty_clients.add(owner)

    def upstream_closed(self, upstream: Upstream, error: Error | None) -> None:
        """The upstream connection is gone: every client link it carried ends
        with amqp:connection:forced, but for those that asked to be re-attached
        (reattach.py) and attaches it had not answered yet, which wait for a
        connection that is up; the client sessions stay, and their next attach
        goes to a connection that is up."""
        why = f"the upstream broker {upstream.node.label} went away"
        if error is not None:
            why += f" ({error.condition}: {error.description})"
        login = upstream.login
        if login is not None and upstream.peer_container is None:
            self._login_refused(login, upstream, error)
            return
        if not self.stopping and upstream.peer_container is not None:
            log.warning("upstream %s closed%s; %d client session(s) affected",
                        upstream.node.label,
                        f": {error.condition} {error.description}" if error else "",
                        len(upstream.routes))
        again: list[tuple[ClientHandle, Link]] = []  # routed again, when a connection is up
        reattaching = 0
        for route in list(upstream.routes.values()):
            owner = route.owner
            owner.sessions.pop(route.client, None)
            for link_route in list(route.links):
                client = link_route.client
                if not self.stopping and link_route.reattach and client.usable:
                    link_route.lost()
                    again.append((owner, client))
                    reattaching += 1
                elif not self.stopping and not client.attach_sent:
                    # an attach the upstream had not answered: it waits, as one made now would
                    link_route.disarm()
                    client.context = None
                    again.append((owner, client))
                else:
                    client.context = None
                    link_route.forced(why)
            route.links.clear()
            self._dirty_clients.add(owner)
        upstream.routes.clear()
        if reattaching:
            log.info("%d client link(s) wait up to %g s to be re-attached", reattaching,
                     self.config.reattach_wait)
        for owner, link in again:
            self._route(owner, link)
        if again:
            self.wake_upstreams()  # (another of the pool's connections may carry them now)

    def _login_refused(self, login: Login, upstream: Upstream, error: Error | None) -> None:
        """A passthrough login the upstream never opened a connection for: when
        it refused the credentials, that client's connections end with
        unauthorized-access; otherwise its attaches are refused as forced."""
        if error is not None and error.condition == Condition.UNAUTHORIZED_ACCESS.value:
            refusal = amqp_error(Condition.UNAUTHORIZED_ACCESS,
                                 f"the upstream broker refused the login of user "
                                 f"{login.user!r}")
            self._keep_waiting([w for w in self.waiting
                                if (w[0].login or ANONYMOUS_LOGIN) != login])
            for handle in list(self.clients):
                if (handle.login or ANONYMOUS_LOGIN) == login:
                    self.peer_log.info(handle.peer, "upstream refused user %s",
                                       printable(login.user))
                    handle.close(refusal)
            return
        self._refuse_waiting(login, amqp_error(
            Condition.CONNECTION_FORCED,
            f"the upstream broker {upstream.node.label} closed before opening"
            + (f": {error.description}" if error is not None else "")))
