"""What every connection's pump shares: the handle's contract, how input is
fed, how the end is reached, and how the stream is closed.

A pump moves one byte stream through one engine connection (a
`ConnectionHandle`).  There are two kinds (driver.py picks one):
`socketpump.SocketPump` serves a plain TCP socket (AMQP, or a WebSocket over
it) with no task of its own: the one poller (poller.py) reads every such
socket, and output is written from whichever call produced it;
`driver.StreamPump` runs a reader and a writer task over any other
`trio.abc.Stream` (TLS, in-memory test streams).  Both feed input the same way
(in bounded turns, `_feed_turn`), take their deadlines from the one heap in
timers.py, and end the same careful way:

Once the handle is done (or the peer has gone), the remaining output gets
`close_timeout` seconds to drain; then the stream is closed gracefully
(half-close and drain input, so unread data cannot turn our last frame into
a TCP reset) or, if anything went wrong, forcefully.  Transport errors end
here as `connection_lost()`; they never reach the engine as exceptions.

A bug in the handle (any exception out of `receive_data`, `tick` or
`data_to_send`) ends the connection the same careful way: the handle is not
fed or ticked again, but what it queued before failing, the engine's
close(amqp:internal-error) from its error boundary, is flushed and the
stream closed gracefully, all under `close_timeout`; only then does the
exception leave `run`, for whoever ran it (driver.serve_stream, hosting.Host)
to log once with its traceback.
Dropping the socket first would leave the peer guessing why.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Protocol

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
CLOSE_TIMEOUT = 2.0  # seconds to flush the last frames and close
MIN_TICK = 0.05  # shortest timer sleep, seconds
TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class ConnectionHandle(Protocol):
    """What the driver needs from one engine connection (see container.py)."""

    def receive_data(self, data: bytes | memoryview) -> bool:
        """Feed input.  True: it was only a heartbeat (AMQP's empty frame, or
        two), with nothing to tick or send, so the pump skips both; the
        connection is then between frames, and a plain socket's pump may let
        the kernel hold back the next lone heartbeat (socketpump.py)."""
    def data_to_send(self) -> bytes | bytearray: ...
    def tick(self) -> float | None: ...
    @property
    def done(self) -> bool: ...
    def has_output(self) -> bool:
        """Whether the writer has work: data to send, or the end to see."""
    def connection_lost(self) -> None: ...


class Wakeup:
    """A coalescing signal: any number of `wake()` calls release one `wait()`.

    `wake` is synchronous and cheap because the container calls it from the
    middle of processing, once per frame it queues.  A pump without a writer
    task (socketpump.py) `bind`s its own call instead; the event is then never
    made.
    """

    __slots__ = ("_event", "_hook")

    def __init__(self) -> None:
        self._event: trio.Event | None = None
        self._hook: Callable[[], None] | None = None

    def bind(self, hook: Callable[[], None]) -> None:
        """From now on `wake()` calls `hook` (and `wait` is not used)."""
        self._hook = hook

    def wake(self) -> None:
        hook = self._hook
        if hook is not None:
            hook()
            return
        if self._event is None:
            self._event = trio.Event()
        self._event.set()

    async def wait(self) -> None:
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()
        self._event = None


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


class Pump:
    """The part of a connection's pump that does not depend on how it writes."""

    __slots__ = (
        "broken",
        "bug",
        "close_timeout",
        "deadline",
        "eof",
        "flush_by",
        "handle",
        "quiet",
        "reason",
        "stream",
        "timers",
        "wakeup",
    )

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
        self.flush_by = math.inf  # trio's clock: set once ending (close_timeout from then)
        self.deadline = math.inf  # when the timers call on_deadline (trio's clock)
        # the last read, fed in one piece, was only a heartbeat (the handle said
        # so): no tick, nothing to write.  On an idle connection that is every read.
        self.quiet = False
        self.timers = timers()
        self.timers.clients += 1  # until _stop_timer

    async def run(self) -> str:
        clean = False
        try:
            clean = await self.pump()
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

    async def pump(self) -> bool:
        """Move bytes until the end and flush (by `flush_by`, else `_timed_out`);
        True when everything went out and the close may be graceful."""
        raise NotImplementedError

    def _timed_out(self) -> None:
        self.reason = f"{self.reason or 'closing'}; flush timed out"

    def on_deadline(self) -> None:
        """The timers' call when the deadline came (or the pump's first tick):
        tick, and whatever that queued (a heartbeat, a close) gets on its way."""
        self._retick()
        self.after_input()

    def after_input(self) -> None:
        """What a fed read (or piece of one) may have queued gets on its way."""
        raise NotImplementedError

    def _end(self, reason: str) -> None:
        """Record why we are ending and bound the time left to flush."""
        if self.reason is None:
            self.reason = reason
            self.flush_by = trio.current_time() + self.close_timeout

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
            self.timers.schedule(self, max(deadline, trio.current_time() + MIN_TICK))

    def _stop_timer(self) -> None:
        if self.deadline != -math.inf:
            self.deadline = -math.inf  # never again: its heap entries are stale
            self.timers.clients -= 1

    async def feed_read(self, data: bytes) -> bool:
        """Hand one read to the handle (EOF: `b""`); False once the reading is over."""
        if not data:
            self._feed_eof()
            return False
        pos = 0
        while True:
            pos = self._feed_turn(data, pos)
            if pos < 0:
                return False
            if self.quiet:
                return True
            self._retick()
            self.after_input()
            if pos == len(data):
                return True
            # Let other connections run; what we answered goes out meanwhile.
            await trio.lowlevel.checkpoint()
            if self.bug is not None:
                return False

    def _feed_eof(self) -> None:
        if self._feed(b""):
            self.eof = True
            self._end("peer disconnected")
            self.wakeup.wake()

    def _feed_turn(self, data: bytes, pos: int) -> int:
        """Feed `data` from `pos` on for one turn: in pieces, until it is all
        fed or the turn has used up TURN_BUDGET.  Returns where the next turn
        goes on (`len(data)`: nothing is left, or what is left follows a close
        and is discarded anyway); -1 once the handle has failed.

        Pieces start at FEED_SIZE and double while the turn is within budget:
        each call into the handle has a cost of its own, and a read of cheap
        input (a few large transfers) then takes three or four calls, not eight.
        Costly input meets the budget within a piece or two and stays small; a
        turn is at most a piece longer than the budget.
        """
        end = len(data)
        if end - pos <= FEED_SIZE:  # an ordinary read: one call, no clock
            return end if self._feed(data[pos:] if pos else data) else -1
        handle = self.handle
        size = FEED_SIZE
        turn = time.perf_counter()
        view = memoryview(data)  # pieces as views: the engine's reader copies what it keeps
        while pos < end:
            if not self._feed(view[pos : pos + size]):
                return -1
            self.quiet = False  # a heartbeat in the last piece says nothing of the others
            pos += size
            if handle.done:
                return end
            if time.perf_counter() - turn >= TURN_BUDGET:
                return min(pos, end)
            size *= 2
        return end

    def _feed(self, data: bytes | memoryview) -> bool:
        """`receive_data`, with a bug recorded instead of raised (and whether it
        was only a heartbeat in `quiet`); False once failed."""
        try:
            self.quiet = self.handle.receive_data(data)
        except Exception as exc:  # noqa: BLE001 - re-raised by run() once flushed
            self.quiet = False
            self._failed(exc)
            return False
        return True

    async def _close_gracefully(self) -> None:
        try:
            with trio.move_on_after(self.close_timeout):
                if isinstance(self.stream, trio.abc.HalfCloseableStream) and not self.eof:
                    try:
                        await self.stream.send_eof()
                        while await self.stream.receive_some(RECEIVE_SIZE):
                            pass
                    except TRANSPORT_ERRORS:
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
