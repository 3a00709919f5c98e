"""One task per connection on a plain TCP socket (AMQP, or a WebSocket over
it): it reads; output is written at once.

Why: two tasks per connection (a reader and a writer, as `driver.StreamPump`
has) cost about 3 KiB of trio's tasks, nursery, cancel scopes and events per
connection, and a task switch whenever the peer's input asked for an answer.
With ten thousand idle connections the memory was most of what a connection
held.  A plain socket can be written without waiting (`os.write` on the
non-blocking descriptor), so the writer is not needed as a task while the
socket takes what we give it, which is nearly always.  A WebSocket's framing
is its stream's (`DirectWebSocket`), done without I/O; only TLS streams keep
the two tasks.

Who writes:
- the connection's own task, after feeding a read (the answer to the peer's
  frames goes out before the next read, with no task switch);
- the timers' call when a deadline came (a heartbeat);
- the flusher: one task for every connection whose handle another connection
  woke (a publisher's message queued on a consumer's link).  `wake` only puts
  the pump on the flusher's list; the flusher writes each listed pump once,
  after the waking connection's turn, so a read of fifty messages for one
  consumer is still one write, and a hundred consumers woken by one read
  cost one task switch, not a hundred;
- while the socket is full, a drain task, started for that moment only: it
  waits until the socket takes more, writes what was left and then whatever
  the handle queued meanwhile, and ends.  Nobody else writes while it runs,
  so the order of the bytes is kept.

The end: whatever ends the connection (`_end`: the handle done, the peer's
EOF, a transport error, a bug) cancels the read, and the connection's task
writes what is left, waiting for the socket as long as `close_timeout`
allows, before the close of pump.py.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol, cast

import trio

from broker.transports.pump import (
    TCP_HEARTBEAT_READ,
    TRANSPORT_ERRORS,
    ConnectionHandle,
    Pump,
    Wakeup,
    receive_socket,
)
from broker.transports.timers import per_run

log = logging.getLogger("broker.transport")


class DirectWebSocket(Protocol):
    """What a SocketPump needs of a WebSocket over a plain socket
    (websocket.WebSocketStream): the socket, and its framing without I/O."""

    heartbeat_read: int  # a read this short holds at most a heartbeat

    @property
    def direct_fd(self) -> int: ...
    @property
    def at_eof(self) -> bool: ...
    def take_pending(self) -> bytes: ...
    def decode(self, raw: bytes) -> bytes: ...
    def take_replies(self) -> bytes: ...
    def frame(self, data: bytes | bytearray) -> bytes: ...


def serves(stream: trio.abc.Stream) -> bool:
    """Whether `stream` is one a SocketPump can write without waiting: a plain
    TCP socket, or a WebSocket over one."""
    return type(stream) is trio.SocketStream or getattr(stream, "direct_fd", -1) >= 0


class SocketPump(Pump):
    __slots__ = (
        "drain_scope",
        "draining",
        "fd",
        "feeding",
        "flusher",
        "output_failed",
        "queued",
        "quiet_read",
        "read_scope",
        "unsent",
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
            self.quiet_read = TCP_HEARTBEAT_READ
        else:  # a WebSocket: we read and write its socket, it frames
            self.ws = ws = cast(DirectWebSocket, stream)
            self.fd = ws.direct_fd
            self.quiet_read = ws.heartbeat_read
        self.read_scope = trio.CancelScope()  # cancelled by _end
        self.feeding = False  # inside receive_data: what it queues goes after the read
        self.queued = False  # on the flusher's list
        self.draining = False  # a drain task owns the writes (the socket was full)
        self.drain_scope: trio.CancelScope | None = None
        # what the socket did not take yet: a view into the buffer the handle
        # handed over (never copied, however many partial writes a big one takes)
        self.unsent: bytes | bytearray | memoryview = b""
        self.output_failed = False  # data_to_send raised: nothing more can come out
        self.flusher = flusher()
        wakeup.bind(self.wake)

    async def pump(self) -> bool:
        with self.read_scope:  # cancelled by _end
            self.on_deadline()  # the first tick; it may queue a heartbeat or a close
            await self._read()
        with trio.move_on_at(self.flush_by):
            try:
                return await self._flush_to_end()
            finally:
                self.fd = -1  # written to no more: once closed, its number may be another's
        self._timed_out()
        return False

    def _end(self, reason: str) -> None:
        super()._end(reason)
        self.read_scope.cancel()

    async def _read(self) -> None:
        fd, eager, ws, quiet = self.fd, True, self.ws, self.quiet_read
        if ws is not None:
            pending = ws.take_pending()  # frames that came with the upgrade request
            if pending and not await self.feed_read(pending):
                return
        while self.reason is None:
            try:
                data = await receive_socket(fd, eager)
            except TRANSPORT_ERRORS as exc:
                self._lost(exc)
                return
            eager = len(data) > quiet
            if ws is not None and data:
                data = ws.decode(data)
                if not data and not ws.at_eof:  # a ping, say: its pong goes now
                    self.after_input()
                    continue
            if not await self.feed_read(data):
                return
            if ws is not None and ws.at_eof and data:  # the peer's close came with payload
                await self.feed_read(b"")
                return

    def _feed(self, data: bytes) -> bool:
        self.feeding = True
        try:
            return super()._feed(data)
        finally:
            self.feeding = False

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
            self.on_deadline()

    def after_input(self) -> None:
        """Write what the handle has now; if the socket is full, a drain task
        takes over until it is not."""
        if self.broken or self.draining:
            return
        if not self._write_out() and self.reason is None:
            self.draining = True
            trio.lowlevel.spawn_system_task(self._drain, name="amqpws-broker drain")

    def _write_out(self) -> bool:
        """Write `unsent`, then the handle's output, as far as the socket takes
        it without waiting; False when the socket is full (the rest kept in
        `unsent`), True when nothing is left or nothing more can be written."""
        fd = self.fd
        while fd >= 0 and not self.broken and not self.output_failed:
            data = self.unsent
            ws = self.ws
            if data:
                self.unsent = b""
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
                        data = ws.frame(data)
                    except trio.BrokenResourceError as exc:  # our close frame went out
                        self._lost(exc)
                        return True
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(trio.BrokenResourceError(f"socket write failed: {exc!r}"))
                return True
            if sent < len(data):
                self.unsent = memoryview(data)[sent:]
                return False
        return True

    async def _drain(self) -> None:
        """A system task while the socket is full; `_flush_to_end` or `_abort`
        cancel it when the connection ends."""
        try:
            with trio.CancelScope() as scope:
                self.drain_scope = scope
                # Ending before we ran: the connection's task writes the rest itself.
                while self.fd >= 0 and self.reason is None:
                    await trio.lowlevel.wait_writable(self.fd)
                    if self._write_out():
                        return
        except Exception:  # a system task must not raise
            log.exception("a connection's drain failed")
            self.output_failed = True
            self._end("internal error")
        finally:
            self.drain_scope = None
            self.draining = False

    def _stop_drain(self) -> None:
        if self.drain_scope is not None:
            self.drain_scope.cancel()  # its wait is withdrawn at once: the socket is ours

    async def _flush_to_end(self) -> bool:
        """Write what is left, waiting for the socket (under the close deadline);
        True when everything went out."""
        self._stop_drain()
        fd = self.fd
        while not self._write_out():
            await trio.lowlevel.wait_writable(fd)
        return not self.broken and not self.output_failed

    async def _abort(self) -> None:
        self._stop_drain()
        self.fd = -1
        await super()._abort()


class Flusher:
    """The one task that writes the output of connections woken by others."""

    def __init__(self) -> None:
        self._pending: list[SocketPump] = []
        self._task: trio.lowlevel.Task | None = None  # set while it waits for work

    def add(self, pump: SocketPump) -> None:
        self._pending.append(pump)
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    async def run(self) -> None:
        while True:
            if not self._pending:
                self._task = trio.lowlevel.current_task()
                try:
                    await trio.lowlevel.wait_task_rescheduled(_abort_wait)
                finally:
                    self._task = None
            batch, self._pending = self._pending, []
            for pump in batch:
                try:
                    pump.on_wake()
                except Exception:  # a bug in one connection must not stop the others
                    log.exception("a connection's flush failed")
            await trio.lowlevel.checkpoint()


def _abort_wait(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


_FLUSHER: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("amqpws_flusher")


def flusher() -> Flusher:
    """This trio run's flusher, its task started on first use."""
    return per_run(_FLUSHER, Flusher, "amqpws-broker flusher")
