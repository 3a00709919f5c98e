"""WebSocket's own cost per message beside a plain stream, without sockets.

`WebSocketStream` (the broker's reader and writer of RFC 6455 frames) over a
stream that hands back the same masked frame for every read and drops what
is sent, against that plain stream itself: one read and one send per
message, the worst case (one AMQP frame per WebSocket message each way).
Under `valgrind --tool=callgrind` the difference in instructions between two
message counts is WebSocket's cost per message, which machine noise cannot
move:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python tests/bench/bench_ws_overhead.py ws 100 1000   # then 3000

Without valgrind it prints microseconds per message (noisy on a busy machine).
"""

from __future__ import annotations

import os
import sys
import time

import trio

from broker.transports.websocket import WebSocketStream


def ws_frame(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0x80 | 127)) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Repeating(trio.abc.Stream):
    """Every read returns `data`; sends go nowhere."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return self.data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        pass

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def pump(stream: trio.abc.Stream, n: int) -> None:
    for _ in range(n):
        await stream.send_all(await stream.receive_some())


def main() -> None:
    mode, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    payload = os.urandom(size + 30)  # a transfer frame of about that size
    stream: trio.abc.Stream = (WebSocketStream(Repeating(ws_frame(payload, os.urandom(4))))
                               if mode == "ws" else Repeating(payload))
    started = time.perf_counter()
    trio.run(pump, stream, n)
    print(f"{mode} {size} B: {(time.perf_counter() - started) / n * 1e6:.2f} us/message")


if __name__ == "__main__":
    main()
