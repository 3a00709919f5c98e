"""Connections that outlive the task that accepted them.

A listener's handler task does the accept-time work (a WebSocket upgrade,
the container's `connection_made`) and, for a plain socket, hands the
connection to its listeners' `Host` and returns: while it is open the
connection has no task at all (socketpump.py, poller.py).  Only its end gets
one, in the handlers' nursery, to flush, close and log why.

The Host keeps what a task per connection gave for free:
- the server's shutdown grace: `keep` runs in the handlers' nursery while
  any hosted connection is open, so the nursery (and `serve`) waits for them
  as it waits for the handler tasks (once the listeners have stopped, a
  handler still running drives its connection in its own task: `accepting`);
- cancellation: when the nursery is cancelled (the grace is over, or the
  server's caller cancelled it), `keep` aborts every connection still open.

`current()` is the Host of the listeners whose handler is running:
`accept.serve_listeners` makes one and sets it for its accept loops, whose
handler tasks inherit it (trio starts a task in a copy of its spawner's
context).
"""

from __future__ import annotations

import contextvars
import logging

import trio

from broker.transports.socketpump import SocketPump

log = logging.getLogger("broker.transport")


class Host:
    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._open: dict[SocketPump, str] = {}  # with the label its log lines carry
        self._closed = False  # no more adoptions: keep ends once the open ones end
        self._changed: trio.Event | None = None

    @property
    def accepting(self) -> bool:
        """Whether `adopt` may be called: not once the listeners have stopped,
        when `keep` may already have returned.  A handler still running then
        (a WebSocket upgrade that finished during the grace) drives its
        connection in its own task, under the nursery's deadline."""
        return not self._closed

    def adopt(self, pump: SocketPump, label: str) -> None:
        """Start `pump` with no task; its end gets one (logged as `label`)."""
        assert not self._closed, "adopt after the listeners stopped"
        self._open[pump] = label
        try:
            pump.start(self._ended)
        except BaseException:
            self._open.pop(pump, None)
            raise

    def close(self) -> None:
        """The listeners stopped: `keep` returns once the open connections have ended."""
        self._closed = True
        self._changed_now()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _ended(self, pump: SocketPump) -> None:
        label = self._open.pop(pump, "connection")
        self._nursery.start_soon(self._finish, pump, label)
        self._changed_now()

    def _changed_now(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _finish(self, pump: SocketPump, label: str) -> None:
        try:
            reason = await pump.run()
        except Exception:
            log.exception("%s disconnected: internal error", label)
            return
        except BaseException:
            log.info("%s disconnected: server stopped", label)
            raise
        log.info("%s disconnected: %s", label, reason)

    async def keep(self) -> None:
        """Hold the handlers' nursery open while connections are; abort them
        when cancelled."""
        try:
            while self._open or not self._closed:
                self._changed = trio.Event()
                await self._changed.wait()
        finally:
            self._changed = None
            left, self._open = self._open, {}
            for pump in left:
                pump.detach()  # none of them can end (and be finished) meanwhile
            with trio.CancelScope(shield=True):
                for pump, label in left.items():
                    await pump.abandon()
                    log.info("%s disconnected: server stopped", label)


_CURRENT: contextvars.ContextVar[Host | None] = contextvars.ContextVar(
    "amqpws_host", default=None)


def current() -> Host | None:
    """The Host of the listeners whose handler this task runs (None elsewhere:
    `drive` then waits in the caller's task)."""
    return _CURRENT.get()


def set_current(host: Host | None) -> contextvars.Token[Host | None]:
    return _CURRENT.set(host)


def reset_current(token: contextvars.Token[Host | None]) -> None:
    _CURRENT.reset(token)
