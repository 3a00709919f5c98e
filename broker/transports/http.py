"""The few plain HTTP routes (console, JSON API, /metrics, /healthz): the I/O.

The WebSocket listener reads the head of every request first
(`read_head`); an `Upgrade: websocket` goes on to the AMQP handshake, any
other request comes here, as does everything on `--http-port`.  Requests are
parsed by h11 (the sans-io HTTP/1.1 library wsproto itself is built on), one
request per connection (`Connection: close`), bodies bounded; what to answer
is decided by the container's pure handler (`services/http_api.py`), which
gets an `HttpRequest` and returns an `HttpResponse`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import h11
import trio

from broker.services.http_api import HttpRequest, HttpResponse
from broker.transports.accept import AcceptGuard, serve_listeners
from broker.transports.driver import RECEIVE_SIZE, TRANSPORT_ERRORS, ContainerLike, peer_name

log = logging.getLogger("broker.transport")

MAX_HEAD = 16 * 1024  # request line and headers
MAX_BODY = 1024 * 1024  # the console's publish is the largest body we take
REQUEST_TIMEOUT = 10.0


class HeadTooLarge(Exception):
    """The request line and headers are larger than MAX_HEAD."""


_REASONS = {200: b"OK", 201: b"Created", 204: b"No Content", 400: b"Bad Request",
            401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 409: b"Conflict", 413: b"Content Too Large",
            503: b"Service Unavailable"}

TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
             b"content-length: 0\r\n\r\n")


async def read_head(stream: trio.abc.Stream) -> bytes:
    """Bytes up to the end of the request head (and whatever followed them in
    the same reads); b"" if the peer went away first."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise HeadTooLarge
        chunk = await stream.receive_some(RECEIVE_SIZE)
        if not chunk:
            return b""
        data += chunk
    return bytes(data)


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether a request head asks for a WebSocket (the header's value, any case)."""
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


async def serve_request(stream: trio.abc.Stream, head: bytes, container: ContainerLike,
                        peer: str) -> None:
    """Parse one request whose head (and perhaps body) is in `head`, ask the
    container, answer, close."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(head)
    try:
        with trio.move_on_after(REQUEST_TIMEOUT):
            request = await _read_request(stream, conn)
            if request is None:
                return
            response = container.http(request)
            await _send(stream, conn, response, head_only=request.method == "HEAD")
    except h11.RemoteProtocolError as exc:
        log.info("http %s: bad request: %s", peer, exc)
        await _send_plain(stream, conn, exc.error_status_hint, f"bad request: {exc}")
    except TRANSPORT_ERRORS:
        pass


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> HttpRequest | None:
    method = target = ""
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return None
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            method, target = event.method.decode("ascii"), event.target.decode("latin-1")
            headers = {bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
                       for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise h11.RemoteProtocolError(f"body larger than {MAX_BODY} bytes",
                                              error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            return HttpRequest(method, target, headers, bytes(body))
        else:  # ConnectionClosed
            return None


async def _send(stream: trio.abc.Stream, conn: h11.Connection, response: HttpResponse,
                *, head_only: bool = False) -> None:
    """The response; for a HEAD request its headers only (the length is the
    GET's, as HTTP says)."""
    headers = [("content-type", response.content_type),
               ("content-length", str(len(response.body))),
               ("connection", "close"),
               ("x-content-type-options", "nosniff"),
               *response.headers]
    out = conn.send(h11.Response(status_code=response.status, headers=headers,
                                 reason=_REASONS.get(response.status, b"")))
    out = out or b""
    if not head_only:
        out += conn.send(h11.Data(data=response.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)


async def _send_plain(stream: trio.abc.Stream, conn: h11.Connection, status: int,
                      text: str) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        await _send(stream, conn, HttpResponse(status, text.encode() + b"\n"))
    except (h11.LocalProtocolError, *TRANSPORT_ERRORS):
        pass


async def handle_http_stream(stream: trio.abc.Stream, container: ContainerLike) -> None:
    """One connection on the `--http-port` listener: a request, its answer."""
    peer = peer_name(stream)
    try:
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                head = await read_head(stream)
            except HeadTooLarge:
                await stream.send_all(TOO_LARGE)
                return
            if head:
                await serve_request(stream, head, container, peer)
    except TRANSPORT_ERRORS:
        pass
    except Exception:
        log.exception("http %s failed", peer)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def serve_http(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    container: ContainerLike,
    *,
    handler_nursery: trio.Nursery | None = None,
    guard: AcceptGuard | None = None,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on the `--http-port` listeners until cancelled."""
    handler = functools.partial(handle_http_stream, container=container)
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, guard=guard, task_status=task_status
    )
