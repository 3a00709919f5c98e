"""Gateway benchmark (`make bench-gateway`, part of `make bench`): rhea over
WebSocket through `amqpws-broker gateway` to an upstream broker, beside rhea
over TCP straight to that broker and rhea over WebSocket through a plain
WS→TCP relay (ws_relay.js), in one run.

The upstream is the RabbitMQ 4 of ../shared/rabbitmq4 when it answers on
127.0.0.1:45672 (`BENCH_UPSTREAM=amqp://...` and `BENCH_UPSTREAM_PID` name
another), else this project's own broker.  For each path: msg/s, and the CPU
per message of each process on the path (the gateway's, the relay's, the
upstream's; utime+stime from /proc), medians of several runs; then 10,000
idle WebSocket clients (a session and a receiver each) through the gateway:
its RSS per client, and how many connections the upstream holds for them.
A benchmark: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "conformance"))
from bench_broker import cpu_seconds, node, rss_kib
from conftest import start_broker, stop_broker

RMQ4 = ROOT.parent / "shared" / "rabbitmq4" / "rabbitmq4.sh"
RMQ4_URL = "amqp://guest:guest@127.0.0.1:45672"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Upstream:
    """The broker behind the gateway: RabbitMQ 4 if it is up, else ours."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        url = os.environ.get("BENCH_UPSTREAM")
        if url:
            self.url, self.pid, self.name = url, int(os.environ["BENCH_UPSTREAM_PID"]), url
        elif RMQ4.exists() and answers("127.0.0.1", 45672):
            pid = subprocess.run([str(RMQ4), "pid"], capture_output=True, text=True,
                                 check=True).stdout.strip()
            self.url, self.pid, self.name = RMQ4_URL, int(pid), "RabbitMQ 4 (rabbitmq4.sh)"
            # RabbitMQ allows 64 sessions per connection by default; a gateway
            # carries one session per client, so its operators raise the limit
            setting = "application:set_env(rabbit, session_max_per_connection, 65535)."
            subprocess.run([str(RMQ4), "ctl", "eval", setting], capture_output=True, check=False)
        else:
            self.proc, info = start_broker("--log-level", "warning")
            self.url, self.pid = f"amqp://guest:guest@127.0.0.1:{info.port}", info.pid
            self.name = "amqpws-broker serve (no RabbitMQ 4 running)"
        rest = self.url.split("@", 1)[-1]
        self.host, port = rest.split(":")[0], rest.split(":")[1].split("/")[0]
        self.port = int(port)

    @property
    def is_rabbitmq(self) -> bool:
        return self.proc is None

    def declare(self, queue: str) -> None:
        subprocess.run([sys.executable, "-m", "broker", "declare", "queue", queue,
                        "--url", f"amqp://127.0.0.1:{self.port}", "--user", "guest",
                        "--password", "guest"], check=True, capture_output=True, cwd=ROOT)

    def connections(self) -> int | None:
        if not self.is_rabbitmq or not RMQ4.exists():
            return None
        out = subprocess.run([str(RMQ4), "ctl", "list_connections", "name", "--silent"],
                             capture_output=True, text=True, check=False).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def close(self) -> None:
        if self.proc is not None:
            stop_broker(self.proc)


def start_gateway(upstream: Upstream, *extra: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="amqpws-gw-"))
    ready = workdir / "ready.json"
    log = open(workdir / "gateway.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "broker", "gateway", "--upstream", upstream.url,
                             "--port", "0", "--ws-port", "0", "--ready-file", str(ready),
                             "--log-level", "warning", *extra],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 15
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((workdir / "gateway.log").read_text()[-2000:])
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    ws_port = info["ws_port"]
    for _ in range(200):  # ready once an upstream connection is open
        try:
            with socket.create_connection(("127.0.0.1", ws_port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(200):
                    break
        except OSError:
            pass
        time.sleep(0.05)
    return proc, info


def start_relay(upstream: Upstream) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(["node", str(HERE / "ws_relay.js"), upstream.host, str(upstream.port)],
                            stdout=subprocess.PIPE, text=True, cwd=HERE)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=20000, help="messages per run")
    parser.add_argument("--clients", type=int, default=10000, help="idle WebSocket clients")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--only", default="", help="path,throughput,idle")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    if not only or "path" in only:
        in_memory_path(args.runs, args.count, args.size)
        if only == {"path"}:
            return
    upstream = Upstream()
    gateway, gw = start_gateway(upstream)
    relay, relay_port = start_relay(upstream)
    paths: dict[str, dict[str, Any]] = {
        "direct tcp": {"transport": "tcp", "host": upstream.host, "port": upstream.port,
                       "username": "guest", "password": "guest"},
        "gateway ws": {"transport": "ws", "ws_url": gw["ws_url"]},
        "gateway tcp": {"transport": "tcp", "host": "127.0.0.1", "port": gw["port"]},
        "relay ws": {"transport": "ws", "ws_url": f"ws://127.0.0.1:{relay_port}/",
                     "username": "guest", "password": "guest"},
    }
    watched = {"gateway": gateway.pid, "relay": relay.pid, "upstream": upstream.pid}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    seq = 0
    try:
        if not only or "throughput" in only:
            for _ in range(args.runs):
                for name, target in paths.items():  # interleaved: drift hits every path alike
                    seq += 1
                    prefix = f"gwbench{os.getpid()}-{seq}"
                    upstream.declare(f"{prefix}-0")
                    before = {k: cpu_seconds(p) for k, p in watched.items()}
                    r = node({"mode": "throughput", **target, "pairs": 1, "count": args.count,
                              "size": args.size, "presettled": False, "prefix": prefix})
                    row = {"msgs_per_s": r["messages"] / r["seconds"]}
                    for k, p in watched.items():
                        row[f"{k}_us"] = (cpu_seconds(p) - before[k]) / r["messages"] * 1e6
                    results[name].append(row)
            print(f"\ngateway benchmark: upstream {upstream.name}; 1 producer -> 1 consumer, "
                  f"{args.size} B, at-least-once, {args.count} messages; median of {args.runs} "
                  f"runs; CPU per message of each process")
            med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                   for name, rows in results.items()}
            for name, m in med.items():
                own = {"gateway ws": "gateway", "gateway tcp": "gateway",
                       "relay ws": "relay"}.get(name)
                extra = f"  {own} {m[own + '_us']:6.1f} us/msg" if own else ""
                print(f"  {name:12s} {m['msgs_per_s']:9,.0f} msg/s  upstream "
                      f"{m['upstream_us']:6.1f} us/msg{extra}")
            d, g, rl = med["direct tcp"], med["gateway ws"], med["relay ws"]
            print(f"  gateway ws / direct tcp: {g['msgs_per_s'] / d['msgs_per_s']:.2f}x msg/s; "
                  f"gateway ws / relay ws: {g['msgs_per_s'] / rl['msgs_per_s']:.2f}x msg/s, "
                  f"{g['gateway_us'] / rl['relay_us']:.2f}x the relay's CPU per message")
            print("  per run: " + json.dumps(results))
        if not only or "idle" in only:
            idle(upstream, gateway.pid, gw, args.clients)
    finally:
        relay.kill()
        gateway.terminate()
        gateway.wait(timeout=15)
        upstream.close()


