"""The one entry point that pumps a byte stream through an engine connection.

TCP and WebSocket both hand us a `trio.abc.Stream`; the container hands us a
`ConnectionHandle` (pump.py) that does all protocol work synchronously.
`drive` picks the pump:

- a plain TCP socket, and a WebSocket over one, gets `socketpump.SocketPump`:
  the one poller task reads every such socket (poller.py), and output is
  written without waiting from whichever call produced it (the poller's read,
  a deadline, or the flusher that serves every connection another connection
  woke); `drive` waits for the end in the caller's task, while `serve_stream`
  under a listener hands the connection to its Host (hosting.py) and returns,
  so an open connection holds no task;
- any other stream (TLS, wss included, and in-memory streams in tests) gets
  `StreamPump`: two tasks, so a slow peer only ever blocks its own tasks.
  The reader feeds every read (64 KiB at most) to `receive_data` in bounded
  turns (pump.py); EOF is `receive_data(b"")`.  The writer sleeps on a
  `Wakeup` that the container pokes whenever the handle has output (possibly
  while processing another connection), then sends everything pending in one
  `send_all`, and loops while more piled up during the send: frames are
  coalesced, never one syscall per frame.

Neither has a timer task: the handle's next deadline goes into the one heap
of every connection's deadlines (timers.py), whose task calls `on_deadline`
when it comes; whoever may have moved that deadline (a receive, a local
action) re-ticks the handle, which moves it earlier if need be.  How a
connection ends, and what happens when the handle has a bug, is pump.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import trio

from broker.transports import hosting
from broker.transports.pump import (
    CLOSE_TIMEOUT,
    FEED_SIZE,
    RECEIVE_SIZE,
    TRANSPORT_ERRORS,
    ConnectionHandle,
    Pump,
    Wakeup,
    receive_socket,
)
from broker.transports.socketpump import SocketPump, serves

__all__ = [
    "CLOSE_TIMEOUT", "FEED_SIZE", "RECEIVE_SIZE", "TRANSPORT_ERRORS", "ConnectionHandle",
    "ContainerLike", "StreamPump", "Wakeup", "drive", "peer_name", "receive_socket",
    "serve_stream",
]

log = logging.getLogger("broker.transport")


class ContainerLike(Protocol):
    """What the transports need from the container."""

    def connection_made(
        self, peer: str, transport: str, wake: Callable[[], None], *,
        tls_subject: str | None = None, bearer: Any = None,
    ) -> ConnectionHandle: ...
    def verify_bearer(self, token: str) -> Any:
        """The identity a WebSocket upgrade's bearer token names; raises
        ValueError (the reason) when the token is refused."""
    def http(self, request: Any) -> Any:
        """The answer (a services.http_api.HttpResponse) to a plain HTTP request."""
    def shutdown(self) -> None: ...
    def housekeeping(self, rss: int | None = None) -> None: ...


def peer_name(stream: trio.abc.Stream) -> str:
    """`host:port` of a socket stream's peer, for logs and the container."""
    try:
        host, port = stream.socket.getpeername()[:2]  # type: ignore[attr-defined]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    except (AttributeError, OSError, TypeError, ValueError):
        return type(stream).__name__


async def serve_stream(
    stream: trio.abc.Stream,
    container: ContainerLike,
    *,
    peer: str,
    transport: str,
    close_timeout: float = CLOSE_TIMEOUT,
    tls_subject: str | None = None,
    bearer: Any = None,
) -> bool:
    """Attach an accepted stream to the container and drive it to the end.
    `tls_subject` and `bearer` are what the transport established about the
    peer (a verified client certificate, a token from the upgrade).

    Under a listener's Host (hosting.py), a stream the poller can serve is
    handed over instead, and this returns True at once: the caller must not
    close it.  Otherwise it returns False when the connection is over.

    Never raises for one connection's failure, engine bugs included (they are
    logged with a traceback): one bad connection must not stop the server.
    """
    label = f"{transport} {peer}"
    wakeup = Wakeup()
    try:
        if tls_subject is None and bearer is None:
            handle = container.connection_made(peer, transport, wakeup.wake)
        else:
            handle = container.connection_made(peer, transport, wakeup.wake,
                                               tls_subject=tls_subject, bearer=bearer)
    except Exception:
        log.exception("%s refused: container failed", label)
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
        return False
    log.info("%s connected", label)
    host = hosting.current()
    if host is not None and host.accepting and serves(stream):
        pump = SocketPump(stream, handle, wakeup, close_timeout)
        try:
            host.adopt(pump, label)
        except Exception:
            log.exception("%s disconnected: internal error", label)
            await pump.abandon()
            return False
        return True
    reason: str | None = "server stopped"  # unless drive() returns or fails
    try:
        reason = await drive(stream, handle, wakeup, close_timeout=close_timeout)
    except Exception:
        reason = None
        log.exception("%s disconnected: internal error", label)
    finally:
        if reason is not None:
            log.info("%s disconnected: %s", label, reason)
    return False


async def drive(
    stream: trio.abc.Stream,
    handle: ConnectionHandle,
    wakeup: Wakeup,
    *,
    close_timeout: float = CLOSE_TIMEOUT,
) -> str:
    """Pump `stream` through `handle` until the connection ends; returns why.

    `wakeup` must be the one whose `wake` the handle was created with. The
    handle's deadlines are on trio's clock (`trio.current_time`).
    """
    if serves(stream):
        return await SocketPump(stream, handle, wakeup, close_timeout).run()
    return await StreamPump(stream, handle, wakeup, close_timeout).run()


class StreamPump(Pump):
    """A reader task and a writer task over any stream."""

    __slots__ = ("scope",)

    async def pump(self) -> bool:
        clean = False
        with trio.CancelScope(deadline=self.flush_by) as self.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                self.on_deadline()  # the first tick; it may queue a heartbeat or a close
                clean = await self._write()
                nursery.cancel_scope.cancel()
        if self.scope.cancelled_caught:
            self._timed_out()
            return False
        return clean

    def _end(self, reason: str) -> None:
        super()._end(reason)
        self.scope.deadline = self.flush_by

    def after_input(self) -> None:
        """Wake the writer if it has work.  Most of an idle connection's input is
        the peer's heartbeat, which asks for no answer: waking the writer for
        it anyway cost a task switch and a tick per heartbeat."""
        if self.reason is not None or self.bug is not None or self.handle.has_output():
            self.wakeup.wake()

    async def _read(self) -> None:
        stream = self.stream
        while self.bug is None:
            try:
                data = bytes(await stream.receive_some(RECEIVE_SIZE))  # bytes: no copy
            except TRANSPORT_ERRORS as exc:
                self._lost(exc)
                return
            if not await self.feed_read(data):
                return

    async def _write(self) -> bool:
        """Send until done; True when everything went out and the close may be graceful."""
        data: bytes | bytearray
        while not self.broken:
            try:
                data = self.handle.data_to_send()
            except Exception as exc:  # noqa: BLE001 - re-raised by run()
                self._failed(exc)
                return False  # nothing more can come out of it
            if data:
                try:
                    await self.stream.send_all(data)
                except TRANSPORT_ERRORS as exc:
                    self._lost(exc)
                    return False
                continue
            if self.bug is not None:
                return True  # flushed what the handle queued before failing
            if self.handle.done or self.eof:
                self._end("closed" if self.handle.done else "peer disconnected")
                return True
            await self.wakeup.wait()
            self._retick()
        return False
