"""AMQP over WebSocket (OASIS amqp-wsb v1.0): a handshake, then the driver.

After the upgrade the bytes are exactly the TCP byte stream, so
`WebSocketStream` turns binary messages into a `trio.abc.Stream` and the
same driver runs the connection. Message boundaries mean nothing: one AMQP
frame may span several messages and one message may carry several frames.
Subprotocol choice, paths and limits follow NOTES.md (WebSocket binding).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from broker.config import Config
from broker.transports.driver import (
    CLOSE_TIMEOUT,
    RECEIVE_SIZE,
    ContainerLike,
    peer_name,
    serve_stream,
)

log = logging.getLogger("broker.transport")

# Preference order: the standard token, then Azure's pre-standard one, then
# what rhea in the browser and websockify-style tools also offer.
SUBPROTOCOLS = ("amqp", "AMQPWSB10", "binary")
HANDSHAKE_TIMEOUT = 10.0
CLOSE_UNSUPPORTED_DATA = 1003  # RFC 6455 §7.4.1


def pick_subprotocol(offered: Sequence[str]) -> str | None:
    """The token to echo, or None when the client offered none.

    Browsers fail a connection whose echo they did not offer, so we never
    invent one; raises ValueError when only unknown tokens were offered.
    """
    if not offered:
        return None
    for token in SUBPROTOCOLS:
        if token in offered:
            return token
    raise ValueError(
        f"unsupported WebSocket subprotocol(s) {', '.join(offered)}; "
        f"offer one of {', '.join(SUBPROTOCOLS)}"
    )


def max_ws_message_size(config: Config) -> int:
    """Largest WebSocket message we accept.

    Clients may put a whole AMQP message (several frames) in one WebSocket
    message; a too-small limit (Artemis's 64 KiB) breaks them with 1009
    instead of letting the engine answer with a proper AMQP error.
    """
    return max(
        16 * 1024 * 1024,
        2 * config.max_frame_size,
        config.max_message_size + config.max_frame_size,
    )


class WebSocketStream(trio.abc.Stream):
    """A byte stream over a WebSocket: binary messages in, one binary message
    per `send_all` out; a text message closes the WebSocket with 1003."""

    def __init__(
        self, ws: WebSocketConnection, *, peer: str = "", close_timeout: float = CLOSE_TIMEOUT
    ) -> None:
        self.ws = ws
        self.peer = peer
        self._close_timeout = close_timeout
        self._pending = memoryview(b"")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._pending:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return b""  # clean WebSocket close or lost socket: EOF to the engine
            if isinstance(message, str):
                log.info("ws %s sent a text message; closing with 1003", self.peer)
                with trio.move_on_after(self._close_timeout):
                    await self.ws.aclose(CLOSE_UNSUPPORTED_DATA, "AMQP needs binary messages")
                return b""
            self._pending = memoryview(message)  # empty messages are skipped
        if max_bytes is None or max_bytes >= len(self._pending):
            data, self._pending = self._pending, memoryview(b"")
        else:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data.tobytes()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.ws.send_message(bytes(data))
        except ConnectionClosed as exc:
            raise trio.BrokenResourceError(f"WebSocket closed: {exc.reason}") from None

    async def wait_send_all_might_not_block(self) -> None:
        pass  # trio-websocket exposes no such hint; send_all simply blocks

    async def aclose(self) -> None:
        """The WebSocket closing handshake, then the TCP close (trio-websocket)."""
        await self.ws.aclose()


async def handle_websocket_stream(
    stream: trio.abc.Stream,
    container: ContainerLike,
    config: Config,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    close_timeout: float = CLOSE_TIMEOUT,
) -> None:
    """Serve one accepted stream: the HTTP upgrade, then AMQP until the end."""
    peer = peer_name(stream)
    try:
        async with trio.open_nursery() as nursery:  # trio-websocket's reader task
            try:
                ws = await _handshake(nursery, stream, config, peer, handshake_timeout)
                if ws is not None:
                    ws_stream = WebSocketStream(ws, peer=peer, close_timeout=close_timeout)
                    await serve_stream(
                        ws_stream, container, peer=peer, transport="ws", close_timeout=close_timeout
                    )
            finally:
                nursery.cancel_scope.cancel()
    except Exception:
        log.exception("ws %s failed", peer)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _handshake(
    nursery: trio.Nursery, stream: trio.abc.Stream, config: Config, peer: str, timeout: float
) -> WebSocketConnection | None:
    """Accept or refuse the upgrade; None when refused or abandoned."""
    with trio.move_on_after(timeout):
        request = await wrap_server_stream(
            nursery,
            stream,
            max_message_size=max_ws_message_size(config),
            receive_buffer_size=RECEIVE_SIZE,
        )
        path = request.path.partition("?")[0]
        try:
            if config.ws_path is not None and path != config.ws_path:
                await _refuse(request, 404, f"no AMQP endpoint at {path}; use {config.ws_path}")
                log.info("ws %s refused: path %s", peer, path)
                return None
            try:
                subprotocol = pick_subprotocol(request.proposed_subprotocols)
            except ValueError as exc:
                await _refuse(request, 400, str(exc))
                log.info("ws %s refused: %s", peer, exc)
                return None
            ws = await request.accept(subprotocol=subprotocol)
        except ConnectionClosed:
            log.info("ws %s lost during the handshake", peer)
            return None
        log.debug("ws %s upgraded on %s, subprotocol %s", peer, path, subprotocol)
        return ws
    log.info("ws %s: no WebSocket handshake within %ss", peer, timeout)
    return None


async def _refuse(request: WebSocketRequest, status: int, reason: str) -> None:
    await request.reject(
        status,
        extra_headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
        body=reason.encode() + b"\n",
    )


async def serve_websocket(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    container: ContainerLike,
    config: Config,
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket connections on `listeners` until cancelled."""
    handler = functools.partial(handle_websocket_stream, container=container, config=config)
    await trio.serve_listeners(
        handler, list(listeners), handler_nursery=handler_nursery, task_status=task_status
    )