def in_memory_path(runs: int, count: int, size: int) -> None:
    """The gateway's own work per message without sockets: an application
    engine publishing and consuming through the gateway, this broker as the
    upstream (tests/gateway/test_routes.py's Net), timing only the gateway's
    two connections.  Stable enough for before/after; under
    `valgrind --tool=callgrind` the instruction counts are exact."""
    sys.path.insert(0, str(ROOT / "tests"))
    from gateway.test_routes import Net, body

    from broker.codec.messaging import Accepted
    from broker.engine.events import MessageReceived

    results = []
    for _ in range(runs):
        net = Net()
        session = net.session()
        sender = net.sender(session, "/queues/q")
        receiver = net.receiver(session, "/queues/q")
        receiver.flow(count + 1000)
        net.pump()
        net.events()
        spent = [0.0]
        timed(net.edge, spent)
        timed(net.up, spent)
        payload = body("x" * max(0, size - 10))
        sent = 0
        while sent < count:  # batches of 100, as a busy client's reads carry them
            for _ in range(min(100, count - sent, sender.link_credit)):
                sender.send(payload, settled=False)
                sent += 1
            net.pump()
            for event in net.events():
                if isinstance(event, MessageReceived):
                    receiver.settle(event.delivery, Accepted())
            net.pump()
        results.append(spent[0] / count * 1e6)
    print(f"\ngateway path in memory ({size} B, at-least-once, {count} messages, median of "
          f"{runs}): {statistics.median(results):.1f} us of gateway work per message "
          f"(in and out both ways, dispositions included)")


def timed(handle: Any, spent: list[float]) -> None:
    """Add the time `handle` spends in the driver's calls to `spent[0]`."""
    receive, drain = handle.receive_data, handle.data_to_send

    def receive_data(data: bytes) -> bool:
        t = time.perf_counter()
        quiet = receive(data)  # (a bare heartbeat: the pump skips its tick and write)
        spent[0] += time.perf_counter() - t
        return quiet

    def data_to_send() -> bytes | bytearray:
        t = time.perf_counter()
        out = drain()
        spent[0] += time.perf_counter() - t
        return out

    handle.receive_data, handle.data_to_send = receive_data, data_to_send


def idle(upstream: Upstream, pid: int, gw: dict[str, Any], count: int) -> None:
    """`count` WebSocket clients, a session and a receiver each, through the gateway."""
    queue = f"gwidle{os.getpid()}"
    upstream.declare(queue)
    base_conns = upstream.connections()
    before = rss_kib(pid)
    opts = {"mode": "idle", "transport": "ws", "ws_url": gw["ws_url"], "connections": count,
            "prefix": queue}
    proc = subprocess.Popen(["node", str(HERE / "load.js"), json.dumps(opts)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("idle load generator failed")
    opened = json.loads(line)
    time.sleep(1.0)
    after = rss_kib(pid)
    conns = upstream.connections()
    with socket.create_connection(("127.0.0.1", gw["ws_port"])) as s:
        s.sendall(b"GET /api/gateway HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    view = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    proc.stdin.write("x\n")
    proc.stdin.flush()
    proc.wait(timeout=60)
    print(f"\n{count:,} idle WebSocket clients through the gateway (a session and a receiver "
          f"each): opened in {opened['seconds']:.1f} s; gateway RSS "
          f"{before / 1024:.0f} -> {after / 1024:.0f} MiB, {(after - before) / count:.1f} KiB per "
          f"client; {len(view['upstream_connections'])} upstream connections carrying "
          f"{sum(u['sessions'] for u in view['upstream_connections']):,} sessions"
          + (f"; RabbitMQ lists {conns} connections in all (before the clients: {base_conns})"
             if conns is not None else ""))


if __name__ == "__main__":
    main()
