"""AMQP over TCP: each accepted socket goes straight to the driver; on the
amqps listener, after its TLS handshake (tls.py)."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import Sequence

import trio

from broker.transports import tls
from broker.transports.accept import AcceptGuard, serve_listeners
from broker.transports.driver import CLOSE_TIMEOUT, ContainerLike, peer_name, serve_stream

TLS_HANDSHAKE_TIMEOUT = 10.0


async def handle_tcp_stream(
    stream: trio.abc.Stream,
    container: ContainerLike,
    *,
    close_timeout: float = CLOSE_TIMEOUT,
    tls_context: ssl.SSLContext | None = None,
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
    tls_identity: str = "cn",
) -> bool:
    """Serve one TCP connection until it ends (amqps: with `tls_context`;
    `tls_identity`: which name of a client certificate is its user); True
    when a plain one was handed over instead (driver.serve_stream)."""
    if isinstance(stream, trio.SocketStream):
        # The driver already coalesces frames; Nagle would only add latency.
        with contextlib.suppress(OSError):
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    peer = peer_name(stream)
    if tls_context is None:
        return await serve_stream(stream, container, peer=peer, transport="tcp",
                                  close_timeout=close_timeout)
    secure = await tls.handshake(stream, tls_context, peer=peer, label="amqps",
                                 timeout=tls_handshake_timeout)
    if secure is None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
        return False
    return await serve_stream(secure, container, peer=peer, transport="tls",
                              close_timeout=close_timeout,
                              tls_subject=tls.client_subject(secure, tls_identity))


async def serve_tcp(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    container: ContainerLike,
    *,
    handler_nursery: trio.Nursery | None = None,
    guard: AcceptGuard | None = None,
    tls_context: ssl.SSLContext | None = None,
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
    tls_identity: str = "cn",
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on `listeners` (closing them when cancelled) until cancelled.

    Connections run in `handler_nursery`, so the server can stop accepting
    and still give open connections time to close. `guard` counts and logs
    accepts refused for lack of descriptors (see accept.py).  With
    `tls_context` this is the amqps listener.
    """
    handler = functools.partial(handle_tcp_stream, container=container,
                                tls_context=tls_context,
                                tls_handshake_timeout=tls_handshake_timeout,
                                tls_identity=tls_identity)
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, guard=guard, task_status=task_status
    )
