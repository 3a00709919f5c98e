"""What the broker shows about itself: connection listings, the console's
overview, the `/metrics` snapshot, and the HTTP API wired to all of it.

The container owns the state; this module reads it (and keeps the few
totals that outlive a connection: bytes, failed logins, errors by
condition), so the container stays glue between engine events and nodes.
Pure: the clocks are the container's.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections import Counter
from typing import TYPE_CHECKING

from broker import __version__
from broker.access import Identity, origin_allowed
from broker.attach import Publisher
from broker.codec.messaging import Message, Rejected
from broker.codec.performatives import amqp_error
from broker.config import listens_on_loopback
from broker.errors import Condition
from broker.services import metrics
from broker.services.http_api import HttpApi

if TYPE_CHECKING:
    from broker.container import ConnectionHandle, Container

log = logging.getLogger("broker.observe")

CONSOLE_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon"}


class Observer:
    def __init__(self, container: Container) -> None:
        self.container = container
        self.started_at = container.wall_clock()
        self.connections_opened = 0
        self.auth_failures = 0
        self.errors: Counter[str] = Counter()  # connections closed with an error, by condition
        self.closed_bytes_in = 0  # of connections that are gone
        self.closed_bytes_out = 0
        self.rss: int | None = None  # the last housekeeping sample

    # -- counting -------------------------------------------------------------------

    def connection_error(self, condition: str) -> None:
        self.errors[condition] += 1

    def closed(self, handle: ConnectionHandle) -> None:
        self.closed_bytes_in += handle.bytes_in
        self.closed_bytes_out += handle.bytes_out

    # -- listings -------------------------------------------------------------------

    def describe(self, handle: ConnectionHandle) -> dict[str, object]:
        conn = handle.conn
        identity = handle.identity
        return {
            "name": handle.peer, "container_id": handle.container_id or "",
            "user": handle.user or "", "vhost": "/", "transport": handle.transport,
            "mechanism": identity.mechanism if identity is not None else "",
            "sessions": len(conn.sessions),
            "links": sum(len(s.links) for s in conn.sessions.values()),
            "bytes_in": handle.bytes_in, "bytes_out": handle.bytes_out,
            "opened_at": handle.opened_at,
        }

    def overview(self) -> dict[str, object]:
        c = self.container
        admin = c.admin
        queues = admin.list_queue_stats()
        memory = c.memory
        by_transport = Counter(h.transport for h in c.connections)
        return {
            "product": "amqpws-broker", "version": __version__, "node": c.config.container_id,
            "uptime_s": round(c.wall_clock() - self.started_at, 1),
            "now": c.wall_clock(),  # the broker's clock, for "… ago" without skew
            "listeners": list(c.listener_urls),
            "connections": len(c.connections), "connections_by_transport": dict(by_transport),
            "queues": len(queues), "exchanges": len(c.registry.exchanges),
            "messages_ready": sum(int(q["message_count"]) for q in queues),  # type: ignore[call-overload]
            "messages_unacked": sum(int(q["unacked"]) for q in queues),  # type: ignore[call-overload]
            "published": sum(int(q["published"]) for q in queues),  # type: ignore[call-overload]
            "delivered": sum(int(q["delivered"]) for q in queues),  # type: ignore[call-overload]
            "acked": sum(int(q["acked"]) for q in queues),  # type: ignore[call-overload]
            "bytes_in": self.closed_bytes_in + sum(h.bytes_in for h in c.connections),
            "bytes_out": self.closed_bytes_out + sum(h.bytes_out for h in c.connections),
            "memory": {
                "held_bytes": c.registry.held_bytes,
                "high_watermark": memory.high if memory is not None else None,
                "limit": memory.limit if memory is not None else None,
                "alarm": c.memory_alarm, "rss_bytes": self.rss,
            },
        }

    def snapshot(self) -> metrics.Snapshot:
        c = self.container
        memory = c.memory
        sessions = links = 0
        for h in c.connections:
            sessions += len(h.conn.sessions)
            links += sum(len(s.links) for s in h.conn.sessions.values())
        return metrics.Snapshot(
            connections_by_transport=Counter(h.transport for h in c.connections),
            sessions=sessions, links=links, queues=c.admin.list_queue_stats(),
            bytes_in=self.closed_bytes_in + sum(h.bytes_in for h in c.connections),
            bytes_out=self.closed_bytes_out + sum(h.bytes_out for h in c.connections),
            connections_opened=self.connections_opened, auth_failures=self.auth_failures,
            connection_errors=dict(self.errors), held_bytes=c.registry.held_bytes,
            memory_high_watermark=memory.high if memory is not None else 0,
            memory_alarm=c.memory_alarm, resident_bytes=self.rss)

    # -- acting ---------------------------------------------------------------------

    def publish(self, identity: Identity, message: Message) -> object:
        """A message from the console, routed by its `to` like a relayed one:
        the same permission checks, outcomes and memory alarm as any publisher."""
        c = self.container
        if c.memory_alarm:
            return Rejected(error=amqp_error(Condition.RESOURCE_LIMIT_EXCEEDED,
                                             "the memory alarm holds publishers back"))
        return Publisher(c.registry, None, identity=identity).store(message.payload,
                                                                    c.wall_clock())

    def health(self) -> tuple[bool, bool]:
        """(alive, ready): serving, and not shutting down."""
        return not self.container.stopping, not self.container.stopping

    def http_api(self) -> HttpApi:
        c = self.container
        return HttpApi(c.admin, c.access, overview=self.overview,
                       connections=c.list_connections, publish=self.publish,
                       metrics=lambda: metrics.render(self.snapshot()), health=self.health,
                       wall_clock=c.wall_clock, files=console_files(),
                       origin_allowed=lambda origin: origin_allowed(
                           origin, c.config.allowed_origins,
                           loopback_listener=listens_on_loopback(c.config)))


def console_files() -> dict[str, tuple[bytes, str]]:
    """The web console's static files (broker/console/), by URL path, read once."""
    files: dict[str, tuple[bytes, str]] = {}
    root = importlib.resources.files("broker") / "console"
    if not root.is_dir():
        return files
    for item in root.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
        if item.is_file() and suffix in CONSOLE_TYPES:
            files["/" + item.name] = (item.read_bytes(), CONSOLE_TYPES[suffix])
    return files
