"""Run python-qpid-proton over WebSocket (AMQP WebSocket Binding, subprotocol `amqp`).

Proton's own I/O speaks TCP only, but its protocol engine is sans-io: a
`proton.Transport` takes bytes in (`push`) and hands bytes out (`peek`/`pop`),
a `proton.Collector` reports what changed, and `tick(now)` says when the next
heartbeat or idle check is due.  This module is the I/O shell around that
engine, with trio-websocket carrying the bytes::

    import trio
    from proton import Message
    from broker.client import proton_ws

    async def main():
        async with proton_ws.connect("ws://localhost:15678/ws",
                                     user="guest", password="guest") as conn:
            sender = await conn.open_sender("/queues/greetings")
            outcome = await sender.send(Message(body="hello"))
            assert outcome.accepted
            receiver = await conn.open_receiver("/queues/greetings", credit=10)
            got = await receiver.receive(timeout=5)
            print(got.message.body)
            got.accept()

    trio.run(main)

Code that is not async can use `BlockingConnection`, which runs the same
machinery on a trio loop in a background thread (much like proton's own
`proton.utils.BlockingConnection`)::

    with proton_ws.BlockingConnection("ws://localhost:15678/ws") as conn:
        conn.create_sender("/queues/q").send(Message(body=b"x"))
        got = conn.create_receiver("/queues/q").receive(timeout=5)
        got.accept()

Connecting to SAP Event Mesh (or any AMQP-over-WebSocket broker with OAuth2)
------------------------------------------------------------------------------

Such brokers take an OAuth2 access token as `Authorization: Bearer <token>` on
the WebSocket upgrade request.  The identity comes from that token, so the
AMQP connection itself usually goes SASL ANONYMOUS: the default here when no
`user=` is given.  For SAP Event Mesh, the values come from the service key's
`messaging` entry whose `protocol` lists `amqp10ws`: `oa2.tokenendpoint`,
`oa2.clientid`, `oa2.clientsecret` and `uri`::

    tokens = proton_ws.oauth2_client_credentials(
        "https://SUBDOMAIN.authentication.REGION.hana.ondemand.com/oauth/token",
        client_id, client_secret)
    async with proton_ws.connect("wss://HOST/protocols/amqp10ws",
                                 token_provider=tokens) as conn:
        sender = await conn.open_sender(ADDRESS)  # in the broker's address syntax

`BlockingConnection(url, token_provider=tokens)` does the same from plain
code.  Other options for such brokers: `headers={...}` adds HTTP headers to
the upgrade request; `ca_file=` trusts a private CA for `wss://` (instead of
the system's trust store), `ssl_context=` takes a complete `ssl.SSLContext`.

When tokens are fetched: the upgrade request is the only place the token
travels, and its headers cannot change once the WebSocket is open, so there
is no refresh on an open connection.  The provider is called (in a worker
thread) at every connect: each new connection, each reconnect of yours.  The
one made by `oauth2_client_credentials` keeps its token until 30 s before it
expires, so repeated connects do not ask the token endpoint each time; wrap
your own provider in `CachedTokenProvider` for the same.  An upgrade refused
with HTTP 401 drops the cached token, so the next connect fetches a new one.
Whether the broker closes a connection whose token has since expired is up
to the broker; if it does, connect again.

Theory of operation.  `AsyncConnection` runs two tasks over one WebSocket:

- the *reader* pushes every binary WebSocket message into the transport (a
  message is a slice of the byte stream, not a frame: proton's frame reader
  reassembles whatever boundaries the broker chose), then processes events;
- the *writer* processes events, calls `transport.tick(now)`, and sends
  whatever the transport has to say, in WebSocket messages of at most
  `chunk_size` bytes; it sleeps until something is "kicked" (any local
  action, any input) or the tick deadline passes.

Everything runs on one trio thread, so proton objects are never touched
concurrently.  Public methods change proton state, kick the writer, and wait
on a "something changed" event until their condition holds.  Closing sends
the AMQP `close`, waits for the peer's, then closes the WebSocket; `abort()`
drops the WebSocket without an AMQP `close` (a lost connection, as far as the
broker can tell).

Proton objects stay reachable (`conn.connection`, `conn.transport`,
`sender.link`, `received.delivery`) for anything the helpers do not cover; an
optional proton `Handler` (for example a `MessagingHandler` subclass) passed
as `handler=` sees every collector event as well.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import re
import ssl
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import trio
import trio_websocket

try:
    import proton  # noqa: F401  (a clear word first, if the extra is missing)
except ImportError as exc:  # tests/client: a subprocess without proton
    raise ImportError("broker.client.proton_ws needs python-qpid-proton: "
                      "pip install 'amqpws-broker[client]'") from exc
from proton import (
    Collector,
    Condition,
    Connection,
    ConnectionException,
    Data,
    Delivery,
    Disposition,
    Endpoint,
    Event,
    Handler,
    Link,
    LinkException,
    Message,
    SymbolList,
    Terminus,
    Timeout,
    Transport,
    symbol,
)

from broker.client.tokens import (
    AccessToken,
    CachedTokenProvider,
    TokenLike,
    TokenProvider,
    TokenRequestError,
    as_access_token,
    oauth2_client_credentials,
    safe_url,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "AccessToken",
    "AsyncConnection",
    "AsyncReceiver",
    "AsyncSender",
    "BlockingConnection",
    "BlockingReceived",
    "BlockingReceiver",
    "BlockingSender",
    "CachedTokenProvider",
    "Outcome",
    "Received",
    "TokenLike",
    "TokenProvider",
    "TokenRequestError",
    "WebSocketConnectError",
    "connect",
    "oauth2_client_credentials",
    "stream_offset_filter",
]

#: Largest WebSocket message we send unless told otherwise.  Brokers cap the
#: messages they accept (Artemis at 64 KiB), so a burst of output is cut up.
DEFAULT_CHUNK_SIZE = 64 * 1024
#: Largest WebSocket message we accept from the broker.
MAX_WS_MESSAGE_SIZE = 64 * 1024 * 1024
SUBPROTOCOLS = ("amqp",)

T = TypeVar("T")
_names = itertools.count(1)

_STATES: dict[object, str] = {
    Disposition.ACCEPTED: "accepted",
    Disposition.REJECTED: "rejected",
    Disposition.RELEASED: "released",
    Disposition.MODIFIED: "modified",
    Disposition.RECEIVED: "received",
}


@dataclass(frozen=True)
class Outcome:
    """What the broker said about one sent message.

    `state` is "accepted", "rejected", "released", "modified", "received", or
    "settled" when the broker settled without a state."""

    state: str
    condition: Condition | None = None
    delivery_failed: bool = False
    undeliverable_here: bool = False

    @property
    def accepted(self) -> bool:
        return self.state == "accepted"

    @classmethod
    def of(cls, delivery: Delivery) -> Outcome:
        remote = delivery.remote
        return cls(
            state=_STATES.get(delivery.remote_state, "settled"),
            condition=remote.condition,
            delivery_failed=bool(remote.failed),
            undeliverable_here=bool(remote.undeliverable),
        )


def stream_offset_filter(spec: str | int) -> dict[str, Any]:
    """A source filter map selecting where a stream receiver starts.

    `spec` is "first", "last", "next", an interval such as "10m", an offset
    (int), or a `proton.timestamp` (ms since the epoch); the filter value is
    described by the symbol `rabbitmq:stream-offset-spec` (RabbitMQ streams)."""
    from proton import Described

    return {
        symbol("rabbitmq:stream-offset-spec"): Described(
            symbol("rabbitmq:stream-offset-spec"), spec
        )
    }


def _set_filter(terminus: Terminus, filters: dict[Any, Any]) -> None:
    terminus.filter.put_dict(
        {symbol(k) if isinstance(k, str) else k: v for k, v in filters.items()}
    )


async def _bearer_token(provider: TokenProvider) -> str:
    # In a worker thread: providers do blocking HTTP.  Abandoned on cancel so
    # a caller's deadline holds; the thread finishes (and caches) on its own.
    result = await trio.to_thread.run_sync(provider, abandon_on_cancel=True)
    token = as_access_token(result).token
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        # Printable ASCII without spaces is the RFC 6750 §2.1 b64token (and
        # keeps line breaks out of the request); the token itself stays unsaid.
        raise ValueError("token provider returned an empty token or one with invalid characters")
    return token


# -- the WebSocket: URL, TLS, upgrade headers ----------------------------------------


class WebSocketConnectError(ConnectionException):
    """The WebSocket could not be opened: TCP connect, TLS handshake, or the
    HTTP upgrade failed.  `status_code` is the HTTP status when the server
    refused the upgrade (401: the token or credentials were not accepted)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


