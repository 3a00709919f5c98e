"""Broker benchmark (`make bench`): a real broker process driven by rhea (Node).

Reports msgs/s, latency percentiles, the broker process's own CPU time per
message (utime+stime from /proc/PID/stat over the run, divided by messages:
the figure that stays stable when the load generator competes for the CPU)
and broker RSS, each the median of several runs.  This is a benchmark, not a
test: it prints numbers and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
from conftest import start_broker, stop_broker

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def node(opts: dict[str, object], timeout: float = 300) -> dict[str, float]:
    out = subprocess.run(["node", str(HERE / "load.js"), json.dumps(opts)], capture_output=True,
                         text=True, timeout=timeout, cwd=HERE, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Bench:
    def __init__(self, runs: int, scale: float, *broker_args: str, ca: str | None = None) -> None:
        self.runs = runs
        self.scale = scale
        self.proc, self.broker = start_broker("--stream", "bench-stream", "--log-level", "warning",
                                              *broker_args)
        self.ca = ca  # for tls and wss targets
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

    def measured(self, opts: dict[str, object]) -> dict[str, float]:
        pid = self.broker.pid
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    bench = Bench(args.runs, args.scale)
    n = lambda k: max(100, int(k * args.scale))
    rows: list[tuple[str, dict[str, float]]] = []

    def want(name: str) -> bool:
        return not only or name in only

    try:
        if want("1to1"):
            for size in (100, 4096, 65536):
                for presettled in (False, True):
                    for transport in ("tcp", "ws"):  # side by side: WebSocket's cost over TCP's
                        mode = "presettled" if presettled else "unsettled"
                        count = n({100: 30000, 4096: 10000}.get(size, 2000))
                        r = bench.median(lambda t=transport, c=count, s=size, p=presettled: {
                            "mode": "throughput", **bench.target(t), "pairs": 1,
                            "count": c, "size": s, "presettled": p,
                            "prefix": bench.prefix()})
                        rows.append((f"1->1 {transport} {size}B {mode}", r))
        if want("latency"):
            for transport in ("tcp", "ws"):
                r = bench.median(lambda t=transport: {
                    "mode": "latency", **bench.target(t), "count": n(5000),
                    "rate": 1000, "size": 100, "prefix": bench.prefix()})
                rows.append((f"latency {transport} 100B @1000/s", r))
        if want("10x10"):
            r = bench.median(lambda: {
                "mode": "throughput", **bench.target("tcp"), "pairs": 10, "count": n(3000),
                "size": 100, "presettled": False, "prefix": bench.prefix()})
            rows.append(("10 producers -> 10 consumers tcp 100B", r))
        if want("idle"):
            rows.append(("1000 idle connections (tcp)", idle_connections(bench, 1000)))
        if want("stream"):
            rows.append(("stream: 10 consumers from first", stream_fanout(bench, n(100000))))
    finally:
        bench.close()
    print(f"\nbroker benchmark: median of {args.runs} runs; CPU is the broker process's own")
    for name, r in rows:
        parts = [f"{name:42s}"]
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
        print("  ".join(parts))
    by_name = dict(rows)
    for name, r in rows:
        if " ws " in name and name.replace(" ws ", " tcp ") in by_name:
            tcp = by_name[name.replace(" ws ", " tcp ")]
            print(f"{name.replace(' ws ', ' ws/tcp '):42s}  {r['msgs_per_s'] / tcp['msgs_per_s']:5.2f}x "
                  f"msg/s  {r['cpu_us_per_msg'] / tcp['cpu_us_per_msg']:5.2f}x CPU/msg")


def idle_connections(bench: Bench, count: int, transport: str = "tcp") -> dict[str, float]:
    """RSS per idle connection (each with a session and a receiver); with it, the
    time to open them all and the broker's CPU for that, per connection."""
    results = []
    for _ in range(bench.runs):
        pid = bench.broker.pid
        before = rss_kib(pid)
        cpu0 = cpu_seconds(pid)
        opts = {"mode": "idle", **bench.target(transport), "connections": count,
                "prefix": bench.prefix()}
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
