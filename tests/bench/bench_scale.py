"""Scale benchmark (`make bench-scale`): how the broker's costs grow with load.

A real broker process (conformance/conftest.py's start_broker) driven by rhea in
Node (tests/bench/scale.js and load.js), one run measuring six cost curves:

  queues       1, 10, 100, 1000 queues, each with its own producer and consumer
               link, the links spread over 4 producer and 4 consumer connections
               (at most 200 links a session); 100-byte at-least-once messages,
               --messages (40,000) in all per point: total msg/s, broker CPU us/msg.
  backlog      N 100-byte messages published into a queue with no consumer, for N
               = 10^4 .. --backlog in decades: broker RSS per queued message and
               publish msg/s, then one consumer drains them all: msg/s and CPU/msg.
               A fresh broker for every run, warmed up first.
  connections  1000 and 5000 idle connections (TCP and WebSocket), each with a
               session and a receiver (load.js's idle mode, rhea idle_time_out
               60000: rhea sends a heartbeat every 15 s, half the 30 s the broker
               asks for, the broker one every 30 s): seconds to open them all,
               broker CPU per connection opened, RSS per connection, and broker
               CPU in % of one core over --idle-seconds (30) of idling, from
               10.5 s after the last connection opened (past every handshake
               deadline).  30 s is one whole cycle of both heartbeat rhythms:
               connections opened within a few seconds beat in step, so a
               window of 10 s saw anything from 0.1 to 10 % at 10,000.
               Heartbeats that come together share a wake-up of the broker,
               so --open-spread 15 (the connections opened evenly over
               rhea's 15 s rhythm, as clients arriving at random times)
               gives the dearer figure.  A fresh broker for every run.
  fanout       one stream (`--stream`) read from `first` by 1, 10 and 100
               consumers (one connection each), --deliveries (200,000) a point:
               deliveries/s and broker CPU us per delivery.
  size         100 B, 1 KiB, 16 KiB, 256 KiB and 1 MiB at-least-once messages,
               one producer -> one queue -> one consumer, TCP and WebSocket,
               about --size-bytes of payload a point (20 to 20,000 messages):
               MB/s (10^6 bytes) and broker CPU us per KiB.
  latency      100-byte messages at 1000 msg/s, TCP and WebSocket (load.js's
               latency mode, --latency-count messages): p50 and p99 in ms.

Every point records the figure above with broker CPU per message (or delivery),
msg/s and broker RSS.  CPU is the broker process's own utime+stime from
/proc/PID/stat: over the measuring window (from all links attached to the last
message received and accepted, as scale.js reports it) where a window exists,
else over the whole load-generator run.  Each point is the median of --runs runs
(default 3); the connection points default to 1 run (--conn-runs) and backlog
points of 10^6 messages or more to 1 run, since each takes minutes.  Every curve
but fan-out (one broker, the stream published once) and size/latency (one broker
each) starts a fresh broker per point.

Output: a table on stdout (progress goes to stderr), one JSON line per point in
--out (default tests/bench/results/scale.jsonl), and a PNG with one panel per
curve in --png (default tests/bench/results/scale.png; skipped with a message
when matplotlib is missing: `pip install '.[bench]'`).  `--plot FILE.jsonl`
redraws the PNG from an earlier run without measuring.

Every option can also be set by an environment variable BENCH_SCALE_<OPTION>
(upper case, dashes as underscores); the flag wins.  Bigger runs:

  BENCH_SCALE_BACKLOG=1000000     backlog points up to 10^6 (--backlog)
  BENCH_SCALE_BIG=1               10^6 backlog and 10000 connections (--big)
  BENCH_SCALE_CONNECTIONS=1000,5000,10000   (--connections; --big adds 10000)
  BENCH_SCALE_QUEUES=1,10,100,1000,5000     (--queues)
  BENCH_SCALE_FANOUT=1,10,100,500           (--fanout)
  BENCH_SCALE_MESSAGES, _DELIVERIES, _SIZE_BYTES, _LATENCY_COUNT   (work per point)
  BENCH_SCALE_RUNS, _CONN_RUNS, _IDLE_SECONDS, _ONLY (e.g. queues,size), _OUT, _PNG

RabbitMQ 3.10 beside ours: --rabbitmq310 (BENCH_SCALE_RABBITMQ310=1; off by default)
starts a node of the benchmark's own (tests/bench/rabbitmq310.py: Debian's
rabbitmq-server through conformance/rabbitmq310.sh, apt as root) and measures the
same load on it, TCP only (3.10 has no WebSocket in open source), point by point
after ours: queues, backlog, connections, size and latency; its CPU and RSS are its
beam.smp process's, and it is restarted with its data wiped wherever ours gets a
fresh broker.  Fan-out gets none: 3.10 delivers nothing from streams over AMQP 1.0
(n/a).  The table then has, beside each of our figures, 3.10's and the ratio
ours/3.10; the JSON lines carry `broker` ("amqpws" or "rabbitmq310"); the PNG draws
3.10 as a second series (green triangles) on the same panels.  The node is stopped
at the end.  When rabbitmq-server can't be installed or started, a line says so
and the rest runs.

The defaults take about 5 minutes on 2 cores (shared with other work).  A benchmark,
not a test: it prints numbers and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
from conftest import start_broker, stop_broker

sys.path.insert(0, str(HERE))
import rabbitmq310
from procstat import CLK_TCK, cpu_seconds, rss_kib

RESULTS = HERE / "results"
CURVES = ("queues", "backlog", "connections", "fanout", "size", "latency")
SIZES = (100, 1024, 16384, 262144, 1048576)
Point = dict[str, Any]
BROKERS = {"amqpws": "amqpws-broker", "rabbitmq310": rabbitmq310.LABEL}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Broker:
    kind = "amqpws"
    address_prefix = "/queues/"

    def __init__(self, *args: str) -> None:
        self.proc, self.info = start_broker("--log-level", "warning", *args)
        self.pid = self.info.pid
        self.seq = 0

    def target(self, transport: str = "tcp") -> dict[str, object]:
        return {"transport": transport, "host": self.info.host, "port": self.info.port,
                "ws_url": self.info.ws_url}

    def name(self, stem: str) -> str:
        self.seq += 1
        return f"{stem}{self.seq}"

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)


class Rabbit(Broker):
    """RabbitMQ 3.10's node (tests/bench/rabbitmq310.py) as the curves see a broker."""

    kind = "rabbitmq310"
    address_prefix = rabbitmq310.RabbitMQ310.address_prefix

    def __init__(self, node: rabbitmq310.RabbitMQ310) -> None:  # no process of ours to start
        self.node = node
        self.pid = node.pid
        self.seq = 0

    def target(self, transport: str = "tcp") -> dict[str, object]:
        return self.node.target(transport)


