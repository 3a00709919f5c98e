"""Fairness benchmark: one connection's flood of frames must not hold the broker.

A real broker process; a *probe* client sends one presettled message every
10 ms to a queue it also consumes from and times each round trip; a *flood*
client on another connection pipelines attach+detach pairs (the same handle,
over and over, never waiting for the answers: 100,000 by default) as fast as
the socket takes them, and reads the broker's answers only to keep the
socket moving.  The probe's round trips are reported while idle and during
the flood (p50 / p99 / max).  The driver feeds a connection's input to its
engine in bounded chunks and yields in between, so the flood delays the probe
by about one chunk's worth of work, not by a whole 64 KiB read.

This is a benchmark, not a test: it prints numbers and asserts nothing about
them.  Both clients speak AMQP through the broker's own codec (raw sockets,
SASL ANONYMOUS) so that no client library's scheduling is measured.

    .venv/bin/python tests/bench/bench_fairness.py [--pairs 100000] [--idle 2]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "conformance"))
from conftest import start_broker, stop_broker

from broker.codec.messaging import Message, Source, Target
from broker.codec.performatives import (
    Attach,
    Begin,
    Detach,
    Flow,
    Open,
    Role,
    SaslInit,
    SaslOutcome,
    Transfer,
)
from broker.codec.types import Symbol
from broker.framing import (
    AMQP_HEADER,
    NEED_DATA,
    SASL_HEADER,
    Frame,
    FrameReader,
    decode_frame_body,
    encode_frame,
)

PROBE_INTERVAL = 0.010  # seconds between probe messages
PROBE_QUEUE = "/queues/fairness-probe"
WINDOW = 1 << 20  # session windows large enough never to need topping up here


def handshake(container_id: str) -> bytearray:
    """SASL ANONYMOUS, the AMQP header, open and begin on channel 0, pipelined."""
    out = bytearray(SASL_HEADER)
    encode_frame(out, 0, SaslInit(mechanism=Symbol("ANONYMOUS")), ftype=1)
    out += AMQP_HEADER
    encode_frame(out, 0, Open(container_id=container_id))
    encode_frame(out, 0, Begin(next_outgoing_id=0, incoming_window=WINDOW, outgoing_window=WINDOW))
    return out


class Reader:
    """Performatives from a socket, through the broker's own FrameReader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = FrameReader()

    def next(self) -> tuple[object, bytes]:
        while (item := self.frames.next()) is NEED_DATA:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("broker closed the connection")
            self.frames.feed(data)
        if not isinstance(item, Frame):
            return item, b""  # a protocol header
        if not item.body:
            return None, b""  # heartbeat
        performative, payload = decode_frame_body(item.body)
        if isinstance(performative, SaslOutcome):
            if performative.code != 0:
                raise RuntimeError(f"SASL failed: {performative!r}")
            self.frames.expect_header()
        return performative, payload


