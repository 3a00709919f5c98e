"""`amqpws-broker gateway`: the listeners of `serve` in front of an upstream
broker (gateway/), plus the tasks that dial the upstream nodes.

The listeners, shutdown and housekeeping are `server.serve`'s, given the
`Gateway` as its container; this module adds one task per upstream
connection slot.  A slot dials its node (TCP, or TLS for amqps:// with the
system's CAs or `--upstream-ca`), drives the connection with the same driver
as every client connection, and when the connection fails or ends dials the
next node in the list after the pool's backoff.  When the pool wants more
connections than it has slots (every connection holds as many sessions as
the upstream allows), another slot starts.
"""

from __future__ import annotations

import functools
import logging
import ssl

import trio

from broker.config import Config
from broker.gateway.core import Gateway
from broker.gateway.identity import Login
from broker.gateway.upstream import UpstreamNode, UpstreamPool
from broker.server import ContainerFactory
from broker.transports.driver import Wakeup, drive

log = logging.getLogger("broker.gateway")

CONNECT_TIMEOUT = 10.0  # seconds for TCP, TLS and the AMQP open together
POOL_POLL = 0.2  # seconds between looks at whether the pool wants more slots


def gateway_factory(nodes: list[UpstreamNode], *, connections: int,
                    upstream_ca: str | None = None) -> ContainerFactory:
    """What `server.serve` builds its container with in gateway mode."""

    def build(config: Config) -> Gateway:
        gateway = Gateway(config, nodes, connections=connections, clock=trio.current_time)
        context = _tls_context(upstream_ca) if any(n.tls for n in nodes) else None
        gateway.background = functools.partial(run_upstreams, gateway, context)
        return gateway

    return build


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["amqp"])  # harmless where the server has none
    return context


async def run_upstreams(gateway: Gateway, context: ssl.SSLContext | None) -> None:
    """Keep the pool's connections up until cancelled; in passthrough mode,
    open each user's connection when the gateway asks for it."""
    pool = gateway.pool
    async with trio.open_nursery() as nursery:
        if gateway.passthrough:
            gateway.dial = lambda login: nursery.start_soon(_dial_login, gateway, login,
                                                            context)
            await trio.sleep_forever()
        slots = 0
        while True:
            while slots < pool.wanted:
                nursery.start_soon(_slot, gateway, pool, context)
                slots += 1
            await trio.sleep(POOL_POLL)


async def _slot(gateway: Gateway, pool: UpstreamPool, context: ssl.SSLContext | None) -> None:
    """One connection slot: dial, drive, and after an end dial the next node."""
    node = pool.next_node(None)
    failures = 0
    while not gateway.stopping:
        delay = pool.backoff(failures)
        if delay:
            await trio.sleep(delay)
        opened = False
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await _connect(node, context)
        except (OSError, trio.TooSlowError, ssl.SSLError) as exc:
            failures += 1
            following = pool.next_node(node)
            # once a minute per node, with a count: a node down for an hour is one line a minute
            gateway.peer_log.warning(node.label, "cannot connect (%s); trying %s in %.1f s",
                                     exc or type(exc).__name__, following.label,
                                     pool.backoff(failures))
            node = following
            continue
        wakeup = Wakeup()
        upstream = gateway.upstream_made(node, wakeup.wake)
        try:
            reason = await drive(stream, upstream, wakeup)
        finally:
            opened = upstream.peer_container is not None
            gateway.upstream_gone(upstream)
        if gateway.stopping:
            return
        failures = 1 if opened else failures + 1
        following = pool.next_node(node)
        if not opened:  # one that opened and then went: the gateway said so (upstream_closed)
            failure = upstream.conn.failure
            gateway.peer_log.warning(node.label, "did not open a connection (%s); trying %s "
                                     "in %.1f s", failure.description if failure else reason,
                                     following.label, pool.backoff(failures))
        node = following


async def _dial_login(gateway: Gateway, login: Login, context: ssl.SSLContext | None) -> None:
    """A passthrough user's own connection: the nodes tried once each, in
    order; it lives while it carries that user's sessions (the gateway closes
    it when idle) and is opened again on the user's next attach."""
    pool = gateway.pool
    node = pool.next_node(None)
    errors = []
    for _ in pool.nodes:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await _connect(node, context)
        except (OSError, trio.TooSlowError, ssl.SSLError) as exc:
            errors.append(f"{node.label}: {exc or type(exc).__name__}")
            node = pool.next_node(node)
            continue
        wakeup = Wakeup()
        upstream = gateway.upstream_made(node, wakeup.wake, login=login)
        try:
            await drive(stream, upstream, wakeup)
        finally:
            gateway.upstream_gone(upstream)
        return
    log.warning("upstream for user %r: no node could be reached (%s)", login.user,
                "; ".join(errors))
    gateway.dial_failed(login, "; ".join(errors))


async def _connect(node: UpstreamNode, context: ssl.SSLContext | None) -> trio.abc.Stream:
    stream: trio.abc.Stream = await trio.open_tcp_stream(node.host, node.port)
    if node.tls:
        assert context is not None
        tls = trio.SSLStream(stream, context, server_hostname=node.host)
        await tls.do_handshake()
        stream = tls
    return stream
