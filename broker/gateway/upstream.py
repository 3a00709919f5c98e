"""The upstream side: the nodes we may connect to, the connections to them, and
where a client session goes.

Theory of operation.  `--upstream` URLs name the nodes of one cluster.  The
pool keeps `size` connections; each slot dials the node it was last told to
and, when that fails or drops, the next one in the list, after a backoff
that doubles from `BACKOFF_FIRST` to `BACKOFF_MAX` and starts again once a
connection opens.  `gateway_server.py` does the dialing; everything here is
decided without sockets or clocks (times are passed in).

A new client session goes to the open connection carrying the fewest
sessions that still has a channel within the peer's channel-max.  RabbitMQ
allows 64 sessions per connection by default (`session_max_per_connection`);
when every connection is full, the pool asks for as many more connections
as the waiting sessions need (and says so once in the log), so clients are
not refused for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

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
from broker.engine.sasl import SaslClient
from broker.engine.session import Session
from broker.gateway.handle import EngineHandle

if TYPE_CHECKING:
    from broker.gateway.core import Gateway
    from broker.gateway.identity import Login
    from broker.gateway.routes import SessionRoute

log = logging.getLogger("broker.gateway")

BACKOFF_FIRST = 0.1  # seconds before the first retry
BACKOFF_MAX = 5.0


@dataclass(frozen=True, slots=True)
class UpstreamNode:
    """One `--upstream` URL: amqp[s]://[user[:password]@]host[:port][/vhost]."""

    host: str
    port: int
    tls: bool = False
    user: str | None = None
    password: str | None = None
    vhost: str = "/"

    @property
    def label(self) -> str:
        """How the node is named in the log: never with its password."""
        scheme = "amqps" if self.tls else "amqp"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def hostname(self) -> str:
        """The open frame's hostname: RabbitMQ reads the vhost from it."""
        return f"vhost:{self.vhost}"


def parse_upstream(url: str) -> UpstreamNode:
    """An `--upstream` URL; ValueError (naming what is wrong) otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"upstream {url!r}: the scheme must be amqp or amqps")
    if not parts.hostname:
        raise ValueError(f"upstream {url!r}: no host")
    try:
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError:
        raise ValueError(f"upstream {url!r}: the port is not a number") from None
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return UpstreamNode(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "amqps",
        user=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        vhost=vhost,
    )


class Upstream(EngineHandle):
    """One connection to an upstream node: the engine in client mode, as the
    transport driver sees it, its events handed to the gateway."""

    def __init__(self, gateway: Gateway, node: UpstreamNode, wake: Callable[[], None],
                 *, container_id: str, max_frame_size: int, idle_time_out: float,
                 now: float, trace: bool = False, login: Login | None = None) -> None:
        """`login`: a client's own credentials (`--upstream-auth passthrough`);
        None: the service account of the node's URL."""
        super().__init__(gateway.clock, wake)
        self.gateway = gateway
        self.node = node
        self.login = login
        self.idle_since: float | None = None  # a passthrough connection carrying nothing
        user, password = (login.user, login.password) if login is not None else \
            (node.user, node.password)
        self.conn = Connection(
            container_id=container_id,
            client=SaslClient(user, password),
            hostname=node.hostname,
            max_frame_size=max_frame_size,
            idle_time_out=idle_time_out,
            now=now,
            trace=f"upstream {node.label}" if trace else None,
        )
        self.conn.owner = self
        self.routes: dict[Session, SessionRoute] = {}  # by upstream session
        self.peer_container: str | None = None

    @property
    def opened(self) -> bool:
        return self.conn.state is ConnState.OPENED

    @property
    def has_room(self) -> bool:
        """A new session fits within the peer's channel-max."""
        return self.opened and len(self.conn.local_sessions) <= self.conn.remote_channel_max

    # -- events ---------------------------------------------------------------

    def process(self) -> None:
        """Hand every engine event to the gateway; wake the client
        connections that got output."""
        conn = self.conn
        gw = self.gateway
        dirty = gw._dirty_clients
        while conn.events:  # a handler's own events come in the next round
            for event in conn.take_events():  # not next_event(): a call less each
                t = type(event)
                if t is MessageReceived:
                    route = event.link.context  # type: ignore[union-attr]
                    if route is not None:
                        route.upstream_message(event.delivery)  # type: ignore[union-attr]
                        dirty.add(route.session.owner)
                elif t is CreditChanged:
                    route = event.link.context  # type: ignore[union-attr]
                    if route is not None:
                        route.upstream_credit()
                        dirty.add(route.session.owner)
                elif t is LinkAttached:
                    gw.upstream_link_answered(event.link)  # type: ignore[union-attr]
                elif t is LinkDetached:
                    gw.upstream_link_detached(event.link, event.error,  # type: ignore[union-attr]
                                              event.closed)  # type: ignore[union-attr]
                elif t is SessionEnded:
                    gw.upstream_session_ended(self, event.session,  # type: ignore[union-attr]
                                              event.error)  # type: ignore[union-attr]
                elif t is ConnectionOpened:
                    self.peer_container = event.container_id  # type: ignore[union-attr]
                    gw.upstream_opened(self)
                elif t is ConnectionClosed:
                    gw.upstream_closed(self, event.error)  # type: ignore[union-attr]
        self.note_touched(dirty)  # what the engine forwarded to clients
        gw.wake_clients()


class UpstreamPool:
    """The upstream nodes, the connections to them, and where sessions go."""

    def __init__(self, nodes: list[UpstreamNode], size: int) -> None:
        if not nodes:
            raise ValueError("the gateway needs at least one --upstream")
        self.nodes = nodes
        self.size = size  # connections kept open
        self.connections: list[Upstream] = []
        self.wanted = size  # more when every connection is full (see `place`)
        self._full_warned = False

    def next_node(self, previous: UpstreamNode | None) -> UpstreamNode:
        """The node to dial after `previous` failed (the first one at the start)."""
        if previous is None:
            return self.nodes[0]
        return self.nodes[(self.nodes.index(previous) + 1) % len(self.nodes)]

    @staticmethod
    def backoff(failures: int) -> float:
        """Seconds to wait before the next dial, after `failures` in a row."""
        if failures <= 0:
            return 0.0
        return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (failures - 1))

    def place(self, waiting: int = 1) -> Upstream | None:
        """The connection for a new client session, or None when none has room.

        `waiting`: the client sessions waiting for room, this one included.
        When every open connection is full, the pool asks for as many more
        as they need at once (their slots dial side by side), not one at a
        time: a burst of 10,000 browsers needs 157 connections to a RabbitMQ
        that allows 64 sessions each, and an attach waits only `ATTACH_WAIT`."""
        open_ = [u for u in self.connections if u.opened]
        roomy = [u for u in open_ if u.has_room]
        if roomy:
            return min(roomy, key=lambda u: len(u.conn.local_sessions))
        if not open_:
            return None
        per_connection = open_[0].conn.remote_channel_max + 1
        needed = len(open_) + -(-waiting // per_connection)  # rounded up
        if needed > self.wanted:
            self.wanted = needed
            if not self._full_warned:
                self._full_warned = True
                log.warning("every upstream connection carries as many sessions as the "
                            "upstream allows (%d); opening more connections (RabbitMQ: raise "
                            "session_max_per_connection)", open_[0].conn.remote_channel_max + 1)
        return None
