"""Accept loops that ride out running short of descriptors (EMFILE and friends).

`trio.serve_listeners` already sleeps 100 ms when accept() fails for lack of
resources, but it logs an error with a traceback each time: at the open-files
limit that is ten tracebacks a second for as long as the shortage lasts,
which buries the log and costs CPU the broker is short of already.  Here the
same condition is one log line per `ACCEPT_LOG_INTERVAL` with a count, the
sleep backs off from `ACCEPT_BACKOFF` to `ACCEPT_BACKOFF_MAX` so that a long
shortage does not keep the loop busy, and the first accept that succeeds
again resets the backoff and says so.  Meanwhile new connections wait in the
kernel's listen backlog and are served once descriptors free up; nothing
needs restarting.  `AcceptGuard.refused` counts the failed accepts (a
metric), for all of a server's listeners together.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

import trio

from broker.transports import hosting

log = logging.getLogger("broker.transport")

# What accept(2) returns when the process or the system is out of something.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_BACKOFF = 0.1  # seconds before the first retry; doubles while failing
ACCEPT_BACKOFF_MAX = 1.0  # longest wait between retries (how late recovery may be noticed)
ACCEPT_LOG_INTERVAL = 10.0  # seconds: at most one "refused" line (and one "again") per interval

# A handler returns True when it handed the stream over (hosting.py): it is
# then not closed when the handler returns.
Handler = Callable[[trio.abc.Stream], Awaitable[object]]


class AcceptGuard:
    """Counts accepts refused for lack of resources and rate-limits what the log hears.

    One guard is shared by every listener of a server, so TCP and WebSocket
    failing together still make one line per interval.  Times are trio's clock.
    """

    def __init__(self, *, log_interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.log_interval = log_interval
        self.refused = 0  # failed accept() calls since start
        self._unreported = 0  # refused since the last line about it
        self._failing = False  # refused since the last successful accept
        self._last_refused_line: float | None = None
        self._last_again_line: float | None = None

    def on_refused(self, exc: OSError) -> None:
        self.refused += 1
        self._unreported += 1
        self._failing = True
        now = trio.current_time()
        if self._last_refused_line is None or now - self._last_refused_line >= self.log_interval:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            log.warning(
                "cannot accept connections: %s (%s); %d accept(s) refused since the last "
                "report, %d in all; new connections wait in the listen backlog",
                name,
                os.strerror(exc.errno or 0),
                self._unreported,
                self.refused,
            )
            self._unreported = 0
            self._last_refused_line = now

    def on_accepted(self) -> None:
        if not self._failing:
            return
        self._failing = False
        now = trio.current_time()
        # Near the limit accepts may alternate with refusals; stay within one line per interval.
        if self._last_again_line is None or now - self._last_again_line >= self.log_interval:
            log.warning("accepting connections again (%d accept(s) refused in all)", self.refused)
            self._last_again_line = now


async def serve_listeners(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    handler_nursery: trio.Nursery | None = None,
    guard: AcceptGuard | None = None,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`trio.serve_listeners` with the resource-shortage handling above.

    Runs `handler(stream)` for every accepted stream in `handler_nursery`
    (the stream is closed when it returns, unless handed over) until
    cancelled; each listener is closed when its loop ends.  The connections
    handlers hand over are hosted (hosting.py) in the same nursery.  Other
    accept errors propagate, as in trio.
    """
    guard = guard if guard is not None else AcceptGuard()
    host: hosting.Host | None = None
    try:
        async with trio.open_nursery() as nursery:
            handlers = handler_nursery if handler_nursery is not None else nursery
            host = hosting.Host(handlers)
            handlers.start_soon(host.keep)
            token = hosting.set_current(host)  # inherited by the accept loops' handlers
            try:
                for listener in listeners:
                    nursery.start_soon(_accept_loop, listener, handlers, handler, guard)
            finally:
                hosting.reset_current(token)
            task_status.started(listeners)
    finally:
        if host is not None:
            host.close()


async def _accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream],
    handlers: trio.Nursery,
    handler: Handler,
    guard: AcceptGuard,
) -> None:
    async with listener:
        delay = ACCEPT_BACKOFF
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                guard.on_refused(exc)
                await trio.sleep(delay)
                delay = min(delay * 2, ACCEPT_BACKOFF_MAX)
                continue
            delay = ACCEPT_BACKOFF
            guard.on_accepted()
            handlers.start_soon(_run_handler, stream, handler)


async def _run_handler(stream: trio.abc.Stream, handler: Handler) -> None:
    handed_over = False
    try:
        handed_over = await handler(stream) is True
    finally:
        if not handed_over:
            await trio.aclose_forcefully(stream)
