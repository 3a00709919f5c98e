"""The one loop that pumps a byte stream through an engine connection.

Theory of operation. TCP and WebSocket both hand us a `trio.abc.Stream`; the
container hands us a `ConnectionHandle` that does all protocol work
synchronously. Two tasks per connection share them, so a slow peer only
ever blocks its own tasks:

- the reader feeds every read (64 KiB at most; a plain TCP socket is read
  directly, see `receive_socket`) to `receive_data`
  in pieces of at most `FEED_SIZE` bytes and yields between pieces once the
  read has taken `TURN_BUDGET` of work, so one peer's burst cannot hold the
  event loop: a full read of small frames (a thousand attaches) is tens of
  milliseconds of engine work, and every other connection would wait that
  long for its next turn;
  EOF is `receive_data(b"")`;
- the writer sleeps on a `Wakeup` that the container pokes whenever the
  handle has output (possibly while processing another connection), then
  sends everything pending in one `send_all`, and loops while more piled up
  during the send: frames are coalesced, never one syscall per frame;
- the timer is not a task: the handle's next deadline goes into the one heap
  of every connection's deadlines (timers.py), whose task calls
  `on_deadline` when it comes; whoever may have moved that deadline (a
  receive, a local action) calls `_retick`, which runs `tick()` and moves it
  earlier if need be.

Once the handle is done (or the peer has gone), the remaining output gets
`close_timeout` seconds to drain; then the stream is closed gracefully
(half-close and drain input, so unread data cannot turn our last frame into
a TCP reset) or, if anything went wrong, forcefully. Transport errors end
here as `connection_lost()`; they never reach the engine as exceptions.

A bug in the handle (any exception out of `receive_data`, `tick` or
`data_to_send`) ends the connection the same careful way: the handle is not
called again, but what it queued before failing, the engine's
close(amqp:internal-error) from its error boundary, is flushed and the
stream closed gracefully, all under `close_timeout`; only then does the
exception leave `drive`, for `serve_stream` to log once with its traceback.
Dropping the socket first would leave the peer guessing why.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

from broker.transports.timers import timers

log = logging.getLogger("broker.transport")

RECEIVE_SIZE = 64 * 1024
# Fairness: a read reaches the handle in pieces (FEED_SIZE at first), and once
# a turn's pieces have taken TURN_BUDGET seconds of handle work the reader
# yields to the other tasks before going on.  A read of small costly
# frames (64 KiB is ~900 attach+detach pairs, ~20 ms) then holds the loop for
# a few ms at a time; an ordinary read (a few dozen messages, well under a
# millisecond) never yields, so throughput keeps its whole-read batching
# (yielding after every 16 KiB instead measured 10-25% more broker CPU per
# 4 KiB message).  Wall time, not trio's clock: what is bounded is how long
# we hold the CPU (see tests/bench/bench_fairness.py).
FEED_SIZE = 8 * 1024
TURN_BUDGET = 0.002  # seconds
# After a read of more than one empty frame (8 bytes: a heartbeat), a plain TCP
# socket is read again at once, as trio reads (a busy peer: more may be
# waiting); after a heartbeat, we wait for it to be readable first: an idle
# peer's next frame is seconds away (see receive_socket).
EAGER_READ = 9
CLOSE_TIMEOUT = 2.0  # seconds to flush the last frames and close
MIN_TICK = 0.05  # shortest timer sleep, seconds
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class ConnectionHandle(Protocol):
    """What the driver needs from one engine connection (see container.py)."""

    def receive_data(self, data: bytes) -> None: ...
    def data_to_send(self) -> bytes | bytearray: ...
    def tick(self) -> float | None: ...
    @property
    def done(self) -> bool: ...
    def has_output(self) -> bool:
        """Whether the writer has work: data to send, or the end to see."""
    def connection_lost(self) -> None: ...


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


class Wakeup:
    """A coalescing signal: any number of `wake()` calls release one `wait()`.

    `wake` is synchronous and cheap because the container calls it from the
    middle of processing, once per frame it queues.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def receive_socket(fd: int, eager: bool) -> bytes:  # also WebSocketStream's reads
    """One read of a plain TCP socket, as `SocketStream.receive_some` would
    read it, but waiting first unless `eager`.  trio tries a recv and waits only
    when it fails; on an idle connection (a heartbeat every 15 s) it nearly
    always fails, costing a recv and an exception per heartbeat."""
    try:
        if eager:
            await trio.lowlevel.checkpoint()
            try:
                return os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                pass
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                continue
    except OSError as exc:  # reset, and the like: what trio's stream raises for them
        raise trio.BrokenResourceError(f"socket read failed: {exc!r}") from exc


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
) -> None:
    """Attach an accepted stream to the container and drive it to the end.
    `tls_subject` and `bearer` are what the transport established about the
    peer (a verified client certificate, a token from the upgrade).

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
        return
    log.info("%s connected", label)
    reason: str | None = "server stopped"  # unless drive() returns or fails
    try:
        reason = await drive(stream, handle, wakeup, close_timeout=close_timeout)
    except Exception:
        reason = None
        log.exception("%s disconnected: internal error", label)
    finally:
        if reason is not None:
            log.info("%s disconnected: %s", label, reason)


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
    return await _Pump(stream, handle, wakeup, close_timeout).run()


class _Pump:
    def __init__(
        self, stream: trio.abc.Stream, handle: ConnectionHandle, wakeup: Wakeup, timeout: float
    ) -> None:
        self.stream = stream
        self.handle = handle
        self.wakeup = wakeup
        self.close_timeout = timeout
        self.reason: str | None = None  # the first cause of the end wins
        self.eof = False
        self.broken = False
        self.bug: Exception | None = None  # raised by the handle; re-raised once flushed
        self.scope = trio.CancelScope()  # the two tasks; gets a deadline once ending
        self.deadline = math.inf  # when the timers call on_deadline (trio's clock)
        self.timers = timers()
        # a plain TCP socket's descriptor (read and, from the timers, written
        # directly; -1 for TLS and WebSocket streams)
        self.fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        self.writer_parked = False  # the writer waits for a wake-up, nothing unsent
        self.unsent = b""  # what a direct write could not send: the writer's first

    async def run(self) -> str:
        clean = False
        try:
            self.timers.clients += 1
            with self.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read)
                    self.on_deadline()  # the first tick; it may queue a heartbeat or a close
                    clean = await self._write()
                    nursery.cancel_scope.cancel()
            if self.scope.cancelled_caught:
                self.reason = f"{self.reason or 'closing'}; flush timed out"
                clean = False
        except BaseException:
            self._stop_timer()
            await self._abort()
            raise
        self._stop_timer()
        if clean:
            await self._close_gracefully()
        else:
            await self._abort()
        if self.bug is not None:
            raise self.bug
        return self.reason or "closed"

    def _end(self, reason: str) -> None:
        """Record why we are ending and bound the time left to flush."""
        if self.reason is None:
            self.reason = reason
            self.scope.deadline = trio.current_time() + self.close_timeout

    def _lost(self, exc: BaseException) -> None:
        self.broken = True
        self._end(f"transport error: {exc!r}")
        self.handle.connection_lost()
        self.wakeup.wake()

    def _failed(self, exc: Exception) -> None:
        """The handle raised: stop using it, but let its last frames out."""
        if self.bug is None:
            self.bug = exc
        self._end("internal error")
        self.wakeup.wake()

    def _retick(self) -> None:
        if self.bug is not None:
            return
        try:
            deadline = self.handle.tick()
        except Exception as exc:  # noqa: BLE001 - re-raised by run() once flushed
            self._failed(exc)
            return
        if self.handle.done:
            self._end("closed")
        # Only ever move the timer earlier: a later deadline (the idle limit
        # moves on every receive) just costs one early wake-up and re-tick,
        # which is cheaper than re-registering the deadline on every batch.
        if deadline is not None and deadline < self.deadline:
            # a deadline already past must not make the timer spin
            deadline = max(deadline, trio.current_time() + MIN_TICK)
            if deadline < self.deadline:
                self.deadline = deadline
                self.timers.schedule(self, deadline)

    def _wake_writer(self) -> None:
        """Wake the writer if it has work.  Most of an idle connection's input is
        the peer's heartbeat, which asks for no answer: waking the writer for
        it anyway cost a task switch and a tick per heartbeat."""
        if self.reason is not None or self.bug is not None or self.handle.has_output():
            self.wakeup.wake()

    def on_deadline(self) -> None:
        """The timers' call when the deadline came (or the pump's first tick).
        A heartbeat it queued goes out from here when it can: an idle
        connection's own heartbeats then cost no task switch."""
        self._retick()
        if self.writer_parked and self.fd >= 0 and self.reason is None and \
                self.bug is None and not self.handle.done and self.handle.has_output():
            self._write_now()
        else:
            self._wake_writer()  # tick may have queued a heartbeat or a close

    def _write_now(self) -> None:
        """Write the handle's output to the socket without waiting (the writer
        is parked, so nothing else writes); what does not fit is the writer's."""
        try:
            data = self.handle.data_to_send()
        except Exception as exc:  # noqa: BLE001 - re-raised by run() once flushed
            self._failed(exc)
            return
        try:
            sent = os.write(self.fd, data) if data else 0
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(trio.BrokenResourceError(f"socket write failed: {exc!r}"))
            return
        if sent < len(data):
            self.unsent = bytes(data[sent:])
            self.wakeup.wake()

    def _stop_timer(self) -> None:
        if self.deadline != -math.inf:
            self.deadline = -math.inf  # never again: its heap entries are stale
            self.timers.clients -= 1

    async def _read(self) -> None:
        stream, fd = self.stream, self.fd
        eager = True
        while self.bug is None:
            try:
                if fd < 0:  # TLS, WebSocket: the stream's own reads
                    data = bytes(await stream.receive_some(RECEIVE_SIZE))  # bytes: no copy
                else:
                    data = await receive_socket(fd, eager)
                    eager = len(data) >= EAGER_READ
            except _TRANSPORT_ERRORS as exc:
                self._lost(exc)
                return
            if not data:
                if self._feed(data):
                    self.eof = True
                    self._end("peer disconnected")
                    self.wakeup.wake()
                return
            if len(data) <= FEED_SIZE:
                if not self._feed(data):
                    return
            elif not await self._feed_in_turns(data):
                return
            self._retick()
            self._wake_writer()

    async def _feed_in_turns(self, data: bytes) -> bool:
        """Feed one big read in pieces, yielding whenever a turn has used up
        TURN_BUDGET; False once the handle has failed.

        Pieces start at FEED_SIZE and double while the turn is within budget:
        each call into the handle has a cost of its own, and a read of cheap
        input (a few large transfers) then takes three or four calls, not eight.
        Costly input meets the budget within a piece or two and stays small; a
        turn is at most a piece longer than the budget.
        """
        handle = self.handle
        pos, end, size = 0, len(data), FEED_SIZE
        turn = time.perf_counter()
        while pos < end:
            if not self._feed(data[pos : pos + size]):
                return False
            pos += size
            if handle.done:
                return True  # what follows a close is discarded anyway
            if time.perf_counter() - turn < TURN_BUDGET:
                size *= 2
                continue
            # Let other connections run; what we answered goes out meanwhile.
            self._retick()
            self.wakeup.wake()
            await trio.lowlevel.checkpoint()
            if self.bug is not None:
                return False
            turn = time.perf_counter()
            size = FEED_SIZE
        return True

    def _feed(self, data: bytes) -> bool:
        """`receive_data`, with a bug recorded instead of raised; False once failed."""
        try:
            self.handle.receive_data(data)
        except Exception as exc:  # noqa: BLE001 - re-raised by run() once flushed
            self._failed(exc)
            return False
        return True

    async def _write(self) -> bool:
        """Send until done; True when everything went out and the close may be graceful."""
        data: bytes | bytearray
        while not self.broken:
            try:
                if self.unsent:  # a direct write's rest (_write_now) goes first
                    data, self.unsent = self.unsent, b""
                else:
                    data = self.handle.data_to_send()
            except Exception as exc:  # noqa: BLE001 - re-raised by run()
                self._failed(exc)
                return False  # nothing more can come out of it
            if data:
                try:
                    await self.stream.send_all(data)
                except _TRANSPORT_ERRORS as exc:
                    self._lost(exc)
                    return False
                continue
            if self.bug is not None:
                return True  # flushed what the handle queued before failing
            if self.handle.done or self.eof:
                self._end("closed" if self.handle.done else "peer disconnected")
                return True
            self.writer_parked = True
            try:
                await self.wakeup.wait()
            finally:
                self.writer_parked = False
            self._retick()
        return False

    async def _close_gracefully(self) -> None:
        try:
            with trio.move_on_after(self.close_timeout):
                if isinstance(self.stream, trio.abc.HalfCloseableStream) and not self.eof:
                    try:
                        await self.stream.send_eof()
                        while await self.stream.receive_some(RECEIVE_SIZE):
                            pass
                    except _TRANSPORT_ERRORS:
                        pass
                await self.stream.aclose()
        finally:
            await self._abort()  # a no-op once closed; closes for sure otherwise

    async def _abort(self) -> None:
        """Tell the engine the transport is gone and close without ceremony."""
        try:
            self.handle.connection_lost()
        except Exception as exc:
            if self.bug is None:
                log.exception("connection_lost() failed")
            else:  # the same bug again, most likely: its first traceback is the one to read
                log.error("connection_lost() failed after an internal error: %r", exc)
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)
