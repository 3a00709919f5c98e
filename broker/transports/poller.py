"""One task reads every plain socket: the poller.

Why: a task per connection waiting to read cost each idle connection its
task, the coroutine chain under it and trio's bookkeeping for every wait:
with ten thousand idle connections that was about 5 KiB of the 12 a
connection held.  Here each connection's socket is registered once, in a
private level-triggered epoll set, and one task waits for that epoll to be
readable, then calls every ready connection's pump (`socketpump.SocketPump`):
`on_readable` to read and feed, `on_writable` when a socket that was full
takes more.  Trio sees one descriptor, however many connections there are,
and input that arrives together (a burst of heartbeats, a busy run of
publishers) is one wake-up, not one per connection.

Fairness: the wait for the epoll is a yield, so every other task runs
between two turns.  Within a turn the poller looks at the clock after each
connection's call; once the turn has used TURN_BUDGET it lets the other
tasks run before going on with the connections still ready.  A
connection's read that is too costly for one turn (pump.py's `_feed_turn`)
keeps the rest and asks to be `resume`d: the poller goes on with it next
turn, before reading anything new from it.

While the poller is calling pumps it holds the `Flusher`: the connections
those calls woke are written once, at the end of the turn, by the poller
itself, without the flusher's task switch.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from broker.transports.pump import TURN_BUDGET
from broker.transports.timers import per_run

if TYPE_CHECKING:
    from broker.transports.socketpump import SocketPump

log = logging.getLogger("broker.transport")

READ = select.EPOLLIN if hasattr(select, "epoll") else 0
WRITE = select.EPOLLOUT if hasattr(select, "epoll") else 0
# what a read learns about: data, the peer's EOF, an error or reset
READABLE = READ | (select.EPOLLERR | select.EPOLLHUP if hasattr(select, "epoll") else 0)


def supported() -> bool:
    """Whether this platform has epoll (Linux).  Elsewhere (macOS, the BSDs)
    every stream gets driver.StreamPump's two tasks instead: the same
    behaviour, with more memory per connection."""
    return hasattr(select, "epoll")


class Poller:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._pumps: dict[int, SocketPump] = {}  # by descriptor
        self._resume: list[SocketPump] = []
        self.flusher = flusher()

    def add(self, pump: SocketPump) -> None:
        """Read `pump`'s socket from now on."""
        self._epoll.register(pump.fd, READ)
        self._pumps[pump.fd] = pump

    def remove(self, pump: SocketPump) -> None:
        """No more calls for `pump` (before its socket closes: its number may
        be another's next)."""
        fd = pump.fd
        if fd >= 0 and self._pumps.get(fd) is pump:
            del self._pumps[fd]
            self._epoll.unregister(fd)

    def watch_writes(self, pump: SocketPump, on: bool) -> None:
        """Call `pump.on_writable` while its socket is full (`on`), or no more."""
        self._epoll.modify(pump.fd, READ | WRITE if on else READ)

    def resume(self, pump: SocketPump) -> None:
        """Call `pump.on_resume` next turn: it has input left from its last read."""
        self._resume.append(pump)

    async def run(self) -> None:
        poll = self._epoll.poll
        pumps = self._pumps
        wait_for = self._epoll.fileno()
        flusher = self.flusher
        while True:
            # The wait is the others' turn too: after a busy turn the epoll is
            # readable at once, but every other task has run first.
            if self._resume:
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.wait_readable(wait_for)
            flusher.held = True
            try:
                turn = time.perf_counter()
                resumed, self._resume = self._resume, []
                for at, pump in enumerate(resumed):
                    if time.perf_counter() - turn >= TURN_BUDGET:
                        self._resume[:0] = resumed[at:]  # first next turn
                        break
                    _call(pump, pump.on_resume)
                for fd, events in poll(0):
                    ready = pumps.get(fd)
                    if ready is None:
                        continue  # removed by an earlier call of this turn
                    if events & WRITE:
                        _call(ready, ready.on_writable)
                    if events & READABLE:
                        _call(ready, ready.on_readable)
                    if time.perf_counter() - turn >= TURN_BUDGET:
                        flusher.flush()
                        await trio.lowlevel.checkpoint()
                        turn = time.perf_counter()
                flusher.flush()
            finally:
                flusher.release()


def _call(pump: SocketPump, method: Callable[[], None]) -> None:
    """One pump's call; a bug in one connection must not stop the others
    (nor end the poller's system task, which would end the trio run)."""
    try:
        method()
    except Exception as exc:
        log.exception("a connection's pump failed")
        try:
            pump.broke(exc)
        except Exception:
            log.exception("ending a failed connection failed")


class Flusher:
    """Writes the output of connections woken by others (socketpump.py's
    `wake`), once per turn: by the poller at the end of its turn when the
    wake came from a pump it called (`held`), else by the flusher's own task."""

    def __init__(self) -> None:
        self._pending: list[SocketPump] = []
        self._task: trio.lowlevel.Task | None = None  # set while it waits for work
        self.held = False  # the poller is calling pumps: it flushes at the end

    def add(self, pump: SocketPump) -> None:
        self._pending.append(pump)
        if not self.held:
            self._wake_task()

    def flush(self) -> None:
        batch, self._pending = self._pending, []
        for pump in batch:
            _call(pump, pump.on_wake)

    def release(self) -> None:
        """The poller's turn is over: a wake from now on is the task's."""
        self.held = False
        if self._pending:
            self._wake_task()

    def _wake_task(self) -> None:
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
            self.flush()
            await trio.lowlevel.checkpoint()


def _abort_wait(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


_FLUSHER: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("amqpws_flusher")


def flusher() -> Flusher:
    """This trio run's flusher, its task started on first use."""
    return per_run(_FLUSHER, Flusher, "amqpws-broker flusher")


_POLLER: trio.lowlevel.RunVar[Poller] = trio.lowlevel.RunVar("amqpws_poller")


def poller() -> Poller:
    """This trio run's poller, its task started on first use."""
    return per_run(_POLLER, Poller, "amqpws-broker poller")
