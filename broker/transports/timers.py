"""One timer for every connection's deadline (heartbeats, idle limits, the
handshake deadline, token expiry).

A task per connection sleeping until its next deadline costs a task (its
stack frame and cancel scope) per connection and a task switch per
heartbeat; with ten thousand idle connections that was most of what the
broker did.  Instead every connection's pump puts its deadline in one heap,
and one task, started on first use in each trio run, sleeps until the
earliest and calls `on_deadline()` of each that is due.

Deadlines are kept on a grid of `GRAIN` seconds, each rounded up: the
deadlines that fall within one step share one wake-up of the task.  Ten
thousand idle connections opened within a few seconds send their heartbeats
in that same rhythm; without the grid every one of them was a wake-up of its
own (a trio task switch and a cancelled sleep, dearer than the heartbeat's
write).  Nothing here needs better than a tenth of a second: heartbeats are
seconds apart, and an idle limit, a handshake deadline or a token's expiry a
tenth of a second late is still kept.

A pump only ever moves its deadline earlier (see pump.py's `_retick`); a moved
deadline leaves its old heap entry behind, recognised as stale because it
no longer equals the pump's `deadline`, and dropped when it comes up.  Stale
entries of connections that ended are dropped too; if they pile up the heap
is rebuilt from the live ones.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

log = logging.getLogger("broker.transport")


GRAIN = 0.1  # seconds: deadlines are rounded up to a multiple of this


class Timed(Protocol):
    # trio's clock, set by Timers.schedule; math.inf: none; -math.inf: never
    # again; a heap entry not equal to it is stale
    deadline: float

    def on_deadline(self) -> None: ...


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timed]] = []
        self._order = itertools.count()
        self._scope: trio.CancelScope | None = None
        self.clients = 0  # connections using the timers (for when to rebuild)

    def schedule(self, client: Timed, deadline: float) -> None:
        """Call `client.on_deadline()` at `deadline`, or up to `GRAIN` later
        (on the grid; never more than a microsecond early), unless it is
        already due by then: sets `client.deadline` to the time it will be
        called."""
        # (less a hair: a deadline already on the grid, give or take a float's
        # rounding, stays where it is)
        deadline = math.ceil(deadline / GRAIN - 1e-6) * GRAIN
        if deadline >= client.deadline:
            return
        client.deadline = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._order), client))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        if len(heap) > 2 * self.clients + 1024:  # mostly stale: rebuild (amortised)
            self._heap = [e for e in heap if e[2].deadline == e[0]]
            heapq.heapify(self._heap)

    async def run(self) -> None:
        while True:
            now = trio.current_time()
            # self._heap each time: on_deadline may schedule, and a schedule may
            # rebuild the heap as a new list
            while self._heap and self._heap[0][0] <= now:
                deadline, _, client = heapq.heappop(self._heap)
                if client.deadline == deadline:
                    client.deadline = math.inf
                    try:
                        client.on_deadline()
                    except Exception:  # a bug in one connection must not stop the timers
                        log.exception("a connection's timer failed")
            heap = self._heap
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None


class Service(Protocol):
    async def run(self) -> None: ...


S = TypeVar("S", bound=Service)


def per_run(var: trio.lowlevel.RunVar[S], make: Callable[[], S], name: str) -> S:
    """This trio run's one `make()` (kept in `var`), its `run` task started on
    first use: the timers here, poller.py's poller and flusher."""
    try:
        return var.get()
    except LookupError:
        found = make()
        var.set(found)
        trio.lowlevel.spawn_system_task(found.run, name=name)
        return found


_TIMERS: trio.lowlevel.RunVar[Timers] = trio.lowlevel.RunVar("amqpws_timers")


def timers() -> Timers:
    """This trio run's timers, their task started on first use."""
    return per_run(_TIMERS, Timers, "amqpws-broker timers")
