"""Broker benchmark (`make bench`): a real broker process driven by rhea (Node).

Reports msgs/s, latency percentiles, the broker process's own CPU time per
message (utime+stime from /proc/PID/stat over the run, divided by messages:
the figure that stays stable when the load generator competes for the CPU)
and broker RSS, each the median of several runs.  This is a benchmark, not a
test: it prints numbers and asserts nothing about them.

With --rabbitmq310 (or BENCH_RABBITMQ310=1) the same load also runs against
RabbitMQ 3.10 (Debian's rabbitmq-server, a node of the benchmark's own started by
conformance/rabbitmq310.sh, see tests/bench/rabbitmq310.py), run by run beside
ours, its CPU and RSS those of its beam.smp process: for every TCP scenario but the
stream one (3.10 has no WebSocket listener in open source and delivers nothing
from streams over AMQP 1.0), a line with its figures and ours/3.10 ratios.  When
rabbitmq-server can't be installed or started, one line says so and the rest runs.
Scenarios for --only: 1to1 (or 1to1-100, 1to1-4096, 1to1-65536: one size),
latency, 10x10, idle, stream.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
from conftest import start_broker, stop_broker

sys.path.insert(0, str(HERE))
import rabbitmq310
from procstat import cpu_seconds, rss_kib


def node(opts: dict[str, object], timeout: float = 300) -> dict[str, float]:
    out = subprocess.run(["node", str(HERE / "load.js"), json.dumps(opts)], capture_output=True,
                         text=True, timeout=timeout, cwd=HERE, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Bench:
    def __init__(self, runs: int, scale: float, *broker_args: str, ca: str | None = None,
                 rabbit: rabbitmq310.RabbitMQ310 | None = None) -> None:
        self.runs = runs
        self.scale = scale
        self.proc, self.broker = start_broker("--stream", "bench-stream", "--log-level", "warning",
                                              *broker_args)
        self.ca = ca  # for tls and wss targets
        self.rabbit = rabbit  # RabbitMQ 3.10, measured beside ours where it can be
        self.seq = 0

    def close(self) -> None:
        stop_broker(self.proc)

    def target(self, transport: str) -> dict[str, object]:
        b = self.broker
        return {"transport": transport, "host": b.host, "port": b.port, "ws_url": b.ws_url,
                "tls_port": b.tls_port, "wss_url": (b.wss_url or "").replace("127.0.0.1",
                                                                           "localhost"),
                "ca": self.ca}

    def prefix(self) -> str:
        self.seq += 1
        return f"bench{self.seq}"

    def measured(self, opts: dict[str, object], pid: int | None = None) -> dict[str, float]:
        pid = pid or self.broker.pid
        cpu0 = cpu_seconds(pid)
        result = node(opts)
        cpu = cpu_seconds(pid) - cpu0
        result["cpu_us_per_msg"] = cpu / result["messages"] * 1e6
        result["msgs_per_s"] = result["messages"] / result["seconds"]
        result["rss_kib"] = rss_kib(pid)
        return result

    def median(self, make_opts) -> dict[str, float]:  # type: ignore[no-untyped-def]
        results = [self.measured(make_opts()) for _ in range(self.runs)]
        return {k: statistics.median(r[k] for r in results) for k in results[0]}

    def rabbit_target(self, transport: str) -> dict[str, object] | None:
        if self.rabbit is None or transport != "tcp":
            return None
        return self.rabbit.target("tcp")

    def both(self, transport: str, make_opts) -> tuple[dict[str, float],  # type: ignore[no-untyped-def]
                                                      dict[str, float] | None]:
        """Medians for ours and (on TCP, when it runs) RabbitMQ 3.10's, the runs alternating
        (ours, then 3.10's) so that both see the same machine.  make_opts(target) -> opts."""
        theirs_target = self.rabbit_target(transport)
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for _ in range(self.runs):
            ours.append(self.measured(make_opts(self.target(transport))))
            if theirs_target is not None and self.rabbit is not None:
                theirs.append(self.measured(make_opts(theirs_target), self.rabbit.pid))

        def med(rs: list[dict[str, float]]) -> dict[str, float]:
            return {k: statistics.median(r[k] for r in rs) for k in rs[0]}

        return med(ours), (med(theirs) if theirs else None)


def describe(r: dict[str, float]) -> list[str]:
    parts = []
    if "msgs_per_s" in r:
        parts.append(f"{r['msgs_per_s']:9,.0f} msg/s")
    if "cpu_us_per_msg" in r:
        parts.append(f"{r['cpu_us_per_msg']:7.1f} us CPU/msg")
    if "p50_ms" in r:
        parts.append(f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms")
    if "kib_per_connection" in r:
        parts.append(f"{r['kib_per_connection']:.1f} KiB RSS/connection")
    if "rss_before_kib" in r:
        parts.append(f"RSS {r['rss_before_kib'] / 1024:.1f} -> {r['rss_after_kib'] / 1024:.1f}"
                     f" MiB (stored {r['stored_mib']:.1f} MiB of payload)")
    elif "rss_kib" in r:
        parts.append(f"RSS {r['rss_kib'] / 1024:.1f} MiB")
    return parts


RATIOS = (("msgs_per_s", "msg/s"), ("cpu_us_per_msg", "CPU/msg"), ("p50_ms", "p50"),
          ("p99_ms", "p99"), ("kib_per_connection", "RSS/conn"), ("rss_kib", "RSS"))


def ratios(ours: dict[str, float], theirs: dict[str, float]) -> str:
    out = []
    for key, what in RATIOS:
        if key in ours and key in theirs:
            out.append(f"{ours[key] / theirs[key]:5.2f}x {what}" if theirs[key] else
                       f"  n/a {what}")
    return "  ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--rabbitmq310", action="store_true",
                        default=os.environ.get("BENCH_RABBITMQ310", "").lower()
                        in ("1", "true", "yes"),
                        help="RabbitMQ 3.10 beside ours (env BENCH_RABBITMQ310=1)")
    args = parser.parse_args()
    command = shlex.join([os.path.relpath(sys.executable) if sys.executable.startswith(
        os.getcwd()) else sys.executable, *sys.argv])
    only = set(filter(None, args.only.split(",")))
    rabbit = None
    if args.rabbitmq310:
        rabbit = rabbitmq310.start_or_none(lambda msg: print(msg, flush=True))
    bench = None
    n = lambda k: max(100, int(k * args.scale))
    rows: list[tuple[str, dict[str, float], dict[str, float] | None]] = []

    def want(name: str) -> bool:
        return not only or name in only

    try:
        bench = Bench(args.runs, args.scale, rabbit=rabbit)
        for size in (100, 4096, 65536):
            if not (want("1to1") or want(f"1to1-{size}")):
                continue
            for presettled in (False, True):
                for transport in ("tcp", "ws"):  # side by side: WebSocket's cost over TCP's
                    mode = "presettled" if presettled else "unsettled"
                    count = n({100: 30000, 4096: 10000}.get(size, 2000))
                    ours, theirs = bench.both(transport, lambda t, c=count, s=size, p=presettled: {
                        "mode": "throughput", **t, "pairs": 1, "count": c, "size": s,
                        "presettled": p, "prefix": bench.prefix()})
                    rows.append((f"1->1 {transport} {size}B {mode}", ours, theirs))
        if want("latency"):
            for transport in ("tcp", "ws"):
                ours, theirs = bench.both(transport, lambda t: {
                    "mode": "latency", **t, "count": n(5000), "rate": 1000, "size": 100,
                    "prefix": bench.prefix()})
                rows.append((f"latency {transport} 100B @1000/s", ours, theirs))
        if want("10x10"):
            ours, theirs = bench.both("tcp", lambda t: {
                "mode": "throughput", **t, "pairs": 10, "count": n(3000), "size": 100,
                "presettled": False, "prefix": bench.prefix()})
            rows.append(("10 producers -> 10 consumers tcp 100B", ours, theirs))
        if want("idle"):
            ours = idle_connections(bench, 1000)
            theirs = idle_connections(bench, 1000, rabbit=True) if rabbit else None
            rows.append(("1000 idle connections (tcp)", ours, theirs))
        if want("stream"):  # 3.10 delivers nothing from a stream over AMQP 1.0: no figure
            rows.append(("stream: 10 consumers from first", stream_fanout(bench, n(100000)),
                         None))
    finally:
        if bench is not None:
            bench.close()
        if rabbit is not None:
            rabbit.stop()
    print(f"\nbroker benchmark: median of {args.runs} runs; CPU is the broker process's own")
    print(f"command: {command}")
    if rabbit is not None:
        print(f"{rabbitmq310.LABEL} ({rabbit.version}): the same load on its own node in the "
              "same run, runs alternating with ours, CPU and RSS its beam.smp's; ratios are "
              "ours/3.10 (msg/s above 1: we are faster; CPU/msg, latency, RSS below 1: we use "
              "less)")
    for name, ours, _ in rows:
        print("  ".join([f"{name:42s}", *describe(ours)]))
    if rabbit is not None:
        print(f"\n{rabbitmq310.LABEL}, the same scenarios (TCP only)")
        for name, ours, theirs in rows:
            if " ws " in name:
                continue
            if theirs is None:
                print(f"{name:42s}  n/a (3.10 delivers nothing from streams over AMQP 1.0)")
                continue
            print("  ".join([f"{name:42s}", *describe(theirs)]))
        print("\nours/3.10 ratios (median over median)")
        for name, ours, theirs in rows:
            if " ws " in name:
                continue
            print(f"{name:42s}  " + (ratios(ours, theirs) if theirs else "  n/a"))
    by_name = {name: ours for name, ours, _ in rows}
    if any(" ws " in name for name in by_name):
        print("\nours, WebSocket over TCP")
    for name, r, _ in rows:
        if " ws " in name and name.replace(" ws ", " tcp ") in by_name:
            tcp = by_name[name.replace(" ws ", " tcp ")]
            print(f"{name.replace(' ws ', ' ws/tcp '):42s}  {r['msgs_per_s'] / tcp['msgs_per_s']:5.2f}x "
                  f"msg/s  {r['cpu_us_per_msg'] / tcp['cpu_us_per_msg']:5.2f}x CPU/msg")


def idle_connections(bench: Bench, count: int, transport: str = "tcp",
                     rabbit: bool = False) -> dict[str, float]:
    """RSS per idle connection (each with a session and a receiver); with it, the
    time to open them all and the broker's CPU for that, per connection.  With
    `rabbit`, RabbitMQ 3.10's."""
    results = []
    for _ in range(bench.runs):
        target = bench.rabbit_target(transport) if rabbit else bench.target(transport)
        assert target is not None
        pid = bench.rabbit.pid if rabbit and bench.rabbit else bench.broker.pid
        before = rss_kib(pid)
        cpu0 = cpu_seconds(pid)
        opts = {"mode": "idle", **target, "connections": count, "prefix": bench.prefix()}
        proc = subprocess.Popen(["node", str(HERE / "load.js"), json.dumps(opts)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("idle load generator failed")
        opened = json.loads(line)
        open_cpu = cpu_seconds(pid) - cpu0
        time.sleep(0.5)
        after = rss_kib(pid)
        proc.stdin.write("x\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
        time.sleep(0.5)
        results.append({"kib_per_connection": (after - before) / count, "rss_kib": after,
                        "open_seconds": opened["seconds"],
                        "open_cpu_ms_per_connection": open_cpu / count * 1000})
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def stream_fanout(bench: Bench, count: int) -> dict[str, float]:
    """One producer appends `count` 100-byte messages; 10 consumers read them all from first."""
    pid = bench.broker.pid
    before = rss_kib(pid)
    publish = {**bench.target("tcp"), "count": count, "size": 100, "stream": "bench-stream"}
    subprocess.run(["node", "-e", _PUBLISH_JS, json.dumps(publish)],
                   check=True, cwd=HERE, timeout=600, capture_output=True)
    after_publish = rss_kib(pid)
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["node", str(HERE / "load.js"), json.dumps(
        {"mode": "stream", **bench.target("tcp"), "count": count, "stream": "bench-stream"})],
        stdout=subprocess.PIPE, cwd=HERE) for _ in range(10)]
    for p in procs:
        p.wait(timeout=600)
    seconds = time.perf_counter() - t0
    delivered = 10 * count
    return {
        "msgs_per_s": delivered / seconds,
        "cpu_us_per_msg": (cpu_seconds(pid) - cpu0) / delivered * 1e6,
        "rss_before_kib": before,
        "rss_after_kib": rss_kib(pid),
        "rss_after_publish_kib": after_publish,
        "stored_mib": count * 100 / 1024 / 1024,
    }


_PUBLISH_JS = r"""
const rhea = require('rhea');
const o = JSON.parse(process.argv[1]);
const c = rhea.create_container().connect({host: o.host, port: o.port, reconnect: false});
const s = c.open_sender({target: {address: '/queues/' + o.stream}});
const body = Buffer.alloc(o.size, 120);
let sent = 0, acked = 0;
s.on('sendable', () => { while (sent < o.count && s.sendable()) { s.send({body}); sent++; } });
s.on('accepted', () => { if (++acked === o.count) { c.close(); process.exit(0); } });
"""


if __name__ == "__main__":
    main()
