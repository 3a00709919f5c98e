"""Engine benchmark: the broker's whole per-message path without sockets.

One publisher and one consumer connection on a `Container`, fed pre-built
frames: transfers in, transfers out, dispositions in, dispositions out.  This
isolates the pure-Python cost per message (what the TCP benchmark's
"broker CPU per message" is made of, minus trio and syscalls) and is stable
enough on a loaded machine to compare two versions of the code.  Each size
is measured twice, interleaved: the bytes as they come over TCP, and framed
as over a WebSocket (client frames unmasked by our reader, our output given
its frame header as socketpump.py does): what WebSocket's per-byte work adds.
Each read is copied first, as `os.read` hands it over (`as_read`).  Over
WebSocket each AMQP frame comes as a message of its own, as rhea sends them.
Instructions per message, which noise cannot move: run one path under
callgrind with two message counts and divide the difference, e.g.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python tests/bench/bench_engine.py --one ws 100 4000   # then ... 12000

and subtract the same two runs with `--build-only` (the input made, not fed).

The second figure is a stream's fan-out: `fanout` stores messages in a stream
once, then consumer connections read them all from `first` (credit 1000 at a
time, each 1000 accepted in one ranged disposition, as rhea sends them): CPU
per delivery, without sockets.  For instruction counts that machine noise
cannot move, run it under callgrind with two consumer counts and divide the
difference by the extra deliveries, e.g.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python tests/bench/bench_engine.py --fanout 20000 1   # then ... 20000 3
"""

from __future__ import annotations

import os
import statistics
import struct
import sys
import time
from typing import Any

from broker.codec.messaging import Accepted, Message, Source, Target
from broker.codec.performatives import Attach, Begin, Disposition, Flow, Open, Role
from broker.codec.types import Described, Symbol
from broker.config import Config
from broker.container import Container
from broker.framing import AMQP_HEADER, encode_frame, encode_transfer_frame
from broker.transports.pump import RECEIVE_SIZE
from broker.transports.socketpump import WRITEV_FROM
from broker.transports.wsframes import OP_BINARY, WsFrameReader, frame_head, unmask

BATCH = 200
WINDOW = 0x7FFFFFFF


def frames(*performatives: object) -> bytes:
    out = bytearray()
    for p in performatives:
        encode_frame(out, 0, p)
    return bytes(out)


def masked(data: bytes) -> bytes:
    """`data` as one masked binary WebSocket message from a client."""
    mask = os.urandom(4)
    n = len(data)
    size = (bytes((0x80 | n,)) if n < 126 else b"\xfe" + struct.pack(">H", n) if n < 65536
            else b"\xff" + struct.pack(">Q", n))
    return b"\x82" + size + mask + unmask(data, mask, 0)


def run(n: int, size: int, ws: bool = False, build_only: bool = False) -> float:
    """CPU us per message; `ws`: the bytes in and out framed as the WebSocket
    pump frames them (client frames unmasked, ours given a header), still
    without sockets: what WebSocket costs on top of the engine."""
    container = Container(Config(port=0, ws_port=0), clock=time.monotonic)
    pub = container.connection_made("pub", "tcp", lambda: None)
    sub = container.connection_made("sub", "tcp", lambda: None)
    pub.receive_data(AMQP_HEADER + frames(
        Open(container_id="pub"),
        Begin(next_outgoing_id=0, incoming_window=WINDOW, outgoing_window=WINDOW),
        Attach(name="p", handle=0, role=Role.SENDER, target=Target(address="/queues/b"),
               source=Source(), initial_delivery_count=0)))
    sub.receive_data(AMQP_HEADER + frames(
        Open(container_id="sub"),
        Begin(next_outgoing_id=0, incoming_window=WINDOW, outgoing_window=WINDOW),
        Attach(name="c", handle=0, role=Role.RECEIVER, source=Source(address="/queues/b"),
               target=Target()),
        Flow(next_incoming_id=0, incoming_window=WINDOW, next_outgoing_id=0,
             outgoing_window=WINDOW, handle=0, delivery_count=0, link_credit=1000)))
    pub.data_to_send()
    sub.data_to_send()
    payload = Message.create(b"x" * size).payload
    # Over WebSocket each AMQP frame is a message of its own, as rhea (Node and
    # browser) sends them: one `socket.write`, so one WebSocket frame, per frame.
    wrap = masked if ws else bytes
    batches = []
    for start in range(0, n, BATCH):
        transfers = bytearray()
        for i in range(start, min(n, start + BATCH)):
            out = bytearray()
            encode_transfer_frame(out, 0, 0, i, i.to_bytes(4, "big"), 0, False, False, payload)
            transfers += wrap(bytes(out))
        acks = wrap(frames(
            Disposition(role=Role.RECEIVER, first=start, last=min(n, start + BATCH) - 1,
                        settled=True, state=Accepted()))) + wrap(frames(
            Flow(next_incoming_id=min(n, start + BATCH), incoming_window=WINDOW,
                 next_outgoing_id=0, outgoing_window=WINDOW, handle=0,
                 delivery_count=min(n, start + BATCH), link_credit=1000)))
        # in reads of at most what the pump reads at once
        batches.append(([bytes(transfers[i:i + RECEIVE_SIZE])
                         for i in range(0, len(transfers), RECEIVE_SIZE)], acks))
    if build_only:  # the input alone: what callgrind's count holds besides the path
        return 0.0
    if ws:
        pub_in, sub_in = WsFrameReader(), WsFrameReader()
        t0 = time.process_time()
        for reads, acks in batches:
            for read in reads:
                read = as_read(read)
                pub.receive_data(b"".join(pub_in.feed(read)))  # type: ignore[arg-type]
                ws_out(sub.data_to_send())
            sub.receive_data(b"".join(sub_in.feed(acks)))  # type: ignore[arg-type]
            ws_out(pub.data_to_send())
    else:
        t0 = time.process_time()
        for reads, acks in batches:
            for read in reads:
                pub.receive_data(as_read(read))
                sub.data_to_send()
            sub.receive_data(acks)
            pub.data_to_send()
    elapsed = time.process_time() - t0
    assert container.registry.get("b").depth == 0  # everything was delivered
    return elapsed / n * 1e6