class Probe:
    """One connection: a consumer and a publisher on the same queue."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.reader = Reader(self.sock)
        self.sent = 0
        self.credit_limit = 0  # delivery-count + link-credit from the broker's last flow
        self.received = 0
        self.payload = Message.create(b"probe").payload
        out = handshake("fairness-probe")
        encode_frame(
            out,
            0,
            Attach(
                name="probe-in",
                handle=0,
                role=Role.RECEIVER,
                snd_settle_mode=1,
                source=Source(address=PROBE_QUEUE),
                target=Target(),
            ),
        )
        encode_frame(
            out,
            0,
            Attach(
                name="probe-out",
                handle=1,
                role=Role.SENDER,
                snd_settle_mode=1,
                source=Source(),
                target=Target(address=PROBE_QUEUE),
                initial_delivery_count=0,
            ),
        )
        out += self._credit()
        self.sock.sendall(out)
        while self.credit_limit <= self.sent:
            self._read_one()

    def _credit(self) -> bytes:
        out = bytearray()
        encode_frame(
            out,
            0,
            Flow(
                next_incoming_id=self.received,
                incoming_window=WINDOW,
                next_outgoing_id=self.sent,
                outgoing_window=WINDOW,
                handle=0,
                delivery_count=self.received,
                link_credit=1000,
            ),
        )
        return bytes(out)

    def _read_one(self) -> object:
        performative, _ = self.reader.next()
        if isinstance(performative, Flow) and performative.handle == 1:
            self.credit_limit = (performative.delivery_count or 0) + (performative.link_credit or 0)
        elif isinstance(performative, Transfer):
            self.received += 1
        elif isinstance(performative, Detach):
            raise RuntimeError(f"probe link detached: {performative!r}")
        return performative

    def round_trip(self) -> float:
        """Seconds from sending one message to receiving it back."""
        while self.credit_limit <= self.sent:
            self._read_one()
        out = bytearray()
        encode_frame(
            out,
            0,
            Transfer(
                handle=1,
                delivery_id=self.sent,
                delivery_tag=self.sent.to_bytes(8, "big"),
                message_format=0,
                settled=True,
            ),
            self.payload,
        )
        if self.received and self.received % 500 == 0:
            out += self._credit()
        expected = self.received + 1
        self.sent += 1
        start = time.perf_counter()
        self.sock.sendall(out)
        while self.received < expected:
            self._read_one()
        return time.perf_counter() - start


class Flood:
    """Another connection pipelining attach+detach pairs, reading only to discard."""

    def __init__(self, host: str, port: int, pairs: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.pairs = pairs
        out = handshake("fairness-flood")
        one = bytearray()
        for i in range(pairs):
            one.clear()
            encode_frame(
                one,
                0,
                Attach(
                    name=f"flood-{i}",
                    handle=0,
                    role=Role.SENDER,
                    source=Source(),
                    target=Target(address="/queues/flood"),
                    initial_delivery_count=0,
                ),
            )
            encode_frame(one, 0, Detach(handle=0, closed=True))
            out += one
        self.data = bytes(out)
        self.received_bytes = 0
        self.sent_at = 0.0
        self.finished_at = 0.0
        self.done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._drain, daemon=True).start()
        threading.Thread(target=self._send, daemon=True).start()

    def _send(self) -> None:
        self.sock.sendall(self.data)
        self.sent_at = time.perf_counter()

    def _drain(self) -> None:
        """Count the broker's answers until the last detach came back."""
        reader = Reader(self.sock)
        detaches = 0
        while detaches < self.pairs:
            performative, _ = reader.next()
            if isinstance(performative, Detach):
                detaches += 1
        self.finished_at = time.perf_counter()
        self.done.set()


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return f"{name:28s} no samples"
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{name:28s} n={len(ms):5d}  p50 {statistics.median(ms):7.2f} ms  "
        f"p99 {p99:7.2f} ms  max {ms[-1]:7.2f} ms"
    )


def probe_for(probe: Probe, seconds: float, stop: threading.Event | None = None) -> list[float]:
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and not (stop is not None and stop.is_set()):
        samples.append(probe.round_trip())
        time.sleep(PROBE_INTERVAL)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=100_000, help="attach+detach pairs")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle probing")
    args = parser.parse_args()
    proc, info = start_broker("--log-level", "warning")
    try:
        probe = Probe(info.host, info.port)
        idle = probe_for(probe, args.idle)
        flood = Flood(info.host, info.port, args.pairs)
        start = time.perf_counter()
        flood.start()
        during = probe_for(probe, 600.0, stop=flood.done)
        flood.done.wait()
        seconds = flood.finished_at - start
        after = probe_for(probe, 0.5)
    finally:
        stop_broker(proc)
    print(
        f"\nfairness: {args.pairs:,} attach+detach pairs pipelined on one connection "
        f"({len(flood.data) / 1e6:.1f} MB), answered in {seconds:.2f} s "
        f"({args.pairs / seconds:,.0f} pairs/s); probe every {PROBE_INTERVAL * 1000:.0f} ms"
    )
    print(summary("probe round trip, idle", idle))
    print(summary("probe round trip, flood", during))
    print(summary("probe round trip, after", after))


if __name__ == "__main__":
    main()