@contextmanager
def broker(*args: str) -> Iterator[Broker]:
    b = Broker(*args)
    try:
        yield b
    finally:
        stop_broker(b.proc)


@contextmanager
def rabbit(node: rabbitmq310.RabbitMQ310) -> Iterator[Broker]:
    """The 3.10 node as just started (restarted, its data wiped, if it has had traffic);
    it stays up afterwards, for the next point or main()'s stop."""
    yield Rabbit(node.fresh())


def node(script: str, opts: dict[str, object], timeout: float) -> dict[str, Any]:
    out = subprocess.run(["node", str(HERE / script), json.dumps(opts)], capture_output=True,
                         text=True, timeout=timeout, cwd=HERE, check=False)
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    if out.returncode != 0 or not result or result.get("stalled") or result.get("error"):
        raise RuntimeError(f"{script} {opts.get('mode')} failed (exit {out.returncode}): "
                           f"{out.stdout.strip()[-500:]} {out.stderr.strip()[-1500:]}")
    return result


def windowed(b: Broker, opts: dict[str, object], timeout: float = 900) -> dict[str, Any]:
    """A scale.js run: seconds and broker CPU over its measuring window, and over it all."""
    cpu0 = b.cpu()
    r = node("scale.js", {**opts, "cpu_pid": b.pid, "stall_s": 60}, timeout)
    r["cpu_s"] = r["cpu_ticks"] / CLK_TCK
    r["cpu_all_s"] = b.cpu() - cpu0  # with connecting and attaching
    r["rss_kib"] = b.rss()
    return r


def warm_up(b: Broker, transport: str = "tcp") -> None:
    """Some traffic first, so that one-off costs (imports, caches) are not in a measurement."""
    windowed(b, {"mode": "queues", **b.target(transport), "queues": 2, "count": 200,
                 "size": 100, "prefix": b.name("warm")})


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


Servers = Callable[..., Any]  # (*broker args) -> a context manager yielding a Broker


