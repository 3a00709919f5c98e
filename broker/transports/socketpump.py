"""The pump of a plain TCP socket (AMQP, or a WebSocket over it): no task of
its own while the connection lives; the poller reads, and output is written
at once.

Why: a reader and a writer task per connection (as `driver.StreamPump` has)
cost about 3 KiB of trio's tasks, nursery, cancel scopes and events per
connection, and a task switch whenever the peer's input asked for an
answer; even one reading task per connection left its coroutine chain and
trio's per-wait bookkeeping, and a wake-up per heartbeat.  A plain socket
can be read when the poller (poller.py) finds it readable and written
without waiting (`os.write` on the non-blocking descriptor), so no task is
needed while the socket takes what we give it, which is nearly always.  A
WebSocket's framing is its stream's (`DirectWebSocket`), done without I/O;
only TLS streams keep the two tasks.

Who writes:
- the poller's call that fed a read (the answer to the peer's frames goes
  out before anything else is read);
- the timers' call when a deadline came (a heartbeat);
- the flusher (poller.py), for every connection whose handle another
  connection woke (a publisher's message queued on a consumer's link).
  `wake` only puts the pump on the flusher's list, and the list is written
  once, after the waking connection's turn: a read of fifty messages for one
  consumer is still one write, and a hundred consumers woken by one read
  cost no task switch at all when the poller made the read;
- while the socket is full, the poller, when it takes more: `after_input`
  asks it to watch for that (`on_writable`), and nobody else writes
  meanwhile, so the order of the bytes is kept.

Who waits: `start(ended)` hands the connection to the poller and returns;
`ended()` is called once, by whatever call ends the connection (`_end`: the
handle done, the peer's EOF, a transport error, a bug).  Then `run()` (pump.py)
writes what is left, waiting for the socket as long as `close_timeout`
allows, and closes.  `drive()` does all of that in the caller's task;
hosting.py's `Host` starts the connections its listeners accepted and gives
each a task only for its end, so an open connection holds no task at all.

An idle AMQP socket lets the kernel hold back every other heartbeat: after
a read that was a bare heartbeat (the handle's True) the socket's
SO_RCVLOWAT becomes one byte more than a heartbeat (framing's
HOLD_BACK_LOWAT, where the reason lives), so a lone heartbeat
does not make it readable, and the next read takes two.  Why: with 10,000
idle connections opened at random times each heartbeat was a wake-up of
its own, about 40 us of broker CPU (most of it trio's loop and the
kernel's task switch, not the read).  Nothing else waits for it: every
AMQP frame but an empty one is at least 12 bytes, and the option is only
set between frames, so any frame's first bytes make the socket readable;
the peer's EOF or a reset always does.  Every tick (the timers', and the
flusher's for a connection others woke) first reads what was held back,
so a held-back heartbeat still counts for the idle limit: counted from
when it is read, so a peer that hangs right after a heartbeat is closed up
to one idle limit later than it would have been.  The first other read
sets the option back.  Not for a WebSocket: a client's close or ping
frame can be smaller than its heartbeat (14 bytes), and would wait.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Protocol, cast

import trio

from broker.framing import HOLD_BACK_LOWAT
from broker.transports import poller as polling
from broker.transports.pump import RECEIVE_SIZE, ConnectionHandle, Pump, Wakeup

log = logging.getLogger("broker.transport")

# WebSocket output from this size on is written beside its frame header
# (writev) rather than joined to it: the join copies it
WRITEV_FROM = 16 * 1024
# the timers' read of what was held back: a heartbeat or two, and if a frame
# came meanwhile, only its start (the poller reads the rest, in its own turn)
HELD_BACK_READ = 64


class DirectWebSocket(Protocol):
    """What a SocketPump needs of a WebSocket over a plain socket
    (websocket.WebSocketStream): the socket, and its framing without I/O."""

    @property
    def direct_fd(self) -> int: ...
    @property
    def at_eof(self) -> bool: ...
    def take_pending(self) -> bytes: ...
    def decode(self, raw: bytes) -> bytes: ...
    def take_replies(self) -> bytes: ...
    @property
    def has_replies(self) -> bool: ...
    def frame_head(self, size: int) -> bytes: ...


def serves(stream: trio.abc.Stream) -> bool:
    """Whether `stream` is one a SocketPump can write without waiting: a plain
    TCP socket, or a WebSocket over one."""
    if not polling.supported():
        return False
    return type(stream) is trio.SocketStream or getattr(stream, "direct_fd", -1) >= 0


class SocketPump(Pump):
    __slots__ = (
        "backlog",
        "backlog_at",
        "ended",
        "fd",
        "feeding",
        "flusher",
        "holding_back",
        "output_failed",
        "poller",
        "queued",
        "started",
        "unsent",
        "unsent_head",
        "writing",
        "ws",
    )

    def __init__(
        self, stream: trio.abc.Stream, handle: ConnectionHandle, wakeup: Wakeup,
        timeout: float,
    ) -> None:
        super().__init__(stream, handle, wakeup, timeout)
        if type(stream) is trio.SocketStream:
            self.ws: DirectWebSocket | None = None
            self.fd = stream.socket.fileno()
        else:  # a WebSocket: we read and write its socket, it frames
            self.ws = ws = cast(DirectWebSocket, stream)
            self.fd = ws.direct_fd
        self.poller = polling.poller()
        self.flusher = self.poller.flusher
        self.ended: Callable[[SocketPump], None] | None = None  # told once, at the end
        self.started = False  # handed to the poller (by start)
        self.feeding = False  # inside receive_data: what it queues goes after the read
        self.queued = False  # on the flusher's list
        self.writing = False  # the socket was full: the poller writes when it takes more
        # the rest of a read that was too costly for one turn, fed from backlog_at on
        self.backlog = b""
        self.backlog_at = 0
        # what the socket did not take yet: a view into the buffer the handle
        # handed over (never copied, however many partial writes a big one takes)
        self.unsent: bytes | bytearray | memoryview = b""
        self.unsent_head = b""  # a frame header that goes before `unsent`
        self.output_failed = False  # data_to_send raised: nothing more can come out
        self.holding_back = False  # SO_RCVLOWAT lets the kernel hold back a heartbeat
        wakeup.bind(self.wake)

    def start(self, ended: Callable[[SocketPump], None]) -> None:
        """Hand the connection to the poller; `ended(self)` is called once, when it ends."""
        self.ended = ended
        self.started = True
        self.poller.add(self)
        self.on_deadline()  # the first tick; it may queue a heartbeat or a close
        ws = self.ws
        if ws is not None and self.reason is None:
            pending = ws.take_pending()  # frames that came with the upgrade request
            if pending:
                self._take(pending, 0)

    async def pump(self) -> bool:
        if not self.started:  # drive(): this task waits; a Host started us itself
            done = trio.Event()
            self.start(lambda _: done.set())
            await done.wait()
        with trio.move_on_at(self.flush_by):
            try:
                return await self._flush_to_end()
            finally:
                self.fd = -1  # written to no more: once closed, its number may be another's
        self._timed_out()
        return False

    def _end(self, reason: str) -> None:
        if self.reason is not None:
            return
        super()._end(reason)
        self.poller.remove(self)  # read no more
        self.backlog = b""
        ended = self.ended
        if ended is not None:
            ended(self)

    def detach(self) -> None:
        """No more calls from the poller, and no `ended` (see `abandon`)."""
        self.ended = None
        self.poller.remove(self)

    async def abandon(self) -> None:
        """Close at once, without flushing (the server's grace is over)."""
        self.detach()
        self._stop_timer()
        await self._abort()

    def broke(self, exc: Exception) -> None:
        """A bug in this pump itself (the poller's call raised): end as for the handle's."""
        self.output_failed = True
        self._failed(exc)

    # -- the poller's calls ----------------------------------------------------

    def on_readable(self, size: int = RECEIVE_SIZE) -> None:
        if self.reason is not None or self.backlog:
            return  # ended (its descriptor may be another's by now), or input left to feed
        try:
            data = os.read(self.fd, size)
        except BlockingIOError:
            return
        except OSError as exc:  # reset, and the like: what trio's stream raises for them
            self._lost(trio.BrokenResourceError(f"socket read failed: {exc!r}"))
            return
        ws = self.ws
        if ws is not None and data:
            data = ws.decode(data)
            if not data and not ws.at_eof:  # a ping, say: its pong goes now
                self.after_input()
                return
        self._take(data, 0)

    def on_resume(self) -> None:
        data, self.backlog = self.backlog, b""
        if data and self.reason is None and self.fd >= 0:
            self._take(data, self.backlog_at)

    def on_writable(self) -> None:
        # `writing`: not a stale event (a descriptor closed and reused in the
        # turn), and not after the end; `_write_out` may end us (a reset)
        if self.writing and self.reason is None and self._write_out() and \
                self.reason is None:
            self.writing = False
            self.poller.watch_writes(self, False)

    def _take(self, data: bytes, pos: int) -> None:
        """Feed one read from `pos` on (EOF: `b""`) for one turn; what is left
        waits for the next (`resume`)."""
        if not data:
            self._feed_eof()
            return
        pos = self._feed_turn(data, pos)
        if pos < 0:
            return
        ws = self.ws
        if ws is None:
            if self.holding_back != self.quiet:
                self._hold_back(self.quiet)  # on after a bare heartbeat, off after any other read
            if self.quiet:
                return  # a heartbeat and nothing else: no tick, nothing to write
        elif self.quiet and not (ws.at_eof or ws.has_replies):
            return
        self._retick()
        self.after_input()
        if self.reason is not None:
            return
        if pos < len(data):
            self.backlog, self.backlog_at = data, pos
            self.poller.resume(self)
        elif ws is not None and ws.at_eof:  # the peer's close came with payload
            self._feed_eof()

    def _hold_back(self, on: bool) -> None:
        """Let the kernel hold back a lone heartbeat (`on`), or no more."""
        stream = cast(trio.SocketStream, self.stream)
        try:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT,
                                     HOLD_BACK_LOWAT if on else 1)
        except OSError:
            return  # (a socket that failed: its read will say so)
        self.holding_back = on

    def on_deadline(self) -> None:
        """The timers' call (and the flusher's, through `on_wake`): first what
        the kernel held back (a heartbeat), so that the tick's idle limit
        counts it.  A peer that heartbeats at the interval we ask for (half
        our limit) has a heartbeat held back when the limit comes, and any
        tick, not only the timers', may be the one that looks."""
        if self.holding_back:
            self.on_readable(HELD_BACK_READ)
        super().on_deadline()

    def _feed(self, data: bytes | memoryview) -> bool:
        self.feeding = True
        try:
            return super()._feed(data)
        finally:
            self.feeding = False

    # -- writing ----------------------------------------------------------------

    def wake(self) -> None:
        """The handle has output (or its end to see), queued outside our own read:
        the flusher writes it once the waking connection's turn is over."""
        if not self.feeding and not self.queued:
            self.queued = True
            self.flusher.add(self)

    def on_wake(self) -> None:
        """The flusher's call: what the wake-up was for (it may have moved our
        deadline or ended the handle), then write."""
        self.queued = False
        if self.fd >= 0:  # not after the end: the handle is done with
            self.on_deadline()  # (it ticks: what was held back is read first)

    def after_input(self) -> None:
        """Write what the handle has now; if the socket is full, the poller
        writes the rest when it takes more."""
        if self.broken or self.writing:
            return
        if not self._write_out() and self.reason is None:
            self.writing = True
            self.poller.watch_writes(self, True)

    def _write_out(self) -> bool:
        """Write `unsent`, then the handle's output, as far as the socket takes
        it without waiting; False when the socket is full (the rest kept in
        `unsent`), True when nothing is left or nothing more can be written."""
        fd = self.fd
        while fd >= 0 and not self.broken and not self.output_failed:
            head, data = self.unsent_head, self.unsent
            ws = self.ws
            if head or data:
                self.unsent_head, self.unsent = b"", b""
            elif ws is not None and (data := ws.take_replies()):
                pass  # pongs and closes first, between whole frames
            else:
                try:
                    data = self.handle.data_to_send()
                except Exception as exc:  # noqa: BLE001 - re-raised by run() once flushed
                    self.output_failed = True
                    self._failed(exc)
                    return True
                if not data:
                    return True
                if ws is not None:
                    try:
                        head = ws.frame_head(len(data))
                    except trio.BrokenResourceError as exc:  # our close frame went out
                        self._lost(exc)
                        return True
                    if len(data) < WRITEV_FROM:
                        data, head = head + data, b""
            try:
                # a big frame's header and payload go out together, unjoined:
                # joining them copied the payload once more
                sent = os.writev(fd, (head, data)) if head else os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(trio.BrokenResourceError(f"socket write failed: {exc!r}"))
                return True
            if head:
                if sent < len(head):
                    self.unsent_head, self.unsent = head[sent:], data
                    return False
                sent -= len(head)
            if sent < len(data):
                self.unsent = memoryview(data)[sent:]
                return False
        return True

    async def _flush_to_end(self) -> bool:
        """Write what is left, waiting for the socket (under the close deadline);
        True when everything went out."""
        fd = self.fd
        while not self._write_out():
            await trio.lowlevel.wait_writable(fd)
        return not self.broken and not self.output_failed

    async def _abort(self) -> None:
        self.poller.remove(self)
        self.backlog = b""
        self.fd = -1
        await super()._abort()
