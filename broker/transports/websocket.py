"""AMQP over WebSocket (OASIS amqp-wsb v1.0): a handshake, then the driver.

After the upgrade the bytes are exactly the TCP byte stream, so
`WebSocketStream` turns binary messages into a `trio.abc.Stream` and the
same driver runs the connection. Message boundaries mean nothing: one AMQP
frame may span several messages and one message may carry several frames.
Subprotocol choice and paths follow NOTES.md (WebSocket binding).

Why not trio-websocket here: it runs a reader task that hands every
WebSocket message to the consumer through a channel, one task switch per
message; rhea sends a message per AMQP frame, and that handoff made a
WebSocket connection cost 4-5x the broker CPU of a TCP one.  wsproto (the
sans-io protocol trio-websocket is built on) does the HTTP upgrade, and
`wsframes.WsFrameReader` parses the frames inline in the driver's own read,
as the TCP path does.  Payloads are streamed as they arrive, never buffered
whole, so no message-size limit is needed beyond the AMQP engine's own
frame and message limits.

Before accepting an upgrade: the page's `Origin` must be allowed
(`access.origin_allowed`: 403 otherwise), and an `Authorization: Bearer`
token must verify (401 with `WWW-Authenticate: Bearer error="invalid_token"`
otherwise); a verified token makes the connection that token's user.  On the
wss listener the TLS handshake comes first (tls.py).
"""

from __future__ import annotations

import collections
import functools
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import RemoteProtocolError

from broker.access import origin_allowed
from broker.config import Config, listens_on_loopback
from broker.peerlog import PeerLog
from broker.transports import http, tls
from broker.transports.accept import AcceptGuard, serve_listeners
from broker.transports.driver import (
    CLOSE_TIMEOUT,
    RECEIVE_SIZE,
    TRANSPORT_ERRORS,
    ContainerLike,
    peer_name,
    receive_socket,
    serve_stream,
)
from broker.transports.wsframes import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WsControl,
    WsFrameReader,
    WsProtocolError,
    close_frame,
    encode_frame,
    frame_head,
)

log = logging.getLogger("broker.transport")
# refused upgrades: one line per peer host and reason a minute, with a count
refusals = PeerLog(time.monotonic, log)

# Preference order: the standard token, then Azure's pre-standard one, then
# what rhea in the browser and websockify-style tools also offer.
SUBPROTOCOLS = ("amqp", "AMQPWSB10", "binary")
HANDSHAKE_TIMEOUT = 10.0
# A read of at most one masked client frame holding an empty AMQP frame (2 + 4
# + 8 bytes: a heartbeat): receive_some's next read waits for the socket first
HEARTBEAT_READ = 14
class Upgrade:
    """What the upgrade request established about the peer, for the container."""

    def __init__(self, ws: WSConnection, bearer: Any = None) -> None:
        self.ws = ws
        self.bearer = bearer


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