class Session:
    """Collects the points, appends each to the JSON-lines file as soon as it is measured."""

    def __init__(self, args: argparse.Namespace,
                 node310: rabbitmq310.RabbitMQ310 | None = None) -> None:
        self.args = args
        self.node310 = node310
        self.points: list[Point] = []
        self.out = Path(args.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("")
        self.started = datetime.now(UTC).isoformat(timespec="seconds")

    def servers(self, *transports: str) -> list[tuple[str, str, Servers]]:
        """(broker kind, transport, server factory) for each point to measure: ours on
        every transport, then RabbitMQ 3.10 (when it runs) on TCP, its only one."""
        out: list[tuple[str, str, Servers]] = [("amqpws", t, broker) for t in transports]
        node310 = self.node310
        if node310 is not None and "tcp" in transports:
            out.append(("rabbitmq310", "tcp", lambda *_: rabbit(node310)))
        return out

    def point(self, curve: str, x: float, transport: str, runs: int,
              measure: Callable[[], dict[str, Any]], *, kind: str = "amqpws",
              **extra: Any) -> Point:
        label = f"{curve} {fmt_size(x) if curve == 'size' else f'{x:,g}'} {transport}"
        if kind != "amqpws":
            label += f" ({BROKERS[kind]})"
        results = []
        p: Point = {"curve": curve, "x": x, "transport": transport, "broker": kind,
                    "runs": runs, **extra}
        try:
            for i in range(runs):
                log(f"{label}: run {i + 1}/{runs}")
                results.append(measure())
            p.update(median_of(results))
            p["per_run"] = results
        except Exception as e:  # noqa: BLE001 - a failed point is reported, the others go on
            log(f"{label}: FAILED: {e}")
            p["error"] = str(e)[:2000]
        p["bench_started"] = self.started
        self.points.append(p)
        with self.out.open("a") as f:
            f.write(json.dumps(p) + "\n")
        return p


# -- the curves -------------------------------------------------------------------------

def curve_queues(s: Session) -> None:
    a = s.args
    for q in a.queues:
        per_queue = max(1, a.messages // q)
        for kind, _, server in s.servers("tcp"):
            with server() as b:
                warm_up(b)
                prefix = b.name("q")  # the same queues in every run of the point

                def run(q: int = q, per_queue: int = per_queue, b: Broker = b,
                        prefix: str = prefix) -> dict[str, Any]:
                    r = windowed(b, {"mode": "queues", **b.target(), "queues": q,
                                     "count": per_queue, "size": 100, "connections": 4,
                                     "links_per_session": 200, "credit": 200,
                                     "prefix": prefix})
                    n = r["messages"]
                    return {"messages": n, "seconds": r["seconds"],
                            "msgs_per_s": n / r["seconds"],
                            "cpu_us_per_msg": r["cpu_s"] / n * 1e6,
                            "setup_cpu_ms": (r["cpu_all_s"] - r["cpu_s"]) * 1e3,
                            "rss_kib": r["rss_kib"]}

                s.point("queues", q, "tcp", a.runs, run, kind=kind, size=100, connections=8,
                        messages_per_queue=per_queue)


def curve_backlog(s: Session) -> None:
    a = s.args
    n = 10_000
    counts = []
    while n <= a.backlog:
        counts.append(n)
        n *= 10
    if not counts or counts[-1] != a.backlog:
        counts.append(a.backlog)
    for n in counts:
        for kind, _, server in s.servers("tcp"):
            def run(n: int = n, server: Servers = server) -> dict[str, Any]:
                with server() as b:  # a fresh broker (or 3.10 node) every run
                    warm_up(b)
                    time.sleep(0.3)
                    rss0 = b.rss()
                    address = b.address_prefix + b.name("backlog")
                    pub = windowed(b, {"mode": "publish", **b.target(), "address": address,
                                       "count": n, "size": 100}, timeout=3600)
                    time.sleep(0.5)
                    rss1 = b.rss()
                    drain = windowed(b, {"mode": "drain", **b.target(), "address": address,
                                         "count": n, "credit": 1000}, timeout=3600)
                    time.sleep(0.5)
                    return {"messages": n, "rss_before_kib": rss0, "rss_kib": rss1,
                            "rss_drained_kib": b.rss(),
                            "bytes_per_queued_msg": (rss1 - rss0) * 1024 / n,
                            "publish_msgs_per_s": n / pub["seconds"],
                            "publish_cpu_us_per_msg": pub["cpu_s"] / n * 1e6,
                            "msgs_per_s": n / drain["seconds"],
                            "cpu_us_per_msg": drain["cpu_s"] / n * 1e6}

            s.point("backlog", n, "tcp", 1 if n >= 1_000_000 else a.runs, run, kind=kind,
                    size=100)


HANDSHAKE_DEADLINE_S = 10.0  # the broker's default handshake_timeout (broker/config.py)


def curve_connections(s: Session) -> None:
    a = s.args
    for count in a.connections:
        for kind, transport, server in s.servers("tcp", "ws"):
            def run(count: int = count, transport: str = transport,
                    server: Servers = server) -> dict[str, Any]:
                with server() as b:
                    warm_up(b, transport)
                    time.sleep(0.3)
                    rss0, cpu0 = b.rss(), b.cpu()
                    opts = {"mode": "idle", **b.target(transport), "connections": count,
                            "idle_time_out": 60000, "prefix": b.name("idle"),
                            "open_spread_ms": int(a.open_spread * 1000)}
                    t0 = time.perf_counter()
                    proc = subprocess.Popen(["node", str(HERE / "load.js"), json.dumps(opts)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True, cwd=HERE)
                    assert proc.stdout is not None and proc.stdin is not None
                    try:
                        line = proc.stdout.readline()
                        if not line:
                            raise RuntimeError(f"idle load generator exited {proc.wait()}")
                        opened = json.loads(line)
                        wall = time.perf_counter() - t0
                        open_cpu = b.cpu() - cpu0
                        # Idle means after every connection's handshake deadline
                        # (10 s from its first byte, which the last connections'
                        # timers still keep): those one-off ticks are opening cost.
                        time.sleep(HANDSHAKE_DEADLINE_S + 0.5)
                        rss1 = b.rss()
                        cpu1, t1 = b.cpu(), time.perf_counter()
                        time.sleep(a.idle_seconds)
                        idle_pct = (b.cpu() - cpu1) / (time.perf_counter() - t1) * 100
                        rss2 = b.rss()
                        proc.stdin.write("x\n")
                        proc.stdin.flush()
                        proc.wait(timeout=60)
                    finally:
                        if proc.poll() is None:
                            proc.kill()
                            proc.wait()
                return {"connections": count, "open_seconds": opened["seconds"],
                        "open_wall_seconds": wall,
                        "open_cpu_ms_per_connection": open_cpu / count * 1e3,
                        "kib_per_connection": (rss1 - rss0) / count, "rss_kib": rss1,
                        "rss_after_idle_kib": rss2, "idle_cpu_pct": idle_pct,
                        "idle_seconds": a.idle_seconds, "open_spread_s": a.open_spread}

            s.point("connections", count, transport, a.conn_runs, run, kind=kind,
                    idle_time_out_ms=60000)


def curve_fanout(s: Session) -> None:
    """Ours only: RabbitMQ 3.10 delivers nothing from a stream over AMQP 1.0 (n/a)."""
    a = s.args
    stream = "scale-fanout"
    per_consumer = {k: max(1, a.deliveries // k) for k in a.fanout}
    length = max(per_consumer.values())
    with broker("--stream", stream) as b:
        log(f"fanout: publishing {length} messages into the stream")
        windowed(b, {"mode": "publish", **b.target(), "address": f"/queues/{stream}",
                     "count": length, "size": 100}, timeout=3600)
        for k in a.fanout:
            def run(k: int = k) -> dict[str, Any]:
                r = windowed(b, {"mode": "fanout", **b.target(), "stream": stream,
                                 "consumers": k, "count": per_consumer[k], "credit": 1000})
                n = r["messages"]
                return {"deliveries": n, "seconds": r["seconds"], "msgs_per_s": n / r["seconds"],
                        "cpu_us_per_msg": r["cpu_s"] / n * 1e6,
                        "setup_cpu_ms": (r["cpu_all_s"] - r["cpu_s"]) * 1e3,
                        "rss_kib": r["rss_kib"]}

            s.point("fanout", k, "tcp", a.runs, run, size=100, stream_length=length,
                    per_consumer=per_consumer[k])


def curve_size(s: Session) -> None:
    a = s.args
    for kind, server in [("amqpws", broker)] + [
            (k, srv) for k, _, srv in s.servers("tcp") if k != "amqpws"]:
        with server() as b:
            for transport in ("tcp", "ws") if kind == "amqpws" else ("tcp",):
                warm_up(b, transport)
                for size in SIZES:
                    count = max(20, min(20_000, a.size_bytes // size))
                    credit = max(4, min(500, (8 << 20) // size))

                    def run(size: int = size, count: int = count, credit: int = credit,
                            transport: str = transport, b: Broker = b) -> dict[str, Any]:
                        r = windowed(b, {"mode": "queues", **b.target(transport), "queues": 1,
                                         "count": count, "size": size, "connections": 1,
                                         "credit": credit, "prefix": b.name("size")})
                        n, payload = r["messages"], r["messages"] * size
                        return {"messages": n, "seconds": r["seconds"],
                                "msgs_per_s": n / r["seconds"],
                                "mb_per_s": payload / r["seconds"] / 1e6,
                                "cpu_us_per_msg": r["cpu_s"] / n * 1e6,
                                "cpu_us_per_kib": r["cpu_s"] * 1e6 / (payload / 1024),
                                "rss_kib": r["rss_kib"]}

                    s.point("size", size, transport, a.runs, run, kind=kind, messages=count)


def curve_latency(s: Session) -> None:
    a = s.args
    for kind, server in [("amqpws", broker)] + [
            (k, srv) for k, _, srv in s.servers("tcp") if k != "amqpws"]:
        with server() as b:
            for transport in ("tcp", "ws") if kind == "amqpws" else ("tcp",):
                warm_up(b, transport)

                def run(transport: str = transport, b: Broker = b) -> dict[str, Any]:
                    cpu0 = b.cpu()
                    r = node("load.js", {"mode": "latency", **b.target(transport),
                                         "count": a.latency_count, "rate": 1000, "size": 100,
                                         "prefix": b.name("lat")}, timeout=600)
                    n = r["messages"]
                    return {"messages": n, "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                            "max_ms": r["max_ms"], "msgs_per_s": n / r["seconds"],
                            "cpu_us_per_msg": (b.cpu() - cpu0) / n * 1e6, "rss_kib": b.rss()}

                s.point("latency", 1000, transport, a.runs, run, kind=kind, rate=1000,
                        size=100)


# -- the table --------------------------------------------------------------------------

def fmt_size(n: float) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n / scale:g} {unit}"
    return f"{n:g} B"


COLUMNS: dict[str, list[tuple[str, str, str]]] = {  # key, header, format
    "queues": [("x", "queues", "{:,.0f}"), ("msgs_per_s", "msg/s", "{:,.0f}"),
               ("cpu_us_per_msg", "CPU us/msg", "{:.1f}"),
               ("setup_cpu_ms", "attach CPU ms", "{:,.0f}"), ("rss_kib", "RSS MiB", "mib")],
    "backlog": [("x", "queued msgs", "{:,.0f}"),
                ("bytes_per_queued_msg", "RSS B/queued msg", "{:,.0f}"),
                ("publish_msgs_per_s", "publish msg/s", "{:,.0f}"),
                ("publish_cpu_us_per_msg", "publish CPU us/msg", "{:.1f}"),
                ("msgs_per_s", "drain msg/s", "{:,.0f}"),
                ("cpu_us_per_msg", "drain CPU us/msg", "{:.1f}"), ("rss_kib", "RSS MiB", "mib")],
    "connections": [("x", "connections", "{:,.0f}"), ("transport", "transport", "{}"),
                    ("open_seconds", "open s", "{:.2f}"),
                    ("open_cpu_ms_per_connection", "open CPU ms/conn", "{:.2f}"),
                    ("kib_per_connection", "RSS KiB/conn", "{:.1f}"),
                    ("idle_cpu_pct", "idle CPU % core", "{:.2f}"), ("rss_kib", "RSS MiB", "mib")],
    "fanout": [("x", "consumers", "{:,.0f}"), ("msgs_per_s", "deliveries/s", "{:,.0f}"),
               ("cpu_us_per_msg", "CPU us/delivery", "{:.2f}"), ("rss_kib", "RSS MiB", "mib")],
    "size": [("x", "size", "size"), ("transport", "transport", "{}"),
             ("mb_per_s", "MB/s", "{:,.1f}"), ("msgs_per_s", "msg/s", "{:,.0f}"),
             ("cpu_us_per_kib", "CPU us/KiB", "{:.2f}"),
             ("cpu_us_per_msg", "CPU us/msg", "{:,.1f}"), ("rss_kib", "RSS MiB", "mib")],
    "latency": [("transport", "transport", "{}"), ("p50_ms", "p50 ms", "{:.2f}"),
                ("p99_ms", "p99 ms", "{:.2f}"), ("max_ms", "max ms", "{:.1f}"),
                ("msgs_per_s", "msg/s", "{:,.0f}"), ("cpu_us_per_msg", "CPU us/msg", "{:.1f}"),
                ("rss_kib", "RSS MiB", "mib")],
}

TITLES = {
    "queues": "queues: a producer and a consumer link each, over 4+4 connections, "
              "100 B at-least-once",
    "backlog": "backlog: N x 100 B into a queue with no consumer, then one consumer drains it",
    "connections": "idle connections (session + receiver each, idle_time_out 60 s)",
    "fanout": "stream fan-out: consumers reading from `first`, one connection each",
    "size": "message size: 1 producer -> 1 queue -> 1 consumer, at-least-once",
    "latency": "latency: 100 B at 1000 msg/s, 1 producer -> 1 consumer",
}


def cell(p: Point, key: str, how: str) -> str:
    v = p.get(key)
    if v is None:
        return "-"
    if how == "mib":
        return f"{v / 1024:,.1f}"
    if how == "size":
        return fmt_size(v)
    return how.format(v)


NOT_310 = {"fanout": "n/a (3.10 delivers nothing from streams over AMQP 1.0)",
           "ws": "n/a (no WebSocket in 3.10)"}


def ratio_cells(p: Point, theirs: Point | None, key: str, how: str) -> list[str]:
    """RabbitMQ 3.10's figure beside ours, and ours/3.10."""
    if theirs is None:
        return ["n/a", "n/a"]
    if "error" in theirs:
        return ["FAILED", "-"]
    ours_v, theirs_v = p.get(key), theirs.get(key)
    ratio = f"{ours_v / theirs_v:.2f}x" if ours_v is not None and theirs_v else "-"
    return [cell(theirs, key, how), ratio]


def print_table(points: list[Point], with_310: bool | None = None) -> None:
    """Ours, one row a point; with_310 (default: when there are any 3.10 points) puts
    RabbitMQ 3.10's figure and the ratio ours/3.10 beside each of ours."""
    if with_310 is None:
        with_310 = any(p.get("broker") == "rabbitmq310" for p in points)
    theirs_at = {(p["curve"], p["x"], p["transport"]): p for p in points
                 if p.get("broker") == "rabbitmq310"}
    if with_310:
        print(f"\n{rabbitmq310.LABEL} beside each figure: its value, then ratio = ours/3.10 "
              "(msg/s, MB/s above 1: we are faster; CPU, RSS, latency below 1: we use less); "
              "n/a where 3.10 can't be measured")
    for curve in CURVES:
        rows = [p for p in points if p["curve"] == curve
                and p.get("broker", "amqpws") == "amqpws"]
        if not rows:
            continue
        cols = COLUMNS[curve]
        runs = sorted({p["runs"] for p in rows})
        print(f"\n{TITLES[curve]}  (median of {'/'.join(map(str, runs))} "
              f"run{'s' if runs != [1] else ''})")
        header = []
        for key, h, _ in cols:
            header.append(h)
            if with_310 and key not in ("x", "transport"):
                header += ["3.10", "ratio"]
        table = [header]
        notes = []
        for p in rows:
            if "error" in p:
                table.append([cell(p, *cols[0][::2])] + [f"FAILED: {p['error'][:80]}"])
                continue
            theirs = theirs_at.get((curve, p["x"], p["transport"]))
            row = []
            for key, _, how in cols:
                row.append(cell(p, key, how))
                if with_310 and key not in ("x", "transport"):
                    row += ratio_cells(p, theirs, key, how)
            table.append(row)
            if with_310 and theirs is None:
                why = NOT_310.get(curve) or NOT_310.get(p["transport"])
                if why and why not in notes:
                    notes.append(why)
            elif theirs is not None and "error" in theirs:
                notes.append(f"3.10 at {cell(p, *cols[0][::2])} FAILED: {theirs['error'][:120]}")
        ncols = len(header)
        widths = [max(len(r[i]) for r in table if len(r) == ncols) for i in range(ncols)]
        for r in table:
            if len(r) < ncols:
                print("  " + r[0].rjust(widths[0]) + "  " + r[1])
            else:
                print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        for note in notes:
            print(f"  {rabbitmq310.LABEL}: {note}")


# -- the plot ---------------------------------------------------------------------------

def plot(points: list[Point], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        print(f"\nmatplotlib is not installed: no plot written to {path} "
              "(pip install '.[bench]' or `make bench-scale`)")
        return
    ok = [p for p in points if "error" not in p]
    curves = [c for c in CURVES if any(p["curve"] == c for p in ok)]
    if not curves:
        print("\nnothing to plot")
        return
    cols = 3 if len(curves) > 4 else 2 if len(curves) > 1 else 1
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 * cols, 5.0 * rows), squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    # ours: blue (TCP) and orange (WebSocket); RabbitMQ 3.10 (TCP only): green, triangles
    colour = {("amqpws", "tcp"): "tab:blue", ("amqpws", "ws"): "tab:orange",
              ("rabbitmq310", "tcp"): "tab:green"}
    markers = {"amqpws": ("o", "s"), "rabbitmq310": ("^", "v")}
    with_310 = any(p.get("broker") == "rabbitmq310" for p in ok)
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")

    def kind(p: Point) -> str:
        return p.get("broker", "amqpws")

    def series(curve: str, who: tuple[str, str], key: str) -> tuple[list[float], list[float]]:
        pts = sorted((p for p in ok if p["curve"] == curve and (kind(p), p["transport"]) == who
                      and key in p), key=lambda p: p["x"])
        return [p["x"] for p in pts], [p[key] for p in pts]

    def suffix(who: tuple[str, str], many: bool) -> str:
        if who[0] == "rabbitmq310":
            return f" ({rabbitmq310.LABEL})"
        if with_310:
            return f" (ours {who[1]})"
        return f" ({who[1]})" if many else ""

    def two_axes(ax, curve, left, right, xlabel, llabel, rlabel, *, logx=True, logy=False,
                 logy2=False, annotate=None):  # type: ignore[no-untyped-def]
        """left/right: [(key, label-suffix, linestyle)]; solid on the left axis, dashed right."""
        ax2 = ax.twinx()
        handles = []
        tops: dict[object, float] = {}
        whos = [w for w in colour if any(
            p["curve"] == curve and (kind(p), p["transport"]) == w for p in ok)]
        for who in whos:
            for axis, spec, marker in ((ax, left, markers[who[0]][0]),
                                       (ax2, right, markers[who[0]][1])):
                for key, what, style in spec:
                    xs, ys = series(curve, who, key)
                    if (logy if axis is ax else logy2):  # a 0 (below the clock tick) has no log
                        xs, ys = [x for x, y in zip(xs, ys, strict=True) if y > 0], \
                                 [y for y in ys if y > 0]
                    if xs:
                        tops[axis] = max(tops.get(axis, 0), *ys)
                        (h,) = axis.plot(xs, ys, style, marker=marker, color=colour[who],
                                         label=what + suffix(who, len(whos) > 1),
                                         mfc="white" if axis is ax2 else colour[who])
                        handles.append(h)
            if annotate:
                for p in (p for p in ok if p["curve"] == curve
                          and (kind(p), p["transport"]) == who):
                    key, text = annotate
                    ax.annotate(text(p), (p["x"], p[key]), textcoords="offset points",
                                xytext=(4, 6 if who[0] == "amqpws" else -12), fontsize=8,
                                color=colour[who])
        xs_all = [p["x"] for p in ok if p["curve"] == curve]
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        if logy2:
            ax2.set_yscale("log")
        if not logy:  # room above the top point for its annotation
            ax.set_ylim(0, tops.get(ax, 1) * 1.18 or 1)
            ax.yaxis.set_major_formatter(thousands)
        if not logy2:
            ax2.set_ylim(0, tops.get(ax2, 1) * 1.18 or 1)
        if logx:
            ax.set_xlim(min(xs_all) / 2, max(xs_all) * 2)
            ax.set_xticks(sorted(set(xs_all)))  # the measured points, labelled in full
            ax.xaxis.set_major_formatter(thousands)
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(llabel + "  (solid)")
        ax2.set_ylabel(rlabel + "  (dashed)")
        ax.set_title(TITLES[curve], fontsize=9.5)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
        return ax2

    for ax, curve in zip(axes.flat, curves, strict=False):
        if curve == "queues":
            two_axes(ax, curve, [("msgs_per_s", "msg/s", "-")],
                     [("cpu_us_per_msg", "CPU us/msg", "--")],
                     "queues (log)", "total msg/s", "broker CPU us per message",
                     annotate=("msgs_per_s", lambda p: f"{p['rss_kib'] / 1024:.0f} MiB"))
        elif curve == "backlog":
            two_axes(ax, curve, [("msgs_per_s", "drain msg/s", "-"),
                                 ("publish_msgs_per_s", "publish msg/s", ":")],
                     [("bytes_per_queued_msg", "RSS bytes/queued msg", "--")],
                     "queued messages (log)", "msg/s", "broker RSS bytes per queued message",
                     annotate=("msgs_per_s",
                               lambda p: f"drain {p['cpu_us_per_msg']:.0f} us/msg"))
        elif curve == "connections":
            two_axes(ax, curve, [("kib_per_connection", "RSS KiB/conn", "-")],
                     [("idle_cpu_pct", "idle CPU % core", "--")],
                     "idle connections (log)", "broker RSS KiB per connection",
                     "broker CPU % of one core while idle",
                     annotate=("kib_per_connection", lambda p: f"open {p['open_seconds']:.1f} s"))
        elif curve == "fanout":
            two_axes(ax, curve, [("msgs_per_s", "deliveries/s", "-")],
                     [("cpu_us_per_msg", "CPU us/delivery", "--")],
                     "consumers (log)", "total deliveries/s", "broker CPU us per delivery")
            if with_310:
                ax.text(0.5, 0.04, f"{rabbitmq310.LABEL}: n/a (delivers nothing from streams "
                        "over AMQP 1.0)", transform=ax.transAxes, ha="center", fontsize=8,
                        color=colour[("rabbitmq310", "tcp")])
        elif curve == "size":
            ax2 = two_axes(ax, curve, [("mb_per_s", "MB/s", "-")],
                           [("cpu_us_per_kib", "CPU us/KiB", "--")],
                           "message size (log)", "MB/s of payload (log)",
                           "broker CPU us per KiB (log)", logy=True, logy2=True)
            ax.set_xticks(SIZES, [fmt_size(v) for v in SIZES])
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        elif curve == "latency":
            pts = [p for p in ok if p["curve"] == "latency"]
            labels = [(f"{rabbitmq310.LABEL} " if kind(p) == "rabbitmq310" else
                       "ours " if with_310 else "") + p["transport"].upper() for p in pts]
            xs = range(len(pts))
            for off, key, name, alpha in ((-0.2, "p50_ms", "p50", 1.0), (0.2, "p99_ms", "p99", 0.55)):
                bars = ax.bar([x + off for x in xs], [p[key] for p in pts], width=0.38,
                              color=[colour[(kind(p), p["transport"])] for p in pts],
                              alpha=alpha, edgecolor="black", label=name)
                ax.bar_label(bars, labels=[f"{name} {p[key]:.2f}" for p in pts], fontsize=8)
            sep = "\n" if len(pts) > 2 else ", "  # three bar pairs: narrower labels
            ax.set_xticks(list(xs), [f"{lbl}\n{p['cpu_us_per_msg']:.0f} us CPU/msg{sep}"
                                     f"{p['msgs_per_s']:,.0f} msg/s"
                                     for lbl, p in zip(labels, pts, strict=True)])
            top = max(p["p99_ms"] for p in pts)
            if top > 20 * min(p["p50_ms"] for p in pts):  # a p99 far above the p50s
                ax.set_yscale("log")
                ax.set_ylabel("latency ms, log (p50 solid, p99 light)")
                ax.set_ylim(top=top * 3)
            else:
                ax.set_ylabel("latency ms (p50 solid, p99 light)")
                ax.set_ylim(bottom=0, top=top * 1.2)
            ax.set_title(TITLES[curve], fontsize=9.5)
            ax.grid(True, axis="y", alpha=0.3)
    started = next((p.get("bench_started") for p in points), "")
    runs = sorted({p["runs"] for p in ok})
    vs = (f"\n{rabbitmq310.LABEL} (green triangles, TCP only): the same load, "
          "its beam.smp process's CPU and RSS" if with_310 else "")
    fig.suptitle(f"amqpws-broker scale benchmark {started}: the broker process's CPU and RSS, "
                 f"each point the median of {'/'.join(map(str, runs))} run(s){vs}", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, (0.97 if not with_310 else 0.95 if rows > 1 else 0.91)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nplot: {path}")


# -- the command line -------------------------------------------------------------------

def ints(text: str) -> list[int]:
    return [int(float(v)) for v in str(text).split(",") if v.strip()]


def main() -> None:
    def env(name: str, default: str) -> str:
        return os.environ.get(f"BENCH_SCALE_{name.upper()}", default)

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=int(env("runs", "3")))
    p.add_argument("--conn-runs", type=int, default=int(env("conn_runs", "1")))
    p.add_argument("--only", default=env("only", ""), help="comma-separated: " + ",".join(CURVES))
    p.add_argument("--queues", type=ints, default=env("queues", "1,10,100,1000"))
    p.add_argument("--messages", type=int, default=int(env("messages", "40000")),
                   help="messages per queues point, spread over its queues")
    p.add_argument("--backlog", type=lambda v: int(float(v)),
                   default=int(float(env("backlog", "100000"))),
                   help="the largest backlog (points in decades from 10^4)")
    p.add_argument("--connections", type=ints, default=env("connections", "1000,5000"))
    p.add_argument("--idle-seconds", type=float, default=float(env("idle_seconds", "30")))
    p.add_argument("--open-spread", type=float, default=float(env("open_spread", "0")),
                   help="open the idle connections evenly over this many seconds (15: "
                        "rhea's heartbeat period, so no two beat together, as clients that "
                        "came at random times); 0: all at once")
    p.add_argument("--fanout", type=ints, default=env("fanout", "1,10,100"))
    p.add_argument("--deliveries", type=int, default=int(env("deliveries", "200000")),
                   help="deliveries per fan-out point, spread over its consumers")
    p.add_argument("--size-bytes", type=int, default=int(env("size_bytes", str(128 << 20))),
                   help="payload bytes per message-size point (20..20000 messages)")
    p.add_argument("--latency-count", type=int, default=int(env("latency_count", "5000")))
    p.add_argument("--big", action="store_true",
                   default=str(env("big", "")).lower() in ("1", "true", "yes"),
                   help="10^6 backlog and 10000 connections")
    p.add_argument("--rabbitmq310", action="store_true",
                   default=str(env("rabbitmq310", "")).lower() in ("1", "true", "yes"),
                   help="RabbitMQ 3.10 points beside ours (tests/bench/rabbitmq310.py)")
    p.add_argument("--out", default=env("out", str(RESULTS / "scale.jsonl")))
    p.add_argument("--png", default=env("png", str(RESULTS / "scale.png")))
    p.add_argument("--plot", metavar="JSONL", help="only redraw the PNG (and table) from a file")
    a = p.parse_args()
    for name in ("queues", "connections", "fanout"):  # defaults from env are strings
        if isinstance(getattr(a, name), str):
            setattr(a, name, ints(getattr(a, name)))
    if a.big:
        a.backlog = max(a.backlog, 1_000_000)
        if 10000 not in a.connections:
            a.connections.append(10000)
    if a.plot:
        points = [json.loads(line) for line in Path(a.plot).read_text().splitlines() if line]
        print_table(points)
        plot(points, Path(a.png))
        return
    only = [c.strip() for c in a.only.split(",") if c.strip()] or list(CURVES)
    unknown = set(only) - set(CURVES)
    if unknown:
        p.error(f"unknown curves {sorted(unknown)}; choose from {','.join(CURVES)}")
    command = shlex.join([os.path.relpath(sys.executable) if sys.executable.startswith(
        os.getcwd()) else sys.executable, *sys.argv])
    t0 = time.monotonic()
    node310 = None
    if a.rabbitmq310 and set(only) - {"fanout"}:
        log(f"starting {rabbitmq310.LABEL}")
        node310 = rabbitmq310.start_or_none(log)
    session = Session(a, node310)
    runners = {"queues": curve_queues, "backlog": curve_backlog,
               "connections": curve_connections, "fanout": curve_fanout,
               "size": curve_size, "latency": curve_latency}
    try:
        for curve in CURVES:
            if curve in only:
                log(f"curve {curve}")
                runners[curve](session)
    finally:
        if node310 is not None:
            log(f"stopping {rabbitmq310.LABEL}")
            node310.stop()  # the benchmark's own node, nothing else
    elapsed = time.monotonic() - t0
    print(f"\nscale benchmark: broker CPU is the broker process's own (utime+stime), "
          f"RSS its VmRSS; {elapsed / 60:.1f} min")
    print(f"command: {command}")
    if node310 is not None:
        print(f"{rabbitmq310.LABEL} ({node310.version}): the same load on the benchmark's own "
              "node, a fresh one (restarted, data wiped) wherever ours is a fresh broker; its "
              "CPU and RSS are its beam.smp's")
    elif a.rabbitmq310:
        print(f"{rabbitmq310.LABEL}: not measured (see the log above)")
    print_table(session.points, with_310=node310 is not None)
    print(f"\nJSON lines: {session.out}")
    plot(session.points, Path(a.png))


if __name__ == "__main__":
    main()
