"""Lines about a peer host, at most once per interval with a count of the
ones held back: a thousand sockets failing together make one line, and a
client retrying a bad password every second does not fill the log.  Pure:
the clock is passed in."""

from __future__ import annotations

import logging
from collections.abc import Callable

PEER_LOG_INTERVAL = 60.0  # seconds: repeated failures from one peer are logged once a minute


class PeerLog:
    """Log lines about a peer host at most once per interval, with a count of
    the ones held back: a thousand sockets failing together make one line."""

    def __init__(self, clock: Callable[[], float], logger: logging.Logger,
                 interval: float = PEER_LOG_INTERVAL) -> None:
        self.clock = clock
        self.logger = logger
        self.interval = interval
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def info(self, peer: str, message: str, *args: object) -> None:
        self._log(logging.INFO, peer, message, *args)

    def warning(self, peer: str, message: str, *args: object) -> None:
        self._log(logging.WARNING, peer, message, *args)

    def _log(self, level: int, peer: str, message: str, *args: object) -> None:
        host = peer.rsplit(":", 1)[0]
        key = (host, message)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return
        held = f" (and {last[1]} more like it in the last {self.interval:g} s)" \
            if last and last[1] else ""
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = (now, 0)
        self.logger.log(level, "%s: " + message + "%s", host, *args, held)