def as_read(data: bytes) -> bytes:
    """`data` as a socket read hands it over: a fresh copy, just written, so
    warm in the cache.  The pre-built input is not (at 64 KiB, 2000 messages
    are 128 MB): without this copy its first touch is a read from memory that
    lands on whatever reads first, the unmask over WebSocket (measured: 19 us
    per 64 KiB in the run, 1.3 us warm), the frame reader over TCP; no
    socket read costs that.  Both transports pay for the copy, as both pay for
    `os.read`'s."""
    return memoryview(data).tobytes()


def ws_out(data: bytes | bytearray) -> bytes | bytearray:
    """What socketpump.SocketPump makes of the handle's output over a WebSocket."""
    head = frame_head(OP_BINARY, len(data))
    return head + data if len(data) < WRITEV_FROM else head  # big: written beside it


def _opened(container: Container, name: str, attach: Attach) -> Any:
    handle = container.connection_made(name, "tcp", lambda: None)
    handle.receive_data(AMQP_HEADER + frames(
        Open(container_id=name),
        Begin(next_outgoing_id=0, incoming_window=WINDOW, outgoing_window=WINDOW), attach))
    handle.data_to_send()
    return handle


def fanout(n: int, consumers: int, credit: int = 1000) -> float:
    """CPU us per delivery: `consumers` connections each read a stream of `n`
    100-byte messages from `first`."""
    container = Container(Config(port=0, ws_port=0), clock=time.monotonic)
    container.admin.declare_queue("s", arguments={"x-queue-type": "stream"})
    pub = _opened(container, "pub", Attach(
        name="p", handle=0, role=Role.SENDER, target=Target(address="/queues/s"),
        source=Source(), initial_delivery_count=0))
    payload = Message.create(b"x" * 100).payload
    for start in range(0, n, BATCH):
        out = bytearray()
        for i in range(start, min(n, start + BATCH)):
            encode_transfer_frame(out, 0, 0, i, i.to_bytes(4, "big"), 0, True, False, payload)
        pub.receive_data(bytes(out))
        pub.data_to_send()
    first = {Symbol("rabbitmq:stream-offset-spec"):
             Described(Symbol("rabbitmq:stream-offset-spec"), "first")}
    subs = [_opened(container, f"sub{k}", Attach(
        name="c", handle=0, role=Role.RECEIVER, source=Source(address="/queues/s", filter=first),
        target=Target())) for k in range(consumers)]
    t0 = time.process_time()
    for start in range(0, n, credit):
        for sub in subs:
            sub.receive_data(frames(Flow(
                next_incoming_id=start, incoming_window=WINDOW, next_outgoing_id=0,
                outgoing_window=WINDOW, handle=0, delivery_count=start, link_credit=credit)))
            sub.data_to_send()
            sub.receive_data(frames(Disposition(
                role=Role.RECEIVER, first=start, last=min(n, start + credit) - 1, settled=True,
                state=Accepted())))
            sub.data_to_send()
    elapsed = time.process_time() - t0
    return elapsed / (n * consumers) * 1e6


def main() -> None:
    if sys.argv[1:2] == ["--fanout"]:  # one run, for callgrind (see the docstring)
        fanout(int(sys.argv[2]), int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--one"]:  # for callgrind: --one tcp|ws SIZE N [--build-only]
        run(int(sys.argv[4]), int(sys.argv[3]), sys.argv[2] == "ws", "--build-only" in sys.argv)
        return
    for size in (100, 4096, 65536):
        n = 20000 if size < 65536 else 2000
        samples: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(5):
            for ws in (False, True):  # interleaved, so that drift hits both alike
                samples[ws].append(run(n, size, ws))
        medians = {ws: statistics.median(samples[ws]) for ws in samples}
        print(f"engine path, {size:5d}-byte messages: {medians[False]:6.2f} us CPU/msg over TCP, "
              f"{medians[True]:6.2f} with WebSocket framing ({medians[True] / medians[False]:.2f}x) "
              f"(medians of 5 runs x {n}; transfer in -> queue -> transfer out -> settle)")
    for consumers in (1, 10):
        samples = [fanout(20000, consumers) for _ in range(3)]
        print(f"stream fan-out, {consumers:2d} consumer(s): {statistics.median(samples):6.2f} us "
              f"CPU/delivery (median of 3 runs; 20000 stored 100-byte messages read from first)")


if __name__ == "__main__":
    main()
