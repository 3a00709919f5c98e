"""I/O edge of the broker: TCP and WebSocket listeners feeding one driver.

Everything trio-specific below `server.py` lives here; the engine behind the
container only ever sees bytes, `tick()` and `connection_lost()`.
"""

from __future__ import annotations

from broker.transports.accept import AcceptGuard
from broker.transports.driver import (
    CLOSE_TIMEOUT,
    ConnectionHandle,
    ContainerLike,
    Wakeup,
    drive,
    peer_name,
    serve_stream,
)
from broker.transports.tcp import handle_tcp_stream, serve_tcp
from broker.transports.websocket import (
    SUBPROTOCOLS,
    WebSocketStream,
    handle_websocket_stream,
    pick_subprotocol,
    serve_websocket,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "SUBPROTOCOLS",
    "AcceptGuard",
    "ConnectionHandle",
    "ContainerLike",
    "Wakeup",
    "WebSocketStream",
    "drive",
    "handle_tcp_stream",
    "handle_websocket_stream",
    "peer_name",
    "pick_subprotocol",
    "serve_stream",
    "serve_tcp",
    "serve_websocket",
]
