"""What both kinds of gateway connection are to the transport driver: an
engine connection fed bytes and asked for bytes on the gateway's clock, its
traffic counted, its events handed on by `process` (the client side's in
core.py, the upstream side's in upstream.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.engine.connection import Connection


class EngineHandle:
    """The driver's `ConnectionHandle` over one engine connection."""

    conn: Connection

    def __init__(self, clock: Callable[[], float], wake: Callable[[], None]) -> None:
        self.clock = clock
        self.wake = wake  # pokes this connection's writer
        self.bytes_in = 0  # for /api/gateway and the console
        self.bytes_out = 0

    def process(self) -> None:
        raise NotImplementedError

    def note_touched(self, dirty: set[Any]) -> None:
        """Add to `dirty` (whose writers the gateway wakes) the handles of the
        other connections our input wrote to: what the engine forwarded, and
        the originals it settled (`Link.forward_to`, `Connection.touched`)."""
        if self.conn.touched:
            for other in self.conn.take_touched():
                dirty.add(other.owner)

    def receive_data(self, data: bytes | memoryview) -> bool:
        """True: a bare heartbeat, nothing to process, tick or send."""
        self.bytes_in += len(data)
        if self.conn.receive_data(data, self.clock()):
            return True
        self.process()
        return False

    def data_to_send(self) -> bytes | bytearray:
        data = self.conn.data_to_send()
        self.bytes_out += len(data)
        return data

    def tick(self) -> float | None:
        deadline = self.conn.tick(self.clock())
        self.process()
        return deadline

    @property
    def done(self) -> bool:
        return self.conn.done

    def has_output(self) -> bool:
        """Something for the driver's writer: frames, or the end."""
        return self.conn.has_output or self.conn.done

    def connection_lost(self) -> None:
        if not self.conn.done:
            self.receive_data(b"")
