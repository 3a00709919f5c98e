"""AMQP over plain TCP: each accepted socket goes straight to the driver."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Sequence

import trio

from broker.transports.accept import AcceptGuard, serve_listeners
from broker.transports.driver import CLOSE_TIMEOUT, ContainerLike, peer_name, serve_stream


async def handle_tcp_stream(
    stream: trio.abc.Stream, container: ContainerLike, *, close_timeout: float = CLOSE_TIMEOUT
) -> None:
    """Serve one TCP connection until it ends."""
    if isinstance(stream, trio.SocketStream):
        # The driver already coalesces frames; Nagle would only add latency.
        with contextlib.suppress(OSError):
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    await serve_stream(
        stream, container, peer=peer_name(stream), transport="tcp", close_timeout=close_timeout
    )


async def serve_tcp(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    container: ContainerLike,
    *,
    handler_nursery: trio.Nursery | None = None,
    guard: AcceptGuard | None = None,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on `listeners` (closing them when cancelled) until cancelled.

    Connections run in `handler_nursery`, so the server can stop accepting
    and still give open connections time to close. `guard` counts and logs
    accepts refused for lack of descriptors (see accept.py).
    """
    handler = functools.partial(handle_tcp_stream, container=container)
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, guard=guard, task_status=task_status
    )
