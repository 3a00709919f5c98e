"""Scripted stand-ins for the container, so transports are tested without an engine.

`EchoHandle` follows the ConnectionHandle contract: it echoes what it gets,
ends after the bytes `BYE` (echoed first), answers `BURST` with 100 separate
outputs (each with its own wake(), as the container does per frame), takes a
read of just `HUSH` as the engine takes a bare heartbeat (no echo; True:
nothing to tick or send; `ticks` and `sends` count the calls), and,
with `heartbeat` set, queues `HB` every `heartbeat` seconds once `OPEN` was
received (a deadline that only appears after a receive).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import trio

from broker.services.http_api import HttpRequest, HttpResponse


class EchoHandle:
    def __init__(
        self,
        wake: Callable[[], None],
        peer: str = "",
        transport: str = "",
        *,
        echo: bool = True,
        heartbeat: float | None = None,
        done_on_shutdown: bool = True,
        fail: bool = False,
    ) -> None:
        self.wake = wake
        self.peer = peer
        self.transport = transport
        self.echo = echo
        self.heartbeat = heartbeat
        self.done_on_shutdown = done_on_shutdown
        self.fail = fail
        self.received = bytearray()
        self.chunks: list[int] = []  # size of each receive_data call
        self.out = bytearray()
        self.finished = False
        self.eof = False
        self.lost_calls = 0
        self.ticks = 0
        self.sends = 0
        self.next_heartbeat: float | None = None
        self.closed = trio.Event()  # set when done

    @property
    def done(self) -> bool:
        return self.finished

    def _finish(self) -> None:
        self.finished = True
        self.closed.set()

    def receive_data(self, data: bytes) -> bool:
        if self.fail:
            raise RuntimeError("bug in the engine")
        if self.finished:
            return False
        if not data:
            self.eof = True
            self._finish()
            return False
        self.chunks.append(len(data))
        self.received += data
        if data == b"HUSH":
            return True
        if self.echo:
            self.out += data
        if self.heartbeat and self.next_heartbeat is None and b"OPEN" in self.received:
            self.next_heartbeat = trio.current_time() + self.heartbeat
        if self.received.endswith(b"BURST"):
            for i in range(100):
                self.out += b"F%03d" % i
                self.wake()
        if self.received.endswith(b"BYE"):
            self._finish()
        if self.out:
            self.wake()
        return False

    def has_output(self) -> bool:
        return bool(self.out) or self.finished

    def data_to_send(self) -> bytes:
        self.sends += 1
        data = bytes(self.out)
        self.out.clear()
        return data

    def tick(self) -> float | None:
        self.ticks += 1
        if self.finished or self.next_heartbeat is None:
            return None
        now = trio.current_time()
        if now >= self.next_heartbeat:
            self.out += b"HB"  # like the engine: no wake() from tick
            self.next_heartbeat = now + self.heartbeat  # type: ignore[operator]
        return self.next_heartbeat

    def connection_lost(self) -> None:
        self.lost_calls += 1
        if not self.finished:
            self.receive_data(b"")

    def force_close(self) -> None:
        self.out += b"FORCED"
        if self.done_on_shutdown:
            self._finish()
        self.wake()


class FakeContainer:
    """Hands out EchoHandles (with `handle_options`) and records shutdown."""

    def __init__(self, **handle_options: object) -> None:
        self.handle_options = handle_options
        self.handles: list[EchoHandle] = []
        self.shutdown_calls = 0
        self.connected = trio.Event()
        self.http_requests: list[HttpRequest] = []

    def connection_made(self, peer: str, transport: str, wake: Callable[[], None],
                        **facts: object) -> EchoHandle:
        handle = EchoHandle(wake, peer, transport, **self.handle_options)  # type: ignore[arg-type]
        self.handles.append(handle)
        self.connected.set()
        return handle

    def http(self, request: HttpRequest) -> HttpResponse:
        self.http_requests.append(request)
        return HttpResponse(404, b"nothing here in the fake\n")

    def housekeeping(self, rss: int | None = None) -> None:
        pass

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        for handle in self.handles:
            handle.force_close()


class Trickle(trio.abc.HalfCloseableStream):
    """Hands the driver at most one byte per receive_some."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.buffer = b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self.buffer:
            self.buffer = await self.inner.receive_some()
        data, self.buffer = self.buffer[:1], self.buffer[1:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingStream(Trickle):
    """Passes everything through and counts send_all calls."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        super().__init__(inner)
        self.sends: list[bytes] = []

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))
        await self.inner.send_all(data)


async def read_until(stream: trio.abc.ReceiveStream, expected: bytes) -> bytes:
    """Read until `expected` has arrived (or EOF); returns everything read."""
    got = bytearray()
    while expected not in got:
        data = await stream.receive_some()
        if not data:
            break
        got += data
    return bytes(got)


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    got = bytearray()
    while data := await stream.receive_some():
        got += data
    return bytes(got)


def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """(client, server) over loopback TCP, Nagle off: for what a socket pair
    cannot show (its poll ignores SO_RCVLOWAT; TCP's does not)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    theirs = socket.create_connection(listener.getsockname())
    ours, _ = listener.accept()
    listener.close()
    for sock in (ours, theirs):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    return (trio.SocketStream(trio.socket.from_stdlib_socket(theirs)),
            trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
