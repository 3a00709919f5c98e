"""What one heartbeat costs the broker, with many connections open.

Idle connections cost the broker CPU only through their heartbeats: with
10,000 of them, rhea's every 15 s and ours every 30 s make about 1,000
heartbeat events a second (bench_scale.py's connections curve).  That curve
measures them at their natural rate, a few dozen per sampling tick of the
broker's CPU clock, so its figure moves with whichever bursts a window
catches.  Here the client sends the heartbeats itself, one at a time at a
steady rate, over raw sockets: each one is a separate wake-up of the broker
(as an idle connection's is), and there are enough of them for the broker's
CPU time to be measured per heartbeat.

Per run: open --connections connections (AMQP header without SASL, open
with idle-time-out 60 s, begin, attach a receiver), wait until the broker
has answered them all, then measure the broker's CPU (utime+stime) over
--seconds with no traffic and over --seconds of heartbeats at --rate a
second, spread over the connections in turn.  Printed: broker CPU per
heartbeat (the difference of the two, per heartbeat sent) and the idle
CPU; medians of --runs.  TCP, and WebSocket (masked client frames, as a
browser sends them) with --transport ws or both.  Over TCP the broker lets
the kernel hold back a lone heartbeat after a bare one (socketpump.py), so
only every other heartbeat a connection sends wakes it: TCP's figure is per
heartbeat sent, not per wake-up.

    .venv/bin/python tests/bench/bench_heartbeats.py --connections 2000 --runs 3

A benchmark: it prints numbers and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "conformance"))
sys.path.insert(0, str(HERE))

from conftest import start_broker, stop_broker
from procstat import cpu_seconds

from broker.codec.messaging import Source
from broker.codec.performatives import Attach, Begin, Open, Role
from broker.framing import AMQP_HEADER, encode_frame

HEARTBEAT = b"\x00\x00\x00\x08\x02\x00\x00\x00"


def handshake_bytes(index: int) -> bytes:
    out = bytearray(AMQP_HEADER)
    encode_frame(out, 0, Open(container_id=f"hb-{index}", idle_time_out=60000))
    encode_frame(out, 0, Begin(next_outgoing_id=0, incoming_window=2048,
                               outgoing_window=2048))
    encode_frame(out, 0, Attach(name=f"hb-{index}", handle=0, role=Role.RECEIVER,
                                source=Source(address=f"/queues/hb{index % 10}")))
    return bytes(out)


def ws_frame(payload: bytes) -> bytes:
    """One masked binary frame (a client's), payload under 64 KiB."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0xFE]) + n.to_bytes(2, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def connect(host: str, port: int, ws: bool) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    if ws:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: amqp\r\n\r\n")
                     .encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("the broker closed the upgrade")
            answer += chunk
        if b" 101 " not in answer.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"upgrade refused: {answer[:80]!r}")
    return sock


def read_some(sock: socket.socket, wanted: int) -> int:
    """Read what is there (at least `wanted` bytes in all, waiting for them)."""
    got = 0
    sock.setblocking(True)
    sock.settimeout(30)
    while got < wanted:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the broker closed a connection")
        got += len(chunk)
    sock.setblocking(False)
    return got


def one_run(host: str, port: int, ws_port: int, transport: str, connections: int,
            seconds: float, rate: float, pid: int) -> tuple[float, float]:
    ws = transport == "ws"
    socks = []
    for i in range(connections):
        sock = connect(host, ws_port if ws else port, ws)
        hello = handshake_bytes(i)
        sock.sendall(ws_frame(hello) if ws else hello)
        socks.append(sock)
    for sock in socks:  # header + open + begin + attach (+ flow): well over 100 bytes each
        read_some(sock, 100)
    time.sleep(11)  # past every connection's handshake deadline (10 s)
    beat = ws_frame(HEARTBEAT) if ws else HEARTBEAT
    try:
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        time.sleep(seconds)
        idle_s = cpu_seconds(pid) - cpu0
        idle_wall = time.perf_counter() - t0
        count = int(seconds * rate)
        gap = 1.0 / rate
        cpu1 = cpu_seconds(pid)
        start = time.perf_counter()
        for n in range(count):
            socks[n % connections].send(beat)
            pause = start + (n + 1) * gap - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        time.sleep(0.2)  # the last ones handled
        busy_wall = time.perf_counter() - start
        busy_s = cpu_seconds(pid) - cpu1
        idle_rate = idle_s / idle_wall
        per_beat_us = (busy_s - idle_rate * busy_wall) / count * 1e6
        return per_beat_us, idle_rate * 100
    finally:
        for sock in socks:
            sock.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=2000.0, help="heartbeats a second")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--transport", choices=("tcp", "ws", "both"), default="both")
    a = p.parse_args()
    transports = ("tcp", "ws") if a.transport == "both" else (a.transport,)
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in transports}
    for run in range(a.runs):
        for transport in transports:
            proc, info = start_broker("--log-level", "warning")
            try:
                results[transport].append(one_run(
                    info.host, info.port, info.ws_port, transport, a.connections, a.seconds,
                    a.rate, info.pid))
            finally:
                stop_broker(proc)
            beat, idle = results[transport][-1]
            print(f"run {run + 1}/{a.runs} {transport}: {beat:.1f} us per heartbeat, "
                  f"idle {idle:.2f} % core", file=sys.stderr, flush=True)
    print(f"\nheartbeats: {a.connections:,} connections, {a.rate:,.0f} heartbeats/s for "
          f"{a.seconds:g} s; broker CPU (utime+stime), median of {a.runs}")
    print(f"command: {' '.join(sys.argv)}")
    for transport, runs in results.items():
        beat = statistics.median(r[0] for r in runs)
        idle = statistics.median(r[1] for r in runs)
        print(f"  {transport:3}  {beat:6.1f} us CPU per heartbeat   idle {idle:5.2f} % core "
              f"(runs: {', '.join(f'{r[0]:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