class WebSocketStream(trio.abc.Stream):
    """A byte stream over a WebSocket: binary messages in, one binary message
    per `send_all` out; pings answered; a text message closes with 1003.
    Over a plain socket the driver's SocketPump reads and writes the socket
    itself through `decode`, `take_replies` and `frame` (no I/O of ours then).

    `pending` carries payload bytes wsproto already parsed during the
    handshake (a client that pipelined frames behind its upgrade request)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        peer: str = "",
        close_timeout: float = CLOSE_TIMEOUT,
        pending: bytes = b"",
    ) -> None:
        self.stream = stream
        self.peer = peer
        self._close_timeout = close_timeout
        self._reader = WsFrameReader()
        self._sending = False  # a send_all in progress (the reader sends pongs and closes too)
        # senders waiting, in turn; made when first needed (an empty deque is 0.7 KiB)
        self._waiting: collections.deque[trio.Event] | None = None
        self._pending = pending
        # a plain TCP socket under us: a SocketPump's poller reads it (direct_fd);
        # our own receive_some reads it directly too (pump.receive_socket)
        self._fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        self._eager = True
        self._eof = False  # no more input will be used
        self._close_sent = False
        self.replies = bytearray()  # control frames' answers not sent yet

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The payload bytes of whatever WebSocket frames the next read brings."""
        if data := self.take_pending():
            return data
        while not self._eof:
            if self._fd < 0:
                raw = await self.stream.receive_some(RECEIVE_SIZE)
            else:
                raw = await receive_socket(self._fd, self._eager)
                self._eager = len(raw) > HEARTBEAT_READ
            if not raw:
                self._eof = True
                break
            data = self.decode(bytes(raw))
            if replies := self.take_replies():
                await self._send_raw(replies)
            if data:
                return data
        return b""

    # -- the synchronous surface socketpump.SocketPump drives over a plain socket --

    @property
    def direct_fd(self) -> int:
        """The plain socket under us (-1 under TLS): a SocketPump may then read
        it with `decode` and write `take_replies` and `frame` itself."""
        return self._fd

    def take_pending(self) -> bytes:
        """Payload that came with the upgrade request (fed before any read)."""
        data, self._pending = self._pending, b""
        return data

    @property
    def at_eof(self) -> bool:
        """No more input will be used (the peer's close, a text message, a
        protocol error)."""
        return self._eof

    def decode(self, raw: bytes) -> bytes:
        """The payload of the frames in `raw`; control frames' answers (pongs,
        closes) go to `replies`, to be sent before anything else."""
        chunks: list[bytes] = []
        try:
            for event in self._reader.feed(raw):
                if type(event) is bytes:
                    chunks.append(event)
                else:
                    self._on_other(event, self.replies)  # type: ignore[arg-type]
        except WsProtocolError as exc:
            log.info("ws %s protocol error: %s; closing with 1002", self.peer, exc)
            self.replies += self._close(CLOSE_PROTOCOL_ERROR, "protocol error")
            self._eof = True
        if not chunks:
            return b""
        return b"".join(chunks) if len(chunks) > 1 else chunks[0]

    @property
    def has_replies(self) -> bool:
        """Pongs or a close are waiting for `take_replies`."""
        return bool(self.replies)

    def take_replies(self) -> bytes:
        if not self.replies:
            return b""
        replies, self.replies = bytes(self.replies), bytearray()
        return replies

    def frame_head(self, size: int) -> bytes:
        """The header of one binary message of `size` bytes, which the caller
        writes after it; BrokenResourceError once closing."""
        if self._close_sent:
            raise trio.BrokenResourceError("WebSocket is closing")
        return frame_head(OP_BINARY, size)

    def _on_other(self, event: WsControl | int, replies: bytearray) -> None:
        if self._eof:
            return
        if event == OP_TEXT:
            log.info("ws %s sent a text message; closing with 1003", self.peer)
            replies += self._close(CLOSE_UNSUPPORTED_DATA, "AMQP needs binary messages")
            self._eof = True
        elif isinstance(event, WsControl):
            if event.opcode == OP_PING:
                replies += encode_frame(OP_PONG, event.payload)
            elif event.opcode == OP_CLOSE:
                # echo the peer's status code (§5.5.1), then the byte stream ends
                replies += self._close_echo(event.payload)
                self._eof = True

    def _close(self, code: int, reason: str = "") -> bytes:
        if self._close_sent:
            return b""
        self._close_sent = True
        return close_frame(code, reason)

    def _close_echo(self, payload: bytes) -> bytes:
        if self._close_sent:
            return b""
        self._close_sent = True
        return encode_frame(OP_CLOSE, payload[:2])

    async def _send_raw(self, data: bytes) -> None:
        # One sender at a time: the writer's messages, the reader's pongs and
        # closes.  Nearly always free, so a flag, not a trio lock (whose
        # bookkeeping cost as much as the WebSocket framing itself); a sender
        # that had to wait is handed the turn directly, first come first
        # served, so a pong is never starved by a busy writer.
        if self._sending or self._waiting:
            turn = trio.Event()
            if self._waiting is None:
                self._waiting = collections.deque()
            self._waiting.append(turn)
            try:
                await turn.wait()
            except BaseException:
                if turn.is_set():
                    self._pass_turn()  # it was handed to us: hand it on
                elif self._waiting is not None:
                    self._waiting.remove(turn)
                raise
        self._sending = True
        try:
            await self.stream.send_all(data)
        finally:
            self._pass_turn()

    def _pass_turn(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()  # still sending: the turn goes to the next
        else:
            self._sending = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._close_sent:
            raise trio.BrokenResourceError("WebSocket is closing")
        await self._send_raw(encode_frame(OP_BINARY, data))  # the one copy of the data

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """The WebSocket closing handshake (bounded), then the TCP close."""
        try:
            with trio.move_on_after(self._close_timeout):
                if not self._close_sent:
                    await self._send_raw(self._close(CLOSE_NORMAL))
                    while not self._eof:  # wait for the peer's close frame
                        await self.receive_some()
        except TRANSPORT_ERRORS:
            pass
        finally:
            await trio.aclose_forcefully(self.stream)


async def handle_websocket_stream(
    stream: trio.abc.Stream,
    container: ContainerLike,
    config: Config,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    close_timeout: float = CLOSE_TIMEOUT,
    tls_context: ssl.SSLContext | None = None,
) -> bool:
    """Serve one accepted stream: TLS (wss), the HTTP upgrade, then AMQP until
    the end; True when the connection was handed over (driver.serve_stream)."""
    peer = peer_name(stream)
    transport = "ws"
    tls_subject = None
    handed_over = False
    try:
        if tls_context is not None:
            secure = await tls.handshake(stream, tls_context, peer=peer, label="wss",
                                         timeout=handshake_timeout)
            if secure is None:
                return False
            stream, transport = secure, "wss"
            tls_subject = tls.client_subject(secure, config.tls_identity)
        upgrade = await _handshake(stream, config, container, peer, handshake_timeout)
        if upgrade is not None:
            # Frames that arrived with the upgrade request were parsed by wsproto.
            pending = b"".join(
                bytes(e.data) for e in upgrade.ws.events() if isinstance(e, BytesMessage)
            )
            bearer = upgrade.bearer
            del upgrade  # the handshake's wsproto and h11 state: 4.6 KiB, no longer needed
            ws_stream = WebSocketStream(
                stream, peer=peer, close_timeout=close_timeout, pending=pending
            )
            handed_over = await serve_stream(
                ws_stream, container, peer=peer, transport=transport,
                close_timeout=close_timeout, bearer=bearer, tls_subject=tls_subject,
            )
    except Exception:
        log.exception("ws %s failed", peer)
    finally:
        if not handed_over:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
    return handed_over


async def _handshake(
    stream: trio.abc.Stream, config: Config, container: ContainerLike, peer: str,
    timeout: float,
) -> Upgrade | None:
    """Accept or refuse the upgrade; None when refused, abandoned, or a plain
    HTTP request (answered by http.py: the console, /metrics, /healthz)."""
    ws = WSConnection(ConnectionType.SERVER)
    with trio.move_on_after(timeout):
        try:
            try:
                head = await http.read_head(stream)
            except http.HeadTooLarge:
                refusals.info(peer, "ws upgrade refused: request head over %d bytes",
                              http.MAX_HEAD)
                await stream.send_all(http.TOO_LARGE)
                return None
            if not head:
                log.info("ws %s lost during the handshake", peer)
                return None
            if not http.is_websocket_upgrade(head):
                await http.serve_request(stream, head, container, peer)
                return None
            ws.receive_data(head)
            request = await _read_request(stream, ws)
        except RemoteProtocolError as exc:  # e.g. plain HTTP without an Upgrade
            refusals.info(peer, "ws upgrade refused: %s", exc)
            if exc.event_hint is not None:
                await stream.send_all(ws.send(exc.event_hint))
            return None
        except TRANSPORT_ERRORS:
            return None
        if request is None:
            log.info("ws %s lost during the handshake", peer)
            return None
        path = request.target.partition("?")[0]
        if config.ws_path is not None and path != config.ws_path:
            refusals.info(peer, "ws upgrade refused: path %s", path[:200])
            await _refuse(stream, ws, 404, f"no AMQP endpoint at {path}; use {config.ws_path}")
            return None
        headers = _headers(request)
        origin = headers.get("origin")
        if not origin_allowed(origin, config.allowed_origins,
                              loopback_listener=listens_on_loopback(config)):
            refusals.info(peer, "ws upgrade refused: origin %r is not allowed (--allowed-origin)",
                          origin[:200] if origin else origin)
            await _refuse(stream, ws, 403, f"origin {origin[:200] if origin else origin} "
                                           "may not open AMQP WebSockets to this broker")
            return None
        bearer = None
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            try:
                bearer = container.verify_bearer(credentials.strip())
            except ValueError as exc:
                refusals.info(peer, "ws upgrade refused: bearer token: %s", exc)
                await _refuse(stream, ws, 401, f"bearer token refused: {exc}", extra=[
                    (b"www-authenticate", b'Bearer error="invalid_token"')])
                return None
        try:
            subprotocol = pick_subprotocol(request.subprotocols)
        except ValueError as exc:
            refusals.info(peer, "ws upgrade refused: %s", exc)
            await _refuse(stream, ws, 400, str(exc))
            return None
        await stream.send_all(ws.send(AcceptConnection(subprotocol=subprotocol)))
        log.debug("ws %s upgraded on %s, subprotocol %s%s", peer, path, subprotocol,
                  ", with a bearer token" if bearer is not None else "")
        return Upgrade(ws, bearer)
    refusals.info(peer, "no WebSocket handshake within %ss", timeout)
    return None


def _headers(request: Request) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones)."""
    return {bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
            for name, value in request.extra_headers}


async def _read_request(stream: trio.abc.Stream, ws: WSConnection) -> Request | None:
    while True:
        for event in ws.events():
            if isinstance(event, Request):
                return event
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            return None
        ws.receive_data(bytes(data))


async def _refuse(stream: trio.abc.Stream, ws: WSConnection, status: int, reason: str,
                  extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = reason.encode() + b"\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode()), *extra]
    try:
        await stream.send_all(
            ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            + ws.send(RejectData(data=body))
        )
    except TRANSPORT_ERRORS:
        pass


async def serve_websocket(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    container: ContainerLike,
    config: Config,
    *,
    handler_nursery: trio.Nursery | None = None,
    guard: AcceptGuard | None = None,
    tls_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket connections on `listeners` until cancelled (`guard`: see
    accept.py); with `tls_context` this is the wss listener."""
    handler = functools.partial(handle_websocket_stream, container=container, config=config,
                                tls_context=tls_context)
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, guard=guard, task_status=task_status
    )