_ByteStream = trio.SocketStream | trio.SSLStream[trio.SocketStream]
_HANDSHAKE_HEADERS = frozenset({"host", "upgrade", "connection", "content-length"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2 token


def _upgrade_headers(
    headers: Mapping[str, str] | None, *, with_token: bool
) -> list[tuple[bytes, bytes]]:
    """`headers` as trio-websocket wants them, refusing what would break the
    request (line breaks, bad names) before anything is sent."""
    encoded: list[tuple[bytes, bytes]] = []
    for name, value in (headers or {}).items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"not an HTTP header name: {name!r}")
        if name.lower() in _HANDSHAKE_HEADERS or name.lower().startswith("sec-websocket-"):
            raise ValueError(f"header {name} is set by the WebSocket handshake itself")
        if with_token and name.lower() == "authorization":
            raise ValueError("give token_provider or an Authorization header, not both")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"the value of header {name} contains a line break or NUL")
        try:
            encoded.append((name.lower().encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise ValueError(f"the value of header {name} is not Latin-1 text") from None
    return encoded


def _tls_context(
    url: str, ssl_context: ssl.SSLContext | None, ca_file: str | os.PathLike[str] | None
) -> ssl.SSLContext | None:
    """The TLS context for `url` (None for ws://), after checking the URL:
    mistakes surface before a token is fetched or a socket opened."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL with a host: {safe_url(url)!r}")
    _ = parts.port  # raises ValueError for a port that is not a number
    if ssl_context is not None and ca_file is not None:
        raise ValueError("give ssl_context or ca_file, not both")
    if scheme == "ws":
        if ssl_context is not None or ca_file is not None:
            # trio-websocket would quietly speak TLS to a ws:// URL; say so instead.
            raise ValueError(f"ssl_context and ca_file are for wss:// URLs, not {safe_url(url)}")
        return None
    if ssl_context is not None:
        return ssl_context
    # With a cafile the default context trusts that CA alone, not the system's.
    return ssl.create_default_context(cafile=ca_file)


async def _open_websocket(
    nursery: trio.Nursery,
    url: str,
    tls: ssl.SSLContext | None,
    *,
    extra_headers: list[tuple[bytes, bytes]],
    subprotocols: tuple[str, ...],
    timeout: float,
) -> tuple[trio_websocket.WebSocketConnection, _ByteStream]:
    """TCP, TLS, then the upgrade, with failures said plainly; returns the
    WebSocket and the stream under it (to be closed by the caller).

    We connect and do the TLS handshake ourselves instead of leaving it to
    `open_websocket_url`: when the handshake fails there (an untrusted CA), its
    reader stops without a word and the open waits out a 60 s timeout that
    names no cause.  A refused upgrade is raised in the reader task, in
    `nursery`, as `trio_websocket.ConnectionRejected` (see `connect`)."""
    parts = urlsplit(url)
    host = parts.hostname
    assert host  # checked by _tls_context
    port = parts.port or (443 if tls is not None else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]  # keeps [ipv6] brackets and the port
    where = f"{host}:{port}"
    stream: _ByteStream | None = None
    try:
        with trio.fail_after(timeout):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise WebSocketConnectError(f"cannot connect to {where}: {exc}") from None
            if tls is not None:
                stream = trio.SSLStream(stream, tls, server_hostname=host, https_compatible=True)
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError as exc:
                    cause = exc.__cause__ or exc
                    hint = (
                        " (is the server's CA trusted through ca_file= or ssl_context=?)"
                        if isinstance(cause, ssl.SSLCertVerificationError)
                        else ""
                    )
                    raise WebSocketConnectError(
                        f"TLS handshake with {where} failed: {cause}{hint}"
                    ) from None
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                host_header,
                resource,
                subprotocols=list(subprotocols),
                extra_headers=extra_headers,
                max_message_size=MAX_WS_MESSAGE_SIZE,
            )
            return ws, stream
    except BaseException as exc:
        if stream is not None:
            # Ends the reader task too; shielded, so that a pending
            # cancellation cannot replace the exception being raised.
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise WebSocketConnectError(
                f"no WebSocket handshake with {safe_url(url)} within {timeout} s"
            ) from None
        raise


def _refused_upgrade(
    url: str, rejected: trio_websocket.ConnectionRejected
) -> WebSocketConnectError:
    hint = " (the token or credentials were not accepted)" if rejected.status_code == 401 else ""
    return WebSocketConnectError(
        f"WebSocket upgrade to {safe_url(url)} refused with HTTP {rejected.status_code}{hint}",
        status_code=rejected.status_code,
    )


# -- the async API ---------------------------------------------------------------


@asynccontextmanager
async def connect(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    container_id: str | None = None,
    hostname: str | None = None,
    idle_timeout: float | None = None,
    max_frame_size: int | None = None,
    desired_capabilities: Sequence[str] = (),
    subprotocols: tuple[str, ...] = SUBPROTOCOLS,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    handler: Handler | None = None,
    open_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    headers: Mapping[str, str] | None = None,
    token_provider: TokenProvider | None = None,
) -> AsyncIterator[AsyncConnection]:
    """Open an AMQP connection over the WebSocket at `url` (ws:// or wss://).

    SASL PLAIN when `user` is given, ANONYMOUS otherwise.  `idle_timeout`
    (seconds) is the AMQP idle-time-out we announce: the broker must send
    something at least that often, and we answer its own with heartbeats.
    `chunk_size` caps the bytes per WebSocket message (None: one message per
    burst of output; small values split frames over many messages).
    `desired_capabilities` go in the open (e.g. `amqpws:reattach`, which asks
    the gateway to re-attach every link of the connection after an upstream
    failure; `remote_offered_capabilities` says whether it will).

    For wss:// the server's certificate is checked against the system's
    trust store, or against the CA in the PEM file `ca_file`, or as the given
    `ssl_context` says.  `headers` are added to the HTTP upgrade request.
    `token_provider` (see `oauth2_client_credentials`) is called, in a worker
    thread, once per connect; its token goes on the upgrade request as
    `Authorization: Bearer <token>`.  `open_timeout` bounds the WebSocket
    open and, separately, the AMQP open.

    Leaving the block closes the connection (AMQP close, then the WebSocket
    closing handshake).  Raises `WebSocketConnectError` (a
    `proton.ConnectionException`) when the WebSocket cannot be opened (TCP,
    TLS, or the upgrade refused with an HTTP status), `TokenRequestError`
    from `oauth2_client_credentials` when no token could be had, and
    `proton.ConnectionException` when the broker refuses the AMQP connection
    (SASL failure, close during open)."""
    tls = _tls_context(url, ssl_context, ca_file)
    extra_headers = _upgrade_headers(headers, with_token=token_provider is not None)
    if token_provider is not None:
        token = await _bearer_token(token_provider)
        extra_headers.append((b"authorization", f"Bearer {token}".encode("ascii")))
    try:
        # The WebSocket's reader task lives in ws_nursery, for as long as the
        # connection; our own reader and writer in the nursery inside it.
        async with trio.open_nursery() as ws_nursery:
            ws, stream = await _open_websocket(
                ws_nursery,
                url,
                tls,
                extra_headers=extra_headers,
                subprotocols=subprotocols,
                timeout=open_timeout,
            )
            try:
                conn = AsyncConnection(
                    ws,
                    url=url,
                    user=user,
                    password=password,
                    container_id=container_id,
                    hostname=hostname,
                    idle_timeout=idle_timeout,
                    max_frame_size=max_frame_size,
                    desired_capabilities=desired_capabilities,
                    chunk_size=chunk_size,
                    handler=handler,
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn._guard, conn._reader)
                    nursery.start_soon(conn._guard, conn._writer)
                    try:
                        await conn._opened(open_timeout)
                        yield conn
                        await conn.close()
                    except BaseException:
                        with trio.CancelScope(shield=True), trio.move_on_after(1):
                            await conn.close(raise_errors=False)
                        raise
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                # close() has done the closing handshake (or given up): nothing
                # is left for the WebSocket's reader to do, and the socket goes
                # even if the handshake timed out.  Shielded, so that a pending
                # cancellation cannot replace the exception on its way out.
                ws_nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
    except BaseExceptionGroup as group:
        # Our I/O tasks never raise (see `_guard`), so a group here wraps one
        # error from the caller's block or from the open: raise that one.
        single = _single(group)
        if single is None:
            raise
        if isinstance(single, trio_websocket.ConnectionRejected):
            if single.status_code == 401 and isinstance(token_provider, CachedTokenProvider):
                token_provider.invalidate()  # refused: do not offer it again
            raise _refused_upgrade(url, single) from None
        raise single from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


class AsyncConnection:
    """One AMQP connection over one WebSocket; made by `connect()`."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        *,
        url: str,
        user: str | None,
        password: str | None,
        container_id: str | None,
        hostname: str | None,
        idle_timeout: float | None,
        max_frame_size: int | None,
        chunk_size: int | None,
        handler: Handler | None,
        desired_capabilities: Sequence[str] = (),
    ) -> None:
        self.ws = ws
        self.chunk_size = chunk_size
        self.handler = handler
        self.connection = Connection()
        self.connection.container = container_id or f"proton-ws-{uuid.uuid4()}"
        self.connection.hostname = hostname or (urlsplit(url).hostname or "")
        if desired_capabilities:
            self.connection.desired_capabilities = SymbolList(
                [symbol(c) for c in desired_capabilities])
        self.transport = Transport()
        if max_frame_size:
            self.transport.max_frame_size = max_frame_size
        if idle_timeout:
            self.transport.idle_timeout = idle_timeout
        sasl = self.transport.sasl()
        if user is not None:
            self.connection.user = user
            self.connection.password = password or ""
            sasl.allowed_mechs("PLAIN")
            sasl.allow_insecure_mechs = True  # PLAIN over ws://, as over plain TCP
        else:
            sasl.allowed_mechs("ANONYMOUS")
        self.transport.bind(self.connection)
        self.collector = Collector()
        self.connection.collect(self.collector)
        self._session = self.connection.session()
        self._session.open()
        self.connection.open()
        self._receivers: dict[str, AsyncReceiver] = {}
        # Links the broker detached: proton marks only a closing detach as
        # REMOTE_CLOSED, so a plain detach is known from its event alone.
        self._detached: set[str] = set()
        self._changed = trio.Event()
        self._wake = trio.Event()
        self._input_closed = False
        self._output_closed = False
        self._closing = False
        self._failure: BaseException | None = None

    # -- plumbing ---------------------------------------------------------------

    def kick(self) -> None:
        """Tell the writer that proton may have something to send.  Call it
        after changing proton objects directly."""
        self._wake.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait(
        self, condition: Callable[[], object], timeout: float | None = None, what: str = "condition"
    ) -> None:
        """Wait until `condition()` is true (checked after every change).

        Raises `proton.Timeout` after `timeout` seconds and
        `proton.ConnectionException` if the connection goes away first."""
        self.kick()
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            while not condition():
                self._check_alive()
                await self._changed.wait()
            return
        if scope.cancelled_caught:
            raise Timeout(f"timed out after {timeout} s waiting for {what}")

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise self._failure
        conn = self.connection
        if conn.state & Endpoint.REMOTE_CLOSED and not self._closing:
            raise ConnectionException(f"connection closed by the broker: {conn.remote_condition}")
        if self._input_closed:
            cond = self.transport.condition
            raise ConnectionException(f"connection lost: {cond or 'WebSocket closed'}")

    def _process_events(self) -> None:
        while (event := self.collector.peek()) is not None:
            if self.handler is not None:
                event.dispatch(self.handler)
            if event.type in (Event.LINK_REMOTE_DETACH, Event.LINK_REMOTE_CLOSE):
                if event.link is not None:
                    self._detached.add(event.link.name)
            elif event.type == Event.DELIVERY:
                link, delivery = event.link, event.delivery
                if link is not None and delivery is not None and link.is_receiver:
                    rcv = self._receivers.get(link.name)
                    if rcv is not None:
                        rcv._on_delivery(delivery)
            self.collector.pop()
        self._notify()

    async def _guard(self, task: Callable[[], Awaitable[None]]) -> None:
        # A failing I/O task must not tear the caller's block down with an
        # exception group: record it, and let the next wait() raise it.
        try:
            await task()
        except Exception as exc:  # noqa: BLE001 - reported by the next wait()
            self._failure = ConnectionException(f"proton_ws {task.__name__} failed: {exc!r}")
            self._failure.__cause__ = exc
            self._input_closed = True
            self._notify()

    async def _reader(self) -> None:
        transport = self.transport
        while True:
            try:
                data = await self.ws.get_message()
            except trio_websocket.ConnectionClosed:
                break
            if isinstance(data, str):
                # The binding carries AMQP in binary messages only.
                self._failure = ConnectionException("text WebSocket message from the broker")
                break
            view = memoryview(data)
            while view:
                capacity = transport.capacity()
                if capacity < 0:  # input side closed (after the broker's close)
                    break
                n = min(capacity, len(view)) or len(view)
                transport.push(bytes(view[:n]))
                view = view[n:]
                self._process_events()
            self.kick()
        self._input_closed = True
        transport.close_tail()
        self._process_events()
        self.kick()

    async def _writer(self) -> None:
        transport = self.transport
        while True:
            self._wake = trio.Event()  # kicks from here on wake the next sleep
            self._process_events()
            deadline = transport.tick(trio.current_time())
            self._process_events()  # tick may report a local idle-time-out
            pending = transport.pending()
            if pending < 0:
                self._output_closed = True
                self._notify()
                return
            if pending:
                data = bytes(transport.peek(pending) or b"")
                transport.pop(len(data))
                try:
                    await self._send(data)
                except (
                    trio_websocket.ConnectionClosed,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                ):
                    transport.close_head()
                    continue
                continue  # more may be pending (peek is bounded)
            with trio.move_on_at(deadline if deadline else math.inf):
                await self._wake.wait()

    async def _send(self, data: bytes) -> None:
        size = self.chunk_size or len(data)
        for start in range(0, len(data), size):
            await self.ws.send_message(data[start : start + size])

    async def _opened(self, timeout: float) -> None:
        def open_or_failed() -> bool:
            if self.connection.state & Endpoint.REMOTE_ACTIVE:
                return True
            if self._input_closed or self._output_closed or self.transport.condition:
                cond = self.transport.condition or self.connection.remote_condition
                raise ConnectionException(f"connection refused: {cond or 'closed by the broker'}")
            if self.connection.state & Endpoint.REMOTE_CLOSED:
                raise ConnectionException(f"connection refused: {self.connection.remote_condition}")
            return False

        await self.wait(open_or_failed, timeout, "the broker's open")

    # -- public API -------------------------------------------------------------

    @property
    def remote_offered_capabilities(self) -> list[str]:
        caps = self.connection.remote_offered_capabilities
        return [str(c) for c in caps] if caps else []

    async def open_sender(
        self,
        address: str | None,
        *,
        name: str | None = None,
        timeout: float | None = 10.0,
        configure: Callable[[Link], None] | None = None,
    ) -> AsyncSender:
        """Attach a sender to `address` (None: the anonymous relay, with the
        target taken from each message's `to`).  `configure(link)` may set
        anything else on the proton link before the attach is sent."""
        link = self._session.sender(name or f"sender-{next(_names)}-{uuid.uuid4().hex[:8]}")
        if address is not None:
            link.target.address = address
        if configure:
            configure(link)
        link.open()
        await self.wait(lambda: _attached(link), timeout, "the sender's attach")
        return AsyncSender(self, link)

    async def open_receiver(
        self,
        address: str | None = None,
        *,
        credit: int = 10,
        auto_credit: bool = True,
        dynamic: bool = False,
        filter: dict[Any, Any] | None = None,
        name: str | None = None,
        timeout: float | None = 10.0,
        configure: Callable[[Link], None] | None = None,
    ) -> AsyncReceiver:
        """Attach a receiver to `address` (or a dynamic node: `dynamic=True`,
        address None; read the broker's choice from `receiver.address`).

        `credit` is granted at once; with `auto_credit` every `receive()`
        grants one more, keeping that many messages in flight.  `filter` is
        the source filter map (see `stream_offset_filter`)."""
        link = self._session.receiver(name or f"receiver-{next(_names)}-{uuid.uuid4().hex[:8]}")
        if address is not None:
            link.source.address = address
        if dynamic:
            link.source.dynamic = True
        if filter:
            _set_filter(link.source, filter)
        if configure:
            configure(link)
        receiver = AsyncReceiver(self, link, auto_credit)
        self._receivers[link.name] = receiver
        link.open()
        await self.wait(lambda: _attached(link), timeout, "the receiver's attach")
        if credit:
            link.flow(credit)
            self.kick()
        return receiver

    async def close(self, timeout: float = 5.0, *, raise_errors: bool = True) -> None:
        """Close gracefully: AMQP close, the broker's close, then the WebSocket."""
        if self._closing:
            return
        self._closing = True
        try:
            if not self._input_closed:
                self.connection.close()
                self.kick()
                await self.wait(
                    lambda: (
                        self._output_closed
                        or self._input_closed
                        or self.connection.state & Endpoint.REMOTE_CLOSED
                    ),
                    timeout,
                    "the broker's close",
                )
                # Let the writer flush the close frame before the WebSocket goes.
                with trio.move_on_after(timeout):
                    while not (self._output_closed or self._input_closed):
                        await self._changed.wait()
        except (Timeout, ConnectionException):
            if raise_errors:
                raise
        finally:
            with trio.move_on_after(timeout):
                await self.ws.aclose()

    async def abort(self) -> None:
        """Drop the WebSocket without an AMQP close: the broker sees a lost
        connection (and must return our unsettled deliveries to their queues)."""
        self._closing = True
        self._input_closed = True
        self.transport.close_head()
        await self.ws.aclose()
        self._notify()


def _attached(link: Link) -> bool:
    if link.state & Endpoint.REMOTE_CLOSED:
        raise LinkException(f"link {link.name} refused: {link.remote_condition}")
    if not link.state & Endpoint.REMOTE_ACTIVE:
        return False
    terminus = link.remote_target if link.is_sender else link.remote_source
    # A refused attach comes back with a null terminus and then a detach (§2.6.3).
    return terminus.type != Terminus.UNSPECIFIED or bool(link.state & Endpoint.REMOTE_CLOSED)


class _Link:
    def __init__(self, conn: AsyncConnection, link: Link) -> None:
        self.conn = conn
        self.link = link

    @property
    def name(self) -> str:
        return str(self.link.name)

    @property
    def remote_detached(self) -> bool:
        return self.link.name in self.conn._detached or bool(
            self.link.state & Endpoint.REMOTE_CLOSED
        )

    def _check_link(self) -> None:
        if self.remote_detached:
            raise LinkException(
                f"link {self.link.name} detached by the broker: {self.link.remote_condition}"
            )

    async def close(self, timeout: float | None = 5.0) -> None:
        """Detach with closed=true and wait for the broker's detach."""
        if self.link.state & Endpoint.LOCAL_CLOSED:
            return
        self.link.close()
        await self.conn.wait(lambda: self.remote_detached, timeout, "the broker's detach")

    async def detach(self, timeout: float | None = 5.0) -> None:
        """Detach without closing the link (it could be resumed)."""
        self.link.detach()
        await self.conn.wait(lambda: self.remote_detached, timeout, "the broker's detach")


class AsyncSender(_Link):
    """A sending link; `send()` waits for credit and for the broker's outcome."""

    @property
    def address(self) -> str | None:
        return self.link.remote_target.address

    async def send(self, message: Message, timeout: float | None = 10.0) -> Outcome:
        """Send one message and return the broker's outcome (settling our end).
        On a pre-settled link (snd-settle-mode settled) there is no outcome to
        wait for: the delivery is settled as it goes, and the outcome is "settled"."""
        delivery = await self.send_nowait(message, timeout)
        if self.link.snd_settle_mode == Link.SND_SETTLED:
            delivery.settle()
            self.conn.kick()
            return Outcome("settled")
        return await self.settled(delivery, timeout)

    async def send_nowait(self, message: Message, timeout: float | None = 10.0) -> Delivery:
        """Send once there is credit; return the unsettled `proton.Delivery`
        (pass it to `settled()` for the outcome)."""

        def credit() -> bool:
            self._check_link()
            return self.link.credit > 0

        await self.conn.wait(credit, timeout, "credit")
        delivery: Delivery = self.link.send(message)
        self.conn.kick()
        return delivery

    async def settled(self, delivery: Delivery, timeout: float | None = 10.0) -> Outcome:
        """Wait for the outcome of an unsettled delivery and settle our end."""

        def decided() -> bool:
            if delivery.remote_state or delivery.settled:
                return True
            self._check_link()
            return False

        await self.conn.wait(decided, timeout, "the outcome of a delivery")
        outcome = Outcome.of(delivery)
        delivery.settle()
        self.conn.kick()
        return outcome


@dataclass
class Received:
    """A message taken from a receiver, with its (unsettled) delivery."""

    message: Message
    delivery: Delivery
    _conn: AsyncConnection

    @property
    def delivery_count(self) -> int:
        return int(self.message.delivery_count or 0)

    def accept(self) -> None:
        self.settle(Disposition.ACCEPTED)

    def reject(self, condition: Condition | None = None) -> None:
        if condition is not None:
            self.delivery.local.condition = condition
        self.settle(Disposition.REJECTED)

    def release(self) -> None:
        self.settle(Disposition.RELEASED)

    def modify(
        self,
        *,
        delivery_failed: bool = True,
        undeliverable_here: bool = False,
        annotations: dict[Any, Any] | None = None,
    ) -> None:
        local = self.delivery.local
        local.failed = delivery_failed
        local.undeliverable = undeliverable_here
        if annotations:
            local.annotations = annotations
        self.settle(Disposition.MODIFIED)

    def settle(self, state: int | None = None) -> None:
        """Settle with `state` (a `proton.Disposition` constant), or none."""
        if self.delivery.settled:
            return
        if state is not None:
            self.delivery.update(state)
        self.delivery.settle()
        self._conn.kick()


class AsyncReceiver(_Link):
    """A receiving link; messages queue here as they arrive."""

    def __init__(self, conn: AsyncConnection, link: Link, auto_credit: bool) -> None:
        super().__init__(conn, link)
        self.auto_credit = auto_credit
        self.queue: deque[Received] = deque()

    def _on_delivery(self, delivery: Delivery) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        if not delivery.readable or delivery.partial:
            return  # the rest of a multi-frame message is still on its way
        data = self.link.recv(delivery.pending)
        self.link.advance()
        message = Message()
        message.decode(data)
        self.queue.append(Received(message, delivery, self.conn))

    @property
    def address(self) -> str | None:
        """The source address the broker attached (for a dynamic receiver,
        the address it made up)."""
        return self.link.remote_source.address

    @property
    def remote_filter(self) -> dict[Any, Any]:
        """The filters the broker applied, as it echoed them in its attach."""
        data: Data = self.link.remote_source.filter
        data.rewind()
        if data.next() is None:
            return {}
        filters = data.get_object()
        return dict(filters) if isinstance(filters, dict) else {}

    @property
    def credit(self) -> int:
        return int(self.link.credit)

    def flow(self, credit: int) -> None:
        """Grant `credit` more messages."""
        self.link.flow(credit)
        self.conn.kick()

    async def receive(self, timeout: float | None = 10.0) -> Received:
        """The next message; raises `proton.Timeout` if none comes in time."""

        def ready() -> bool:
            if self.queue:
                return True
            self._check_link()
            return False

        await self.conn.wait(ready, timeout, f"a message on {self.link.name}")
        received = self.queue.popleft()
        if self.auto_credit and not self.link.drain_mode:
            self.link.flow(1)
            self.conn.kick()
        return received

    async def drain(self, timeout: float | None = 10.0) -> None:
        """Ask the broker to use up or give back all our credit (drain=true)
        and wait until it has; messages it sent meanwhile are in `queue`."""
        self.link.drain(0)
        self.conn.kick()

        def drained() -> bool:
            self._check_link()
            return not self.link.draining()

        await self.conn.wait(drained, timeout, "the end of a drain")
        self.link.drain_mode = False


# -- the blocking API ------------------------------------------------------------


class BlockingConnection:
    """`AsyncConnection` for code that is not async.

    A background thread runs a trio loop holding the connection; every call
    is passed to that loop and waits for its result, so proton objects are
    only ever touched from that one thread.  Arguments are those of
    `connect()` (the ones for wss:// and OAuth2 are spelled out here too);
    `timeout` is the default for every blocking call and the open timeout.
    The token provider runs in a worker thread of the background loop."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | None = None,
        token_provider: TokenProvider | None = None,
        **options: Any,
    ) -> None:
        self.url = url
        self.timeout = timeout
        options.update(
            ssl_context=ssl_context, ca_file=ca_file, headers=headers, token_provider=token_provider
        )
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._conn: AsyncConnection | None = None
        ready: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._thread_main, args=(url, options, ready), name="proton-ws", daemon=True
        )
        self._thread.start()
        error = ready.get()
        if error is not None:
            self._thread.join()
            raise error

    def _thread_main(
        self, url: str, options: dict[str, Any], ready: queue.Queue[BaseException | None]
    ) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            started = False
            try:
                async with connect(url, open_timeout=self.timeout, **options) as conn:
                    self._conn = conn
                    ready.put(None)
                    started = True
                    await self._stop.wait()
            except BaseException as exc:
                if not started:
                    ready.put(exc)
                elif not isinstance(exc, (ConnectionException, Timeout, trio.Cancelled)):
                    raise

        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - hand it to whoever waits for the open
            ready.put_nowait(exc)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        if self._token is None or not self._thread.is_alive():
            raise ConnectionException("connection is closed")
        return trio.from_thread.run(lambda: fn(*args, **kwargs), trio_token=self._token)

    def _call_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._token is None or not self._thread.is_alive():
            raise ConnectionException("connection is closed")
        return trio.from_thread.run_sync(lambda: fn(*args, **kwargs), trio_token=self._token)

    @property
    def connection(self) -> AsyncConnection:
        """The `AsyncConnection` (use its proton objects through `call_sync`)."""
        assert self._conn is not None
        return self._conn

    def call_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the connection's thread (to touch proton objects) and
        return its result."""
        return self._call_sync(fn, *args, **kwargs)

    def create_sender(self, address: str | None, **options: Any) -> BlockingSender:
        options.setdefault("timeout", self.timeout)
        return BlockingSender(self, self._call(self.connection.open_sender, address, **options))

    def create_receiver(self, address: str | None = None, **options: Any) -> BlockingReceiver:
        options.setdefault("timeout", self.timeout)
        return BlockingReceiver(self, self._call(self.connection.open_receiver, address, **options))

    def close(self) -> None:
        """Close gracefully (AMQP close, then the WebSocket) and stop the thread."""
        if self._thread.is_alive() and self._conn is not None:
            try:
                self._call(self._conn.close, self.timeout)
            finally:
                self._finish()

    def abort(self) -> None:
        """Drop the WebSocket without an AMQP close."""
        if self._thread.is_alive() and self._conn is not None:
            try:
                self._call(self._conn.abort)
            finally:
                self._finish()

    def _finish(self) -> None:
        if self._stop is not None and self._token is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(self.timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            # Leaving on an error: close if we can, but report that error.
            with suppress(Exception):
                self.close()


class BlockingSender:
    def __init__(self, conn: BlockingConnection, sender: AsyncSender) -> None:
        self.connection = conn
        self.sender = sender

    @property
    def address(self) -> str | None:
        return self.connection.call_sync(lambda: self.sender.address)

    def send(self, message: Message, timeout: float | None = None) -> Outcome:
        return self.connection._call(self.sender.send, message, timeout or self.connection.timeout)

    def send_many(self, messages: list[Message], timeout: float | None = None) -> list[Outcome]:
        """Send a batch without waiting for each outcome in turn."""

        async def run() -> list[Outcome]:
            t = timeout or self.connection.timeout
            deliveries = [await self.sender.send_nowait(m, t) for m in messages]
            return [await self.sender.settled(d, t) for d in deliveries]

        return self.connection._call(run)

    def close(self) -> None:
        self.connection._call(self.sender.close)


@dataclass
class BlockingReceived:
    message: Message
    _received: Received
    _conn: BlockingConnection

    @property
    def delivery_count(self) -> int:
        return self._received.delivery_count

    def accept(self) -> None:
        self._conn.call_sync(self._received.accept)

    def reject(self, condition: Condition | None = None) -> None:
        self._conn.call_sync(self._received.reject, condition)

    def release(self) -> None:
        self._conn.call_sync(self._received.release)

    def modify(self, **options: Any) -> None:
        self._conn.call_sync(lambda: self._received.modify(**options))


class BlockingReceiver:
    def __init__(self, conn: BlockingConnection, receiver: AsyncReceiver) -> None:
        self.connection = conn
        self.receiver = receiver

    @property
    def address(self) -> str | None:
        return self.connection.call_sync(lambda: self.receiver.address)

    @property
    def remote_filter(self) -> dict[Any, Any]:
        return self.connection.call_sync(lambda: self.receiver.remote_filter)

    @property
    def credit(self) -> int:
        return self.connection.call_sync(lambda: self.receiver.credit)

    def receive(self, timeout: float | None = None) -> BlockingReceived:
        received = self.connection._call(self.receiver.receive, timeout or self.connection.timeout)
        return BlockingReceived(received.message, received, self.connection)

    def flow(self, credit: int) -> None:
        self.connection.call_sync(self.receiver.flow, credit)

    def drain(self, timeout: float | None = None) -> list[BlockingReceived]:
        """Drain, then return every message that arrived and was not yet taken."""

        async def run() -> list[Received]:
            await self.receiver.drain(timeout or self.connection.timeout)
            taken = list(self.receiver.queue)
            self.receiver.queue.clear()
            return taken

        return [BlockingReceived(r.message, r, self.connection) for r in self.connection._call(run)]

    def close(self) -> None:
        self.connection._call(self.receiver.close)

    def detach(self) -> None:
        self.connection._call(self.receiver.detach)

    def __iter__(self) -> Iterator[BlockingReceived]:
        while True:
            yield self.receive()
