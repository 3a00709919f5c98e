"""`--trace-frames`: every frame of a connection, decoded, in the log (proton's
PN_TRACE_FRM habit).

The tracer reads copies of the bytes a connection takes in and hands out,
with frame readers of its own, so the engine's paths (the transfer fast path
included) are untouched, and a connection without a tracer pays nothing.
Payloads are cut to 64 bytes.  Malformed input is the engine's to refuse;
the tracer only says it cannot follow any more.
"""

from __future__ import annotations

import logging

from broker.codec.performatives import SaslInit, SaslOutcome
from broker.errors import AmqpError
from broker.framing import NEED_DATA, Frame, FrameReader, decode_frame_body

log = logging.getLogger("broker.frames")

PAYLOAD_SHOWN = 64


class _Direction:
    def __init__(self, label: str) -> None:
        self.label = label
        self.reader: FrameReader | None = FrameReader()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        reader = self.reader
        if reader is None or not data:
            return
        try:
            reader.feed(bytes(data))  # a copy: the caller sends the buffer on
            while (item := reader.next()) is not NEED_DATA:
                self._show(reader, item)
        except (AmqpError, ValueError) as exc:
            log.info("%s cannot follow any more: %s", self.label, exc)
            self.reader = None

    def _show(self, reader: FrameReader, item: object) -> None:
        if not isinstance(item, Frame):
            log.info("%s header %r", self.label, getattr(item, "raw", item))
            return
        if not item.body:
            log.info("%s [%d] heartbeat", self.label, item.channel)
            return
        performative, payload = decode_frame_body(item.body)
        shown = bytes(payload[:PAYLOAD_SHOWN]) if payload else b""
        more = f" (+{len(payload) - PAYLOAD_SHOWN} bytes)" if payload and \
            len(payload) > PAYLOAD_SHOWN else ""
        log.info("%s [%d] %r%s", self.label, item.channel, performative,
                 f" payload {shown!r}{more}" if payload else "")
        if isinstance(performative, (SaslInit, SaslOutcome)):
            # our mechanisms take one step: the client's AMQP header follows its
            # init (perhaps in the same read), ours follows the outcome
            reader.expect_header()


class FrameTracer:
    """Logs what one connection receives (`<-`) and sends (`->`)."""

    def __init__(self, name: str) -> None:
        self.incoming = _Direction(f"{name} <-")
        self.outgoing = _Direction(f"{name} ->")
